"""Prometheus metrics and the /healthz + /metrics HTTP endpoint."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cdi_fuse.deviceplugin import api

__all__ = ["MetricsServer", "PluginMetrics", "parse_address"]

log = logging.getLogger(__name__)


class PluginMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.registrations = Counter(
            "cdi_fuse_registrations",
            "Successful registrations with the kubelet.",
            ["resource"],
            registry=self.registry,
        )
        self.registration_failures = Counter(
            "cdi_fuse_registration_failures", "Failed registration attempts.", ["resource"], registry=self.registry
        )
        self.kubelet_restarts = Counter(
            "cdi_fuse_kubelet_restarts",
            "Kubelet restarts seen (sockets removed or kubelet.sock re-created).",
            registry=self.registry,
        )
        self.allocations = Counter(
            "cdi_fuse_allocations",
            "Containers allocated, by the strategies used.",
            ["resource", "strategy"],
            registry=self.registry,
        )
        self.device_healthy = Gauge(
            "cdi_fuse_device_healthy", "1 while the FUSE device is healthy.", registry=self.registry
        )
        self.registered = Gauge(
            "cdi_fuse_registered",
            "1 while the resource is registered with the kubelet.",
            ["resource"],
            registry=self.registry,
        )
        self.strategy = Gauge(
            "cdi_fuse_strategy", "1 for each strategy Allocate currently uses.", ["strategy"], registry=self.registry
        )
        self.spec_writes = Counter(
            "cdi_fuse_spec_writes", "CDI spec files (re)written by the plugin.", registry=self.registry
        )

    def set_decision(self, decision: api.Decision) -> None:
        for name in api.ALL_STRATEGIES:
            self.strategy.labels(name).set(1 if name in decision.strategies else 0)

    def observer(self, resource: str) -> Callable[[str, int], None]:
        children: dict[str, Counter] = {}

        def observe(label: str, containers: int) -> None:
            child = children.get(label)
            if child is None:
                child = children[label] = self.allocations.labels(resource, label)
            child.inc(containers)

        return observe


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:9400`) into a bind pair; ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid metrics address {address!r}: expected host:port, e.g. 127.0.0.1:9400")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    """Serves /metrics and /healthz (200 only while `is_healthy()`) in a daemon thread."""

    def __init__(self, address: str, metrics: PluginMetrics, is_healthy: Callable[[], tuple[bool, str]]) -> None:
        host, port = parse_address(address)
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/livez":
                    self._reply(200, b"ok\n", "text/plain; charset=utf-8")
                elif path in ("/healthz", "/readyz"):
                    ok, why = is_healthy()
                    self._reply(200 if ok else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
                else:
                    self._reply(404, b"not found\n", "text/plain; charset=utf-8")

            def _reply(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.address = self._httpd.server_address
        # A long poll interval: the loop is woken by a connection at stop, so idle costs no CPU.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 3600}, name="metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("serving /metrics and /healthz on %s:%s", self.address[0], self.address[1])

    def stop(self) -> None:
        stopper = threading.Thread(target=self._httpd.shutdown, daemon=True)
        stopper.start()
        host = "127.0.0.1" if self.address[0] in ("0.0.0.0", "") else str(self.address[0])
        with contextlib.suppress(OSError):
            socket.create_connection((host, int(self.address[1])), timeout=1).close()
        stopper.join(5)
        self._httpd.server_close()
