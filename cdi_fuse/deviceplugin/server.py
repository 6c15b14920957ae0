"""The DevicePlugin gRPC service for one resource: options, ListAndWatch, Allocate."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc

from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse._proto import deviceplugin_pb2_grpc as pb_grpc
from cdi_fuse.deviceplugin import api, state, strategies

__all__ = ["HEALTHY", "UNHEALTHY", "DeviceLists", "DevicePluginService", "plugin_options"]

HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"

AllocationObserver = Callable[[str, int], None]  # (decision label, containers)


def plugin_options() -> pb.DevicePluginOptions:
    """Options sent at Register and from GetDevicePluginOptions: one function makes both, so they cannot differ."""
    return pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=False)


# Status details travel in a header the client caps (8 KiB soft, 16 KiB hard by default); a longer one turns
# INVALID_ARGUMENT into RESOURCE_EXHAUSTED on the kubelet's side.
_MAX_ID_IN_MESSAGE = 128


def _shorten(device_id: str) -> str:
    if len(device_id) <= _MAX_ID_IN_MESSAGE:
        return repr(device_id)
    return f"{device_id[:_MAX_ID_IN_MESSAGE]!r}... ({len(device_id)} characters)"


def _to_proto(allocation: api.Allocation) -> pb.ContainerAllocateResponse:
    return pb.ContainerAllocateResponse(
        cdi_devices=[pb.CDIDevice(name=name) for name in allocation.cdi_devices],
        annotations=allocation.annotations,
        devices=[
            pb.DeviceSpec(container_path=d.container_path, host_path=d.host_path, permissions=d.permissions)
            for d in allocation.device_specs
        ],
    )


class DeviceLists:
    """The device IDs of one resource (`<device name>-0` .. `-<count-1>`) and its ListAndWatch answer.

    Nothing here grows with the count but the one answer the kubelet is being sent: IDs are recognised by
    their form, and the answer for the other health is built when health changes (rare) instead of kept.
    """

    def __init__(self, device_name: str, count: int) -> None:
        self._prefix = f"{device_name}-"
        self.count = count
        self._answer: tuple[bool, pb.ListAndWatchResponse] | None = None

    @property
    def longest_id(self) -> api.DeviceId:
        return api.DeviceId(f"{self._prefix}{self.count - 1}")

    def is_known(self, device_id: str) -> bool:
        number = device_id.removeprefix(self._prefix)
        if number == device_id or not number.isdigit() or not number.isascii():
            return False
        return (number == "0" or not number.startswith("0")) and int(number) < self.count

    def answer(self, healthy: bool) -> pb.ListAndWatchResponse:
        cached = self._answer
        if cached is None or cached[0] != healthy:
            health = HEALTHY if healthy else UNHEALTHY
            devices = [pb.Device(ID=f"{self._prefix}{i}", health=health) for i in range(self.count)]
            cached = self._answer = (healthy, pb.ListAndWatchResponse(devices=devices))
        return cached[1]


class DevicePluginService(pb_grpc.DevicePluginServicer):
    """One serve's service. GetPreferredAllocation is not offered (options say so, the base class answers
    UNIMPLEMENTED): every ID grants the same shared device, so there is nothing to prefer."""

    def __init__(
        self,
        *,
        resource_name: str,
        device_lists: DeviceLists,
        plugin_state: state.PluginState,
        builder: strategies.AllocationBuilder,
        on_allocate: AllocationObserver | None = None,
    ) -> None:
        self.resource_name = resource_name
        self._state = plugin_state
        self._builder = builder
        self._lists = device_lists
        self._on_allocate = on_allocate
        self._closing = threading.Event()

    def close(self) -> None:
        """End open ListAndWatch streams."""
        self._closing.set()
        self._state.wake_all()

    def GetDevicePluginOptions(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.DevicePluginOptions:
        return plugin_options()

    def ListAndWatch(self, request: pb.Empty, context: grpc.ServicerContext) -> Iterator[pb.ListAndWatchResponse]:
        done = threading.Event()

        def finished() -> None:
            done.set()
            self._state.wake_all()

        context.add_callback(finished)
        seen = -1
        while True:
            snapshot = self._state.wait_for_health(seen, lambda: done.is_set() or self._closing.is_set())
            if snapshot is None:
                return
            seen = snapshot.version
            yield self._lists.answer(snapshot.healthy)

    def Allocate(self, request: pb.AllocateRequest, context: grpc.ServicerContext) -> pb.AllocateResponse:
        decision = self._state.decision
        responses = []
        for creq in request.container_requests:
            ids = creq.devices_ids
            for device_id in ids:
                if not self._lists.is_known(device_id):
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"unknown device id {_shorten(device_id)} for resource {self.resource_name!r}",
                    )
            # Built each time: ~5 µs of a ~370 µs call (measured in-process), not worth a cache that grows.
            responses.append(_to_proto(self._builder.build([api.DeviceId(i) for i in ids], decision.strategies)))
        if self._on_allocate is not None:
            self._on_allocate(decision.label, len(responses))
        return pb.AllocateResponse(container_responses=responses)

    def PreStartContainer(
        self, request: pb.PreStartContainerRequest, context: grpc.ServicerContext
    ) -> pb.PreStartContainerResponse:
        return pb.PreStartContainerResponse()
