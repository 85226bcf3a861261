"""The worker's HTTP port: `/metrics` (Prometheus), `/healthz` (the process is up) and `/readyz`
(the broker, Redis and the model answer), for Kubernetes probes and Prometheus alike.

The readiness checks talk to the broker and Redis, which may hang: they run on their own timer
thread, and `/readyz` answers at once from the latest result (503 naming what is down), so a
probe never waits on a stalled dependency."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["ReadinessCheck", "serve"]

ReadinessCheck = Callable[[], dict[str, bool]]
REFRESH_S = 2.0


class _Readiness:
    """The latest result of ``check``, refreshed every ``REFRESH_S`` by a daemon thread."""

    def __init__(self, check: ReadinessCheck) -> None:
        self._check = check
        self._lock = threading.Lock()
        self._last: dict[str, bool] = {"checked": False}
        threading.Thread(target=self._refresh_forever, name="nba-readiness", daemon=True).start()

    def _refresh_forever(self) -> None:
        while True:
            started = time.monotonic()
            try:
                result = self._check()
            except Exception:  # a check that cannot run says "not ready", never stops the thread
                result = {"checked": False}
            with self._lock:
                self._last = result
            time.sleep(max(REFRESH_S - (time.monotonic() - started), 0.1))

    def __call__(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._last)


def serve(
    host: str, port: int, registry: CollectorRegistry, readiness: ReadinessCheck
) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; returns the server (call shutdown() to stop)."""
    ready = _Readiness(readiness)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  # the http.server API
            if self.path.startswith("/metrics"):
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                self._send(200, b'{"status":"ok"}', "application/json")
            elif self.path.startswith("/readyz"):
                checks = ready()
                status = 200 if checks and all(checks.values()) else 503
                self._send(
                    status,
                    json.dumps({"ready": status == 200, "checks": checks}).encode(),
                    "application/json",
                )
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002  # probes are not news
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="nba-http", daemon=True).start()
    return server
