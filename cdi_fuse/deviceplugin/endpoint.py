"""One resource's endpoint: its socket, its gRPC server and its registration, as a small state machine.

    not serving ──serve──▶ serving ──Register──▶ registered
         ▲                    ▲                      │
         └── my socket gone ──┴── kubelet.sock new ──┘

The filesystem is the truth and events are only hints: `reconcile()` reads the state (is the socket I
created in this serve still at my path, by identity? which kubelet.sock did I register with, and which one
is there now?) and acts only on a difference. Nothing here ever deletes a socket it did not create in that
serve, so nothing it does can make it act again:

- the server binds a name used once (`.<socket>.<pid>.<serial>`) and the socket is renamed into place;
  gRPC unlinks the path it bound when a server stops, and that name never holds anything else, so stopping
  an old server can never delete the new socket (stopping a server bound to the final name did, and each
  deletion made the plugin serve and register again: the registration storm);
- a server whose socket is gone is stopped, nothing is unlinked; the socket is unlinked only at shutdown,
  and only while it is still the one this serve created.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc

from cdi_fuse import errors, ratelimit, sockets
from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse._proto import deviceplugin_pb2_grpc as pb_grpc
from cdi_fuse.deviceplugin import api, server

__all__ = [
    "API_VERSION",
    "KUBELET_SOCKET",
    "Backoff",
    "Endpoint",
    "Phase",
    "check_socket_free",
    "dials",
    "file_identity",
    "socket_name",
]

log = logging.getLogger(__name__)

API_VERSION = "v1beta1"
KUBELET_SOCKET = "kubelet.sock"
FileIdentity = sockets.FileIdentity
file_identity = sockets.file_identity
dials = sockets.dials


def socket_name(resource_name: str) -> str:
    return f"cdi-fuse-{resource_name.replace('/', '_')}.sock"


def check_socket_free(path: Path) -> None:
    """Refuse a socket another live process serves; remove a stale one left by a killed process."""
    sockets.check_socket_free(path, program="cdi-fuse plugin")


class Phase(enum.Enum):
    NOT_SERVING = "not serving"
    SERVING = "serving"
    REGISTERED = "registered"


@dataclass
class Backoff:
    """Capped exponential delay between failed attempts; reset by success or by a new kubelet."""

    minimum: float = 0.05
    maximum: float = 5.0
    delay: float = 0.0
    retry_at: float = 0.0

    def failed(self, now: float) -> float:
        self.delay = min(max(self.delay * 2, self.minimum), self.maximum)
        self.retry_at = now + self.delay
        return self.retry_at

    def reset(self) -> None:
        self.delay = 0.0
        self.retry_at = 0.0


ServiceFactory = Callable[[], server.DevicePluginService]


class Endpoint:
    """The DevicePlugin service of one resource on its own socket, and its registration with the kubelet."""

    def __init__(
        self,
        *,
        plugin_dir: Path,
        resource_name: str,
        service_factory: ServiceFactory,
        executor: futures.ThreadPoolExecutor,
        register_timeout: float = 5.0,
        backoff: Backoff | None = None,
        observer: api.PluginObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plugin_dir = plugin_dir
        self.resource_name = resource_name
        self.socket_name = socket_name(resource_name)
        self.socket_path = plugin_dir / self.socket_name
        self.kubelet_socket = plugin_dir / KUBELET_SOCKET
        self._service_factory = service_factory
        self._executor = executor
        self._register_timeout = register_timeout
        self._backoff = backoff or Backoff()
        self._observer = observer or api.NullObserver()
        self._clock = clock
        self._errors = ratelimit.RateLimitedLog(log, clock=clock)
        self._server: grpc.Server | None = None
        self._service: server.DevicePluginService | None = None
        self._socket: FileIdentity | None = None  # the socket this serve created
        self._registered_with: FileIdentity | None = None  # kubelet.sock at the last successful Register
        self._last_kubelet: FileIdentity | None = None  # kubelet.sock last registered with, kept across serves
        self._socket_lost = False
        self._failed_with: FileIdentity | None = None  # kubelet.sock the current backoff is about
        self.registrations = 0

    # --- state, as read now ---

    def socket_is_ours(self) -> bool:
        return self._socket is not None and file_identity(self.socket_path) == self._socket

    def phase(self) -> Phase:
        if not self.socket_is_ours():
            return Phase.NOT_SERVING
        kubelet = file_identity(self.kubelet_socket)
        if kubelet is not None and kubelet == self._registered_with:
            return Phase.REGISTERED
        return Phase.SERVING

    # --- converging ---

    def reconcile(self) -> float | None:
        """Act on what differs from "serving my socket, registered with the kubelet that is there now".

        Returns when to look again (a retry after a failure), or None to wait for the next event.
        """
        # kubelet.sock first: a kubelet binds it only after clearing the dir, so a socket of ours seen after
        # that cannot be deleted by that kubelet's start any more.
        kubelet = file_identity(self.kubelet_socket)
        if kubelet != self._failed_with:
            self._backoff.reset()  # failures were with another kubelet (or none): try this one at once
        if self._server is not None and not self.socket_is_ours():
            log.debug("%s: socket %s is gone; stopping its server", self.resource_name, self.socket_path)
            self._stop_server()
            self._socket_lost = True
        now = self._clock()
        if self._server is None:
            if now < self._backoff.retry_at:
                return self._backoff.retry_at
            try:
                self.serve()
            except errors.RegistrationError as exc:
                self._failed_with = kubelet
                self._errors.error(str(exc))
                return self._backoff.failed(now)
        if kubelet is None or kubelet == self._registered_with:
            return None  # no kubelet to register with (its creation is an event), or registered with this one
        if now < self._backoff.retry_at:
            return self._backoff.retry_at
        try:
            self._register()
        except errors.RegistrationError as exc:
            self._failed_with = kubelet
            self._errors.warning(f"{exc}; retrying with backoff up to {self._backoff.maximum:g}s")
            self._observer.registration_failed(self.resource_name)
            return self._backoff.failed(now)
        after = file_identity(self.kubelet_socket)
        if after is not None and after != kubelet and self.socket_is_ours():
            # kubelet.sock was replaced during the call, yet our socket (served before the call) survived: the
            # new kubelet had cleared the dir before we served, so it bound kubelet.sock before we connected
            # and the call reached it. Its creation event must not register a second time.
            kubelet = after
        # Otherwise: if a kubelet replaced the one we read, it deleted our socket too, and the next pass
        # serves again and registers with it.
        why = self._why_register(kubelet)
        self._registered_with = self._last_kubelet = kubelet
        self._socket_lost = False
        self._failed_with = None
        self._backoff.reset()
        self._errors.clear()
        self.registrations += 1
        self._observer.registered(self.resource_name, True)
        log.info("registered %s with the kubelet (%s)", self.resource_name, why)
        return None

    def _why_register(self, kubelet: FileIdentity) -> str:
        if self._last_kubelet is None:
            return "first registration"
        if kubelet != self._last_kubelet:
            return "kubelet restarted"
        if self._socket_lost:
            return f"{self.socket_name} was removed"
        return "registering again"

    # --- actions ---

    def serve(self) -> None:
        """Serve a new socket at the endpoint path (refusing one another live process serves)."""
        check_socket_free(self.socket_path)
        service = self._service_factory()

        def make_server() -> grpc.Server:
            server_ = grpc.server(self._executor, options=[("grpc.so_reuseport", 0)])
            pb_grpc.add_DevicePluginServicer_to_server(service, server_)
            return server_

        self._server = sockets.serve_at(self.socket_path, make_server)
        self._service = service
        # None when deleted again at once (a kubelet still clearing its dir): the next reconcile serves again.
        self._socket = file_identity(self.socket_path)
        self._registered_with = None

    def _register(self) -> None:
        request = pb.RegisterRequest(
            version=API_VERSION,
            endpoint=self.socket_name,
            resource_name=self.resource_name,
            options=server.plugin_options(),
        )
        try:
            with grpc.insecure_channel(f"unix:{self.kubelet_socket}") as channel:
                pb_grpc.RegistrationStub(channel).Register(
                    request, timeout=self._register_timeout, wait_for_ready=False
                )
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "ERROR"
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise errors.RegistrationError(
                f"cannot register {self.resource_name!r} with the kubelet at {str(self.kubelet_socket)!r}: "
                f"{code}: {details}",
                socket=self.kubelet_socket,
            ) from exc

    def _stop_server(self) -> None:
        if self._service is not None:
            self._service.close()
        if self._server is not None:
            self._server.stop(None)  # unlinks only the once-used name it bound; returns at once
        if self._registered_with is not None:
            self._observer.registered(self.resource_name, False)
        self._server = self._service = None
        self._socket = None
        self._registered_with = None

    def close(self) -> bool:
        """Stop serving; remove the socket if it is still the one this serve created. True when it was."""
        ours = self.socket_is_ours()
        self._stop_server()
        if ours:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        return ours
