"""Prometheus metrics and the /healthz, /livez and /metrics HTTP endpoint.

Imported only when `--metrics-address` is given: prometheus_client costs the plugin process ~3 MB.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cdi_fuse import sockets
from cdi_fuse.deviceplugin import api

__all__ = ["MetricsServer", "PluginMetrics", "parse_address"]

log = logging.getLogger(__name__)


class PluginMetrics:
    """The plugin's metrics; an api.PluginObserver."""

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
            "Kubelet restarts seen (kubelet.sock created again).",
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
        self.registered_gauge = Gauge(
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
        self._allocation_children: dict[tuple[str, str], Counter] = {}

    def registered(self, resource: str, registered: bool) -> None:
        if registered:
            self.registrations.labels(resource).inc()
        self.registered_gauge.labels(resource).set(1 if registered else 0)

    def registration_failed(self, resource: str) -> None:
        self.registration_failures.labels(resource).inc()

    def kubelet_restarted(self) -> None:
        self.kubelet_restarts.inc()

    def device_health(self, healthy: bool) -> None:
        self.device_healthy.set(1 if healthy else 0)

    def decision(self, decision: api.Decision) -> None:
        for name in api.ALL_STRATEGIES:
            self.strategy.labels(name).set(1 if name in decision.strategies else 0)

    def spec_written(self) -> None:
        self.spec_writes.inc()

    def allocated(self, resource: str, label: str, containers: int) -> None:
        child = self._allocation_children.get((resource, label))
        if child is None:
            child = self._allocation_children[(resource, label)] = self.allocations.labels(resource, label)
        child.inc(containers)


parse_address = sockets.parse_address


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serves /metrics, /livez and /healthz (200 only while `is_healthy()`) in a daemon thread."""

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

        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
        self._httpd = server_class((host, port), Handler)
        self._httpd.daemon_threads = True
        self.address: tuple[str, int] = (str(self._httpd.server_address[0]), int(self._httpd.server_address[1]))
        # A long poll interval: the loop is woken by a connection at stop, so idle costs no CPU.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 3600}, name="metrics", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        log.info("serving /metrics, /livez and /healthz on %s", self.url)

    def stop(self) -> None:
        stopper = threading.Thread(target=self._httpd.shutdown, daemon=True)
        stopper.start()
        host, port = self.address
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
        with contextlib.suppress(OSError):
            socket.create_connection((wildcard.get(host, host), port), timeout=1).close()
        stopper.join(5)
        self._httpd.server_close()
