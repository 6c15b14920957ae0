"""One endpoint's state machine on its own, against the fake kubelet (real gRPC on unix sockets): reconcile
reads the state and acts only on a difference, never deletes a socket it did not create, backs off on a
fake clock, and tries a new kubelet at once."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from concurrent import futures

import pytest

from cdi_fuse.deviceplugin import api, endpoint, server, state, strategies
from cdi_fuse.ratelimit import RateLimitedLog
from tests.fakes.fake_cri import make_stale_socket
from tests.fakes.kubelet import FakeKubelet
from tests.fakes.observer import RecordingObserver

RESOURCE = "cdi-fuse.io/fuse"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def executor() -> Iterator[futures.ThreadPoolExecutor]:
    pool = futures.ThreadPoolExecutor(max_workers=4)
    yield pool
    pool.shutdown(wait=False, cancel_futures=True)


def make_endpoint(
    kubelet: FakeKubelet, executor: futures.ThreadPoolExecutor, clock: Clock, observer: RecordingObserver
) -> endpoint.Endpoint:
    ids = [api.DeviceId(f"fuse-{i}") for i in range(2)]
    plugin_state = state.PluginState(healthy=True, decision=api.Decision(frozenset({api.CDI}), "test"))
    builder = strategies.AllocationBuilder(
        resource_name=RESOURCE,
        qualified_name="cdi-fuse.io/fuse=fuse",
        host_device_path="/dev/fuse",
        container_device_path="/dev/fuse",
        permissions="rw",
        device_ids=ids,
    )
    lists = server.DeviceLists("fuse", len(ids))
    return endpoint.Endpoint(
        plugin_dir=kubelet.plugin_dir,
        resource_name=RESOURCE,
        service_factory=lambda: server.DevicePluginService(
            resource_name=RESOURCE, device_lists=lists, plugin_state=plugin_state, builder=builder
        ),
        executor=executor,
        backoff=endpoint.Backoff(minimum=1.0, maximum=4.0),
        observer=observer,
        clock=clock,
    )


def test_reconcile_is_idempotent(kubelet: FakeKubelet, executor: futures.ThreadPoolExecutor) -> None:
    observer = RecordingObserver()
    ep = make_endpoint(kubelet, executor, Clock(), observer)
    try:
        assert ep.phase() is endpoint.Phase.NOT_SERVING
        for _ in range(50):
            assert ep.reconcile() is None
        assert ep.phase() is endpoint.Phase.REGISTERED
        assert len(kubelet.requests) == 1 and observer.registrations == [RESOURCE]
    finally:
        ep.close()
    assert not ep.socket_path.exists()


def test_socket_gone_means_serve_and_register_again(kubelet: FakeKubelet, executor: futures.ThreadPoolExecutor) -> None:
    ep = make_endpoint(kubelet, executor, Clock(), RecordingObserver())
    try:
        ep.reconcile()
        first = endpoint.file_identity(ep.socket_path)
        ep.socket_path.unlink()
        assert ep.phase() is endpoint.Phase.NOT_SERVING
        ep.reconcile()
        assert ep.phase() is endpoint.Phase.REGISTERED
        assert endpoint.file_identity(ep.socket_path) not in (None, first)
        assert kubelet.registrations_with_current(RESOURCE) == 2
    finally:
        ep.close()


def test_a_live_foreign_socket_is_never_deleted_and_is_retried_with_backoff(
    kubelet: FakeKubelet, executor: futures.ThreadPoolExecutor
) -> None:
    clock = Clock()
    ep = make_endpoint(kubelet, executor, clock, RecordingObserver())
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        other.bind(str(ep.socket_path))
        other.listen(1)
        identity = endpoint.file_identity(ep.socket_path)
        assert ep.reconcile() == clock.now + 1.0
        clock.now += 0.5
        assert ep.reconcile() == clock.now + 0.5  # not due yet: nothing tried
        clock.now += 0.5
        assert ep.reconcile() == clock.now + 2.0  # tried again, doubled
        assert endpoint.file_identity(ep.socket_path) == identity
        assert ep.phase() is endpoint.Phase.NOT_SERVING
        assert ep.close() is False
        assert endpoint.file_identity(ep.socket_path) == identity  # close() leaves it alone too
    finally:
        other.close()
        ep.socket_path.unlink()


def test_a_new_kubelet_is_tried_at_once_despite_backoff(
    kubelet: FakeKubelet, executor: futures.ThreadPoolExecutor
) -> None:
    clock = Clock()
    observer = RecordingObserver()
    kubelet.kill()  # stale kubelet.sock: Register fails
    ep = make_endpoint(kubelet, executor, clock, observer)
    try:
        assert ep.reconcile() == clock.now + 1.0
        assert observer.failures == [RESOURCE]
        kubelet.start()  # a new kubelet.sock (and our socket deleted, as a starting kubelet does)
        assert ep.reconcile() is None  # not a second later: now
        assert ep.phase() is endpoint.Phase.REGISTERED
        assert observer.registrations == [RESOURCE]
    finally:
        ep.close()


def test_stale_socket_left_by_a_killed_plugin_is_replaced(
    kubelet: FakeKubelet, executor: futures.ThreadPoolExecutor
) -> None:
    ep = make_endpoint(kubelet, executor, Clock(), RecordingObserver())
    make_stale_socket(ep.socket_path)
    try:
        assert ep.reconcile() is None
        assert ep.phase() is endpoint.Phase.REGISTERED
    finally:
        ep.close()


def test_rate_limited_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    clock = Clock()
    limited = RateLimitedLog(logging.getLogger("t"), interval=60, clock=clock)
    for _ in range(100):
        limited.warning("kubelet away")
    clock.now += 61
    limited.warning("kubelet away")
    limited.warning("something else")
    limited.clear()
    limited.warning("something else")
    assert [r.getMessage() for r in caplog.records] == [
        "kubelet away",
        "kubelet away (repeated 99 more times)",
        "something else",
        "something else",
    ]
