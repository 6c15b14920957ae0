"""The floor: the least a Python + grpcio kubelet device plugin does, for `make bench` to compare with.

It serves a unix socket, registers once with the kubelet, answers ListAndWatch with one list of `count`
healthy IDs (then holds the stream open), and answers every Allocate with one fixed CDI device name plus
a DeviceSpec, the answer `cdi-fuse plugin --strategy cdi,device-spec` gives. Nothing else: no health
watch, no spec file, no re-registration, no option parsing beyond argv. The gRPC server is set up the
way a plain grpcio program does it (a ThreadPoolExecutor of 10 workers). It uses the project's stubs,
as any plugin needs stubs of the kubelet's API.

    python bench/floor_plugin.py <plugin-dir> <socket-name> <resource> <count> <cdi-name> <device-path>

SIGTERM stops the server (which removes the socket) and exits.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from types import FrameType

import grpc

from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse._proto import deviceplugin_pb2_grpc as pb_grpc


class FloorPlugin(pb_grpc.DevicePluginServicer):
    def __init__(self, count: int, cdi_name: str, device_path: str) -> None:
        devices = [pb.Device(ID=f"fuse-{i}", health="Healthy") for i in range(count)]
        self._list = pb.ListAndWatchResponse(devices=devices)
        self._answer = pb.ContainerAllocateResponse(
            cdi_devices=[pb.CDIDevice(name=cdi_name)],
            devices=[pb.DeviceSpec(container_path=device_path, host_path=device_path, permissions="rw")],
        )

    def GetDevicePluginOptions(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.DevicePluginOptions:
        return pb.DevicePluginOptions()

    def ListAndWatch(self, request: pb.Empty, context: grpc.ServicerContext) -> Iterator[pb.ListAndWatchResponse]:
        yield self._list
        ended = threading.Event()
        context.add_callback(ended.set)
        ended.wait()

    def Allocate(self, request: pb.AllocateRequest, context: grpc.ServicerContext) -> pb.AllocateResponse:
        return pb.AllocateResponse(container_responses=[self._answer for _ in request.container_requests])


def main(argv: list[str]) -> int:
    plugin_dir, socket_name, resource, count, cdi_name, device_path = argv
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    pb_grpc.add_DevicePluginServicer_to_server(FloorPlugin(int(count), cdi_name, device_path), server)
    server.add_insecure_port(f"unix:{plugin_dir}/{socket_name}")
    server.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop(None)

    signal.signal(signal.SIGTERM, stop)
    with grpc.insecure_channel(f"unix:{plugin_dir}/kubelet.sock") as channel:
        request = pb.RegisterRequest(
            version="v1beta1", endpoint=socket_name, resource_name=resource, options=pb.DevicePluginOptions()
        )
        pb_grpc.RegistrationStub(channel).Register(request, timeout=10)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
