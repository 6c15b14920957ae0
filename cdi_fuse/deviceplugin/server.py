"""The DevicePlugin gRPC service for one resource: options, ListAndWatch, Allocate."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

import grpc

from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse._proto import deviceplugin_pb2_grpc as pb_grpc
from cdi_fuse.deviceplugin import api, state, strategies

__all__ = ["HEALTHY", "UNHEALTHY", "DevicePluginService", "plugin_options"]

HEALTHY = "Healthy"
UNHEALTHY = "Unhealthy"

AllocationObserver = Callable[[str, int], None]  # (decision label, containers)


def plugin_options() -> pb.DevicePluginOptions:
    """Options sent at Register and from GetDevicePluginOptions: the same object, so they cannot differ."""
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


class DevicePluginService(pb_grpc.DevicePluginServicer):
    def __init__(
        self,
        *,
        resource_name: str,
        device_ids: Sequence[api.DeviceId],
        plugin_state: state.PluginState,
        builder: strategies.AllocationBuilder,
        on_allocate: AllocationObserver | None = None,
    ) -> None:
        self.resource_name = resource_name
        self._state = plugin_state
        self._builder = builder
        self._known = frozenset(device_ids)
        self._on_allocate = on_allocate
        self._closing = threading.Event()
        self._lists = {
            healthy: pb.ListAndWatchResponse(
                devices=[pb.Device(ID=i, health=HEALTHY if healthy else UNHEALTHY) for i in device_ids]
            )
            for healthy in (True, False)
        }
        # Responses differ only by decision and by the first device ID (annotation key).
        self._responses: dict[tuple[frozenset[str], str], pb.ContainerAllocateResponse] = {}

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
            yield self._lists[snapshot.healthy]

    def GetPreferredAllocation(
        self, request: pb.PreferredAllocationRequest, context: grpc.ServicerContext
    ) -> pb.PreferredAllocationResponse:
        responses = []
        for creq in request.container_requests:
            chosen = list(creq.must_include_deviceIDs)
            for device_id in creq.available_deviceIDs:
                if len(chosen) >= creq.allocation_size:
                    break
                if device_id not in chosen:
                    chosen.append(device_id)
            responses.append(pb.ContainerPreferredAllocationResponse(deviceIDs=chosen))
        return pb.PreferredAllocationResponse(container_responses=responses)

    def Allocate(self, request: pb.AllocateRequest, context: grpc.ServicerContext) -> pb.AllocateResponse:
        decision = self._state.decision
        responses = []
        for creq in request.container_requests:
            ids = creq.devices_ids
            for device_id in ids:
                if device_id not in self._known:
                    context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"unknown device id {_shorten(device_id)} for resource {self.resource_name!r}",
                    )
            key = (decision.strategies, ids[0] if ids else "")
            response = self._responses.get(key)
            if response is None:
                ids_typed = [api.DeviceId(i) for i in ids]
                response = _to_proto(self._builder.build(ids_typed, decision.strategies))
                self._responses[key] = response
            responses.append(response)
        if self._on_allocate is not None:
            self._on_allocate(decision.label, len(responses))
        return pb.AllocateResponse(container_responses=responses)

    def PreStartContainer(
        self, request: pb.PreStartContainerRequest, context: grpc.ServicerContext
    ) -> pb.PreStartContainerResponse:
        return pb.PreStartContainerResponse()
