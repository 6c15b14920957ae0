"""/healthz and /livez over plain HTTP (stdlib only), for the DaemonSet's probes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cdi_fuse import sockets

__all__ = ["HealthServer", "parse_address"]

log = logging.getLogger(__name__)

HealthReport = Callable[[], tuple[bool, str]]


def parse_address(address: str) -> tuple[str, int]:
    return sockets.parse_address(address, what="health address", option="--health-address")


class HealthServer:
    """GET /healthz: 200 while `report()` says ready, else 503, with the reason; GET /livez: 200."""

    def __init__(self, address: str, report: HealthReport) -> None:
        host, port = parse_address(address)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/livez":
                    ok, text = True, "alive"
                elif self.path == "/healthz":
                    ok, text = report()
                else:
                    self.send_error(404)
                    return
                body = f"{'ok' if ok else 'not ready'}: {text}\n".encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("health: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
