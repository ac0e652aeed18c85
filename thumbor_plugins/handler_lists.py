"""imgstack's extra routes, as a Thumbor handler list (``HANDLER_LISTS`` in thumbor.conf).
A feature that is off contributes no handlers.

Thumbor calls :func:`get_handlers` once, in the main process before it forks its workers, which is
also where the observation hooks read their settings.
"""

from __future__ import annotations

from typing import Any

from . import observe
from .settings import settings_of

THUMBOR_HEALTHCHECK = "thumbor.handler_lists.healthcheck"


def get_handlers(context: Any) -> list:
    from .handlers import LivenessHandler, MetricsHandler, ReadinessHandler, events

    settings = settings_of(context)
    observe.configure(settings)
    health = (settings.healthcheck_route or "/healthcheck").rstrip("/")
    args = {"context": context}
    handlers: list = [
        (health + "/ready", ReadinessHandler, args),
        (r"/metrics", MetricsHandler, args),
    ]
    if THUMBOR_HEALTHCHECK not in settings.handler_lists:
        handlers.append((health, LivenessHandler, args))
    handlers.extend(events.get_handlers(context))
    return handlers
