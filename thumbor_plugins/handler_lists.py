"""imgstack's extra routes, as a Thumbor handler list (``HANDLER_LISTS`` in thumbor.conf).
A feature that is off contributes no handlers."""

from __future__ import annotations

from typing import Any


def get_handlers(context: Any) -> list:
    handlers: list = []
    return handlers
