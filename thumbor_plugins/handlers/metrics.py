"""``GET /metrics``: Prometheus text format (:mod:`thumbor_plugins.metrics`).

With ``IMGSTACK_METRICS_TOKEN`` set, the request must carry ``Authorization: Bearer <token>``
(401 otherwise; compared in constant time). Without it, /metrics is open: keep it off the public
network (the reverse proxy should not route it).
"""

from __future__ import annotations

from .. import metrics
from .base import ObservedHandler, bearer_matches


def authorized(header: str | None, token: str | None) -> bool:
    """Open without a token; otherwise the header must carry it as a bearer token."""
    return not token or bearer_matches(header, token)


class MetricsHandler(ObservedHandler):
    kind = "metrics"

    def get(self) -> None:
        if not authorized(self.request.headers.get("Authorization"), self.service_settings.metrics_token):
            self.rejection = "unauthorized"
            self.set_header("WWW-Authenticate", 'Bearer realm="metrics"')
            self.write_json(401, {"error": "unauthorized"})
            return
        self.set_header("Content-Type", metrics.CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.write(metrics.exposition())
