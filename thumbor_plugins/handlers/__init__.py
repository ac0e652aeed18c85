"""imgstack's own HTTP routes (mounted by :mod:`thumbor_plugins.handler_lists`).

- :mod:`.health`: ``/healthcheck/ready`` (readiness: S3 buckets reachable), and a liveness
  ``/healthcheck`` used when Thumbor's own healthcheck handler list is not configured.
- :mod:`.metrics`: ``/metrics`` (Prometheus text format, optional bearer token).

Every handler here derives from :class:`ObservedHandler`, which reports the request through
:func:`thumbor_plugins.observe.request_finished` with the handler's route ``kind``.
"""

from __future__ import annotations

from .base import ObservedHandler
from .health import LivenessHandler, ReadinessHandler
from .metrics import MetricsHandler

__all__ = ["LivenessHandler", "MetricsHandler", "ObservedHandler", "ReadinessHandler"]
