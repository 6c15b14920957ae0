"""The plugin-registration service the kubelet's plugin watcher talks to (GetInfo, NotifyRegistrationStatus)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from cdi_fuse._proto import pluginregistration_pb2 as pb
from cdi_fuse._proto import pluginregistration_pb2_grpc as pb_grpc
from cdi_fuse.dra import api

__all__ = ["RegistrationService", "RegistrationStatus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistrationStatus:
    registered: bool
    error: str
    count: int  # successful registrations so far (a kubelet restart adds one)
    info_calls: int
    first_registered: float | None  # time.monotonic() of the first successful registration


class RegistrationService(pb_grpc.RegistrationServicer):
    """Answers GetInfo with the driver's name, DRA endpoint and services; records what the kubelet reports."""

    def __init__(
        self,
        *,
        driver: str,
        endpoint: str,
        services: Sequence[str] = api.SUPPORTED_SERVICES,
        on_status: Callable[[RegistrationStatus], None] | None = None,
    ) -> None:
        self._on_status = on_status
        self.info = pb.PluginInfo(
            type=api.PLUGIN_TYPE, name=driver, endpoint=endpoint, supported_versions=list(services)
        )
        self._changed = threading.Condition()
        self._registered = False
        self._error = ""
        self._count = 0
        self._info_calls = 0
        self._first: float | None = None

    def GetInfo(self, request: pb.InfoRequest, context: grpc.ServicerContext) -> pb.PluginInfo:
        with self._changed:
            self._info_calls += 1
        log.info("asked for plugin info (%s at %s)", self.info.name, self.info.endpoint)
        return self.info

    def NotifyRegistrationStatus(
        self, request: pb.RegistrationStatus, context: grpc.ServicerContext
    ) -> pb.RegistrationStatusResponse:
        with self._changed:
            self._registered = request.plugin_registered
            self._error = request.error
            if request.plugin_registered:
                self._count += 1
                if self._first is None:
                    self._first = time.monotonic()
            self._changed.notify_all()
        if self._on_status is not None:
            self._on_status(self.status())
        if request.plugin_registered:
            log.info("registered with the kubelet as DRA driver %s", self.info.name)
        else:
            log.error("the kubelet refused the registration of %s: %s", self.info.name, request.error)
        return pb.RegistrationStatusResponse()

    def status(self) -> RegistrationStatus:
        with self._changed:
            return RegistrationStatus(self._registered, self._error, self._count, self._info_calls, self._first)

    def forget(self) -> None:
        """The socket is served anew: the kubelet has to register it again."""
        with self._changed:
            self._registered = False
            self._changed.notify_all()

    def wait_registered(self, timeout: float, *, count: int = 1) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._registered and self._count >= count, timeout)
