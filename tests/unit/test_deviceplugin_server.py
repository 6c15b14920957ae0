"""The DevicePlugin service: options, ListAndWatch, Allocate (per strategy), GetPreferredAllocation (not
offered: UNIMPLEMENTED, as the options say).

Stream mechanics are checked on the service with a fake context; everything else over real gRPC on a
unix socket, with the plugin registered to the fake kubelet."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse.deviceplugin import api, loop, server, state, strategies
from tests.fakes.kubelet import FakeKubelet, PluginConnection, plugin_config, plugin_thread
from tests.unit.conftest import StartPlugin

RESOURCE = "cdi-fuse.io/fuse"
QUALIFIED = "cdi-fuse.io/fuse=fuse"


# ---- ListAndWatch on the service, with a fake context -----------------------------------------------------


class FakeContext:
    """Records callbacks like grpc's context; `disconnect()` runs them (the client went away)."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True

    def disconnect(self) -> None:
        for callback in self.callbacks:
            callback()


def make_service(plugin_state: state.PluginState, count: int = 2) -> server.DevicePluginService:
    ids = [api.DeviceId(f"fuse-{i}") for i in range(count)]
    builder = strategies.AllocationBuilder(
        resource_name=RESOURCE,
        qualified_name=QUALIFIED,
        host_device_path="/dev/fuse",
        container_device_path="/dev/fuse",
        permissions="rw",
        device_ids=ids,
    )
    return server.DevicePluginService(
        resource_name=RESOURCE,
        device_lists=server.DeviceLists("fuse", len(ids)),
        plugin_state=plugin_state,
        builder=builder,
    )


def healths(response: pb.ListAndWatchResponse) -> list[str]:
    return [device.health for device in response.devices]


class StreamReader:
    """Pulls a ListAndWatch generator in a thread (as grpc does) and hands over each response."""

    def __init__(self, stream: Iterator[pb.ListAndWatchResponse]) -> None:
        self.responses: list[pb.ListAndWatchResponse] = []
        self.ended = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pull, args=(stream,), daemon=True)
        self._thread.start()

    def _pull(self, stream: Iterator[pb.ListAndWatchResponse]) -> None:
        for response in stream:
            with self._cond:
                self.responses.append(response)
                self._cond.notify_all()
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[StreamReader], bool], timeout: float = 5.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self), timeout), (self.responses, self.ended)


def test_list_and_watch_sends_current_health_then_each_change() -> None:
    plugin_state = state.PluginState(healthy=True, decision=api.Decision(frozenset({"cdi"}), "test"))
    service = make_service(plugin_state)
    context = FakeContext()
    reader = StreamReader(service.ListAndWatch(pb.Empty(), context))  # type: ignore[arg-type]
    reader.wait_for(lambda r: len(r.responses) == 1)
    assert healths(reader.responses[0]) == ["Healthy", "Healthy"]
    assert plugin_state.set_health(False)
    reader.wait_for(lambda r: len(r.responses) == 2)
    assert healths(reader.responses[1]) == ["Unhealthy", "Unhealthy"]
    assert not plugin_state.set_health(False)  # no change, nothing sent
    assert plugin_state.set_health(True)
    reader.wait_for(lambda r: len(r.responses) == 3)
    assert [healths(r)[0] for r in reader.responses] == ["Healthy", "Unhealthy", "Healthy"]
    context.disconnect()
    reader.wait_for(lambda r: r.ended)
    assert len(reader.responses) == 3


def test_list_and_watch_ends_when_the_service_closes() -> None:
    plugin_state = state.PluginState(healthy=False, decision=api.Decision(frozenset({"cdi"}), "test"))
    service = make_service(plugin_state)
    readers = [StreamReader(service.ListAndWatch(pb.Empty(), FakeContext())) for _ in range(3)]  # type: ignore[arg-type]
    for reader in readers:
        reader.wait_for(lambda r: len(r.responses) == 1)
        assert healths(reader.responses[0]) == ["Unhealthy", "Unhealthy"]
    service.close()
    for reader in readers:
        reader.wait_for(lambda r: r.ended)


def test_one_disconnect_leaves_other_streams_open() -> None:
    plugin_state = state.PluginState(healthy=True, decision=api.Decision(frozenset({"cdi"}), "test"))
    service = make_service(plugin_state)
    gone, staying = FakeContext(), FakeContext()
    gone_reader = StreamReader(service.ListAndWatch(pb.Empty(), gone))  # type: ignore[arg-type]
    staying_reader = StreamReader(service.ListAndWatch(pb.Empty(), staying))  # type: ignore[arg-type]
    gone_reader.wait_for(lambda r: len(r.responses) == 1)
    staying_reader.wait_for(lambda r: len(r.responses) == 1)
    gone.disconnect()
    gone_reader.wait_for(lambda r: r.ended)
    plugin_state.set_health(False)
    staying_reader.wait_for(lambda r: len(r.responses) == 2)
    assert not staying_reader.ended
    staying.disconnect()
    staying_reader.wait_for(lambda r: r.ended)


# ---- over gRPC, registered to the fake kubelet ------------------------------------------------------------


def test_options_are_what_register_sent(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin()
    conn = kubelet.wait_for_plugin(RESOURCE)
    assert conn.options == conn.request.options
    assert conn.options == server.plugin_options()
    assert conn.stub.GetDevicePluginOptions(pb.Empty(), timeout=5) == conn.request.options


@pytest.mark.parametrize("count", [1, 7, 110])
def test_list_and_watch_advertises_count_healthy_devices(
    kubelet: FakeKubelet, start_plugin: StartPlugin, count: int
) -> None:
    start_plugin(count=count)
    first = kubelet.wait_for_plugin(RESOURCE).wait_for_list(lambda r: True)
    assert [d.ID for d in first.devices] == [f"fuse-{i}" for i in range(count)]
    assert {d.health for d in first.devices} == {"Healthy"}


def test_device_ids_are_stable_across_plugin_and_kubelet_restarts(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    def advertised(conn_before: PluginConnection | None = None) -> list[str]:
        conn = kubelet.wait_for_plugin(RESOURCE, newer_than=conn_before)
        return [d.ID for d in conn.wait_for_list(lambda r: True).devices]

    config = plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi", count=5)
    with plugin_thread(loop.PluginLoop(config)):
        first = advertised()
        conn = kubelet.wait_for_plugin(RESOURCE)
        kubelet.restart()
        after_kubelet_restart = advertised(conn)
    last = kubelet.wait_for_plugin(RESOURCE)
    with plugin_thread(loop.PluginLoop(config)):
        after_plugin_restart = advertised(last)
    assert first == after_kubelet_restart == after_plugin_restart == [f"fuse-{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("strategy", "cdi_devices", "annotations", "devices"),
    [
        pytest.param("cdi", [QUALIFIED], {}, [], id="cdi"),
        pytest.param("cdi-annotations", [], {"cdi.k8s.io/cdi-fuse.io_fuse_fuse-1": QUALIFIED}, [], id="annotations"),
        pytest.param("device-spec", [], {}, [("/dev/fuse", "/dev/fuse", "rwm")], id="device-spec"),
        pytest.param(
            "cdi,cdi-annotations",
            [QUALIFIED],
            {"cdi.k8s.io/cdi-fuse.io_fuse_fuse-1": QUALIFIED},
            [],
            id="cdi+annotations",
        ),
        pytest.param("cdi,device-spec", [QUALIFIED], {}, [("/dev/fuse", "/dev/fuse", "rwm")], id="cdi+device-spec"),
        pytest.param(
            "cdi,cdi-annotations,device-spec",
            [QUALIFIED],
            {"cdi.k8s.io/cdi-fuse.io_fuse_fuse-1": QUALIFIED},
            [("/dev/fuse", "/dev/fuse", "rwm")],
            id="all",
        ),
    ],
)
def test_allocate_per_strategy(
    kubelet: FakeKubelet,
    start_plugin: StartPlugin,
    strategy: str,
    cdi_devices: list[str],
    annotations: dict[str, str],
    devices: list[tuple[str, str, str]],
) -> None:
    start_plugin(strategy=strategy, permissions="rwm")
    (response,) = kubelet.allocate(RESOURCE, [["fuse-1"]]).container_responses
    assert [d.name for d in response.cdi_devices] == cdi_devices
    assert dict(response.annotations) == annotations
    assert [(d.container_path, d.host_path, d.permissions) for d in response.devices] == devices
    assert not response.envs and not response.mounts


@pytest.mark.parametrize("permissions", ["r", "rw", "rwm"])
def test_device_spec_permissions_follow_the_option(
    kubelet: FakeKubelet, start_plugin: StartPlugin, permissions: str
) -> None:
    start_plugin(strategy="device-spec", permissions=permissions)
    (response,) = kubelet.allocate(RESOURCE, [["fuse-0"]]).container_responses
    assert [d.permissions for d in response.devices] == [permissions]


@pytest.mark.parametrize(
    "requests",
    [
        pytest.param([["fuse-9"]], id="alone"),
        pytest.param([["fuse-0", "fuse-9"]], id="among-known"),
        pytest.param([["fuse-0"], ["fuse-9"]], id="second-container"),
        pytest.param([["fuse-"]], id="prefix"),
    ],
)
def test_allocate_unknown_device_is_invalid_argument(
    kubelet: FakeKubelet, start_plugin: StartPlugin, requests: list[list[str]]
) -> None:
    start_plugin()
    bad = requests[-1][-1]
    with pytest.raises(grpc.RpcError) as caught:
        kubelet.allocate(RESOURCE, requests)
    error: grpc.Call = caught.value  # type: ignore[assignment]
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert repr(bad) in (error.details() or "")


def test_allocate_several_containers_in_order(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin(strategy="cdi-annotations")
    order = [["fuse-2"], ["fuse-0"], ["fuse-1", "fuse-2"], ["fuse-2"]]
    response = kubelet.allocate(RESOURCE, order)
    assert [dict(r.annotations) for r in response.container_responses] == [
        {f"cdi.k8s.io/cdi-fuse.io_fuse_{ids[0]}": QUALIFIED} for ids in order
    ]


def test_allocate_empty_request(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin(strategy="cdi,cdi-annotations,device-spec")
    assert kubelet.allocate(RESOURCE, []) == pb.AllocateResponse()


def test_allocate_container_without_devices(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin(strategy="cdi,cdi-annotations")
    (response,) = kubelet.allocate(RESOURCE, [[]]).container_responses
    assert [d.name for d in response.cdi_devices] == [QUALIFIED]
    assert not response.annotations


def test_allocate_follows_the_current_decision(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    manager = start_plugin(strategy="cdi")
    assert kubelet.allocate(RESOURCE, [["fuse-0"]]).container_responses[0].cdi_devices
    manager.state.set_decision(api.Decision(frozenset({"device-spec"}), "test"))
    (response,) = kubelet.allocate(RESOURCE, [["fuse-0"]]).container_responses
    assert not response.cdi_devices and [d.host_path for d in response.devices] == ["/dev/fuse"]


def test_preferred_allocation_is_not_offered(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    """Every ID grants the same shared device: nothing to prefer, so the plugin says it has no preference and
    the kubelet never asks (a kubelet that asks anyway gets UNIMPLEMENTED, not a made-up answer)."""
    start_plugin()
    conn = kubelet.wait_for_plugin(RESOURCE)
    assert conn.options is not None and not conn.options.get_preferred_allocation_available
    request = pb.PreferredAllocationRequest(
        container_requests=[pb.ContainerPreferredAllocationRequest(available_deviceIDs=["fuse-0"], allocation_size=1)]
    )
    with pytest.raises(grpc.RpcError) as caught:
        conn.stub.GetPreferredAllocation(request, timeout=5)
    assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_pre_start_container_is_a_no_op(kubelet: FakeKubelet, start_plugin: StartPlugin) -> None:
    start_plugin()
    conn = kubelet.wait_for_plugin(RESOURCE)
    request = pb.PreStartContainerRequest(devices_ids=["fuse-0"])
    assert conn.stub.PreStartContainer(request, timeout=5) == pb.PreStartContainerResponse()


def test_allocations_are_reported_to_the_observer() -> None:
    seen: list[tuple[str, int]] = []
    plugin_state = state.PluginState(healthy=True, decision=api.Decision(frozenset({"cdi", "device-spec"}), "t"))
    ids = [api.DeviceId(f"fuse-{i}") for i in range(2)]
    builder = strategies.AllocationBuilder(
        resource_name=RESOURCE,
        qualified_name=QUALIFIED,
        host_device_path="/dev/fuse",
        container_device_path="/dev/fuse",
        permissions="rw",
        device_ids=ids,
    )
    service = server.DevicePluginService(
        resource_name=RESOURCE,
        device_lists=server.DeviceLists("fuse", len(ids)),
        plugin_state=plugin_state,
        builder=builder,
        on_allocate=lambda label, containers: seen.append((label, containers)),
    )
    request = pb.AllocateRequest(
        container_requests=[pb.ContainerAllocateRequest(devices_ids=["fuse-0"]) for _ in range(3)]
    )
    service.Allocate(request, FakeContext())  # type: ignore[arg-type]
    assert seen == [("cdi+device-spec", 3)]


@pytest.mark.parametrize(
    ("device_id", "known"),
    [
        pytest.param("fuse-0", True, id="first"),
        pytest.param("fuse-109", True, id="last"),
        pytest.param("fuse-110", False, id="past-the-count"),
        pytest.param("fuse-01", False, id="leading-zero"),
        pytest.param("fuse--1", False, id="negative"),
        pytest.param("fuse-", False, id="no-number"),
        pytest.param("fuse-1 ", False, id="trailing-space"),
        pytest.param("fuse-\u0661", False, id="non-ascii-digit"),  # ARABIC-INDIC DIGIT ONE: isdigit() is True
        pytest.param("other-1", False, id="other-name"),
        pytest.param("1", False, id="number-only"),
    ],
)
def test_device_ids_are_recognised_by_their_form(device_id: str, known: bool) -> None:
    """No per-ID state: IDs are `<name>-<n>` for n below the count, exactly as ListAndWatch sends them."""
    lists = server.DeviceLists("fuse", 110)
    assert lists.is_known(device_id) is known
    assert lists.longest_id == "fuse-109"
    sent = {device.ID for device in lists.answer(True).devices}
    assert (device_id in sent) is known


def test_only_the_answer_for_the_current_health_is_kept() -> None:
    lists = server.DeviceLists("fuse", 3)
    healthy = lists.answer(True)
    assert lists.answer(True) is healthy  # built once per health change, not per stream
    assert {d.health for d in lists.answer(False).devices} == {server.UNHEALTHY}
    assert [d.ID for d in lists.answer(True).devices] == ["fuse-0", "fuse-1", "fuse-2"]
