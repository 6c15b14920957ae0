"""One benchmark client process: connect, warm up, say "ready", wait for "go", run N Allocates, print JSON.

Run by bench/run.py as `python bench/alloc_client.py <socket> <calls> <device-count> [<first-id>]`: the calls
ask for IDs first-id, first-id + 1, ... (mod device-count, round and round). Several of these at once
measure the plugin's throughput without the client's GIL in the way.
"""

from __future__ import annotations

import json
import sys
import time

import grpc

from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse._proto import deviceplugin_pb2_grpc as pb_grpc

WARM_UP_CALLS = 20


def allocate_request(device_id: str) -> pb.AllocateRequest:
    """What the kubelet sends in practice: one container asking for one device."""
    return pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=[device_id])])


def main(argv: list[str]) -> int:
    socket_path, calls, device_count = argv[0], int(argv[1]), int(argv[2])
    first = int(argv[3]) if len(argv) > 3 else 0
    requests = [allocate_request(f"fuse-{(first + i) % device_count}") for i in range(min(calls, device_count))]
    with grpc.insecure_channel(f"unix:{socket_path}") as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        allocate = pb_grpc.DevicePluginStub(channel).Allocate
        for i in range(WARM_UP_CALLS):
            allocate(requests[i % len(requests)], timeout=10)
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        errors = 0
        cpu_start, start = time.process_time(), time.monotonic()
        for i in range(calls):
            try:
                allocate(requests[i % len(requests)], timeout=10)
            except grpc.RpcError:
                errors += 1
        end, cpu_end = time.monotonic(), time.process_time()
    report = {"start": start, "end": end, "calls": calls, "errors": errors, "cpu": cpu_end - cpu_start}
    print(json.dumps({**report, "warm_up": WARM_UP_CALLS}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
