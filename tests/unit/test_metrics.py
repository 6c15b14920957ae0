"""Prometheus metrics, the /healthz + /metrics endpoint (IPv4 and IPv6), and the figures a running plugin
reports; /healthz is ready only while the resource is registered with a kubelet that answers."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cdi_fuse import errors
from cdi_fuse.deviceplugin import api, loop, metrics
from tests.fakes.fake_cri import short_tmp_dir
from tests.fakes.kubelet import FakeKubelet, fake_kubelet, plugin_config, plugin_thread

RESOURCE = "cdi-fuse.io/fuse"


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def get(address: tuple[object, ...], path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(str(address[0]), int(str(address[1])), timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@contextlib.contextmanager
def serving(
    plugin_metrics: metrics.PluginMetrics, is_healthy: Callable[[], tuple[bool, str]]
) -> Iterator[metrics.MetricsServer]:
    metrics_server = metrics.MetricsServer("127.0.0.1:0", plugin_metrics, is_healthy)  # the kernel picks the port
    metrics_server.start()
    try:
        yield metrics_server
    finally:
        metrics_server.stop()


# ---- parse_address ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        pytest.param("127.0.0.1:9400", ("127.0.0.1", 9400), id="ipv4"),
        pytest.param(":9400", ("0.0.0.0", 9400), id="all-interfaces"),
        pytest.param("[::1]:9400", ("::1", 9400), id="ipv6"),
        pytest.param("localhost:1", ("localhost", 1), id="name-port-1"),
        pytest.param("0.0.0.0:65535", ("0.0.0.0", 65535), id="max-port"),
        pytest.param("127.0.0.1:0", ("127.0.0.1", 0), id="any-port"),
        pytest.param("[::]:9400", ("::", 9400), id="ipv6-any"),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert metrics.parse_address(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("9400", id="no-colon"),
        pytest.param("127.0.0.1:", id="no-port"),
        pytest.param("127.0.0.1:http", id="named-port"),
        pytest.param("127.0.0.1:65536", id="port-too-big"),
        pytest.param("127.0.0.1:-1", id="negative"),
        pytest.param("::1:9400", id="ipv6-without-brackets"),
        pytest.param("[localhost]:9400", id="brackets-around-a-name"),
        pytest.param("[127.0.0.1]:9400", id="brackets-around-ipv4"),
    ],
)
def test_parse_address_rejects(address: str) -> None:
    with pytest.raises(errors.InvalidOptionError, match="invalid metrics address") as caught:
        metrics.parse_address(address)
    assert caught.value.option == "--metrics-address"


def test_serves_on_ipv6_loopback() -> None:
    """Regression: `--metrics-address [::1]:9400` raised (the server was IPv4-only) although help promised it."""
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback here: {exc}")
    server = metrics.MetricsServer("[::1]:0", metrics.PluginMetrics(), lambda: (True, "ok"))
    server.start()
    try:
        assert server.address[0] == "::1"
        assert server.url.startswith("http://[::1]:")
        assert get(server.address, "/livez")[0] == 200
    finally:
        server.stop()


# ---- PluginMetrics ---------------------------------------------------------------------------------------


def test_decision_marks_exactly_the_strategies_in_use() -> None:
    plugin_metrics = metrics.PluginMetrics()
    plugin_metrics.decision(api.Decision(frozenset(api.ALL_STRATEGIES), "all"))
    plugin_metrics.decision(api.Decision(frozenset({"device-spec"}), "cdi off"))
    values = {s: sample(plugin_metrics.registry, "cdi_fuse_strategy", strategy=s) for s in api.ALL_STRATEGIES}
    assert values == {"cdi": 0.0, "cdi-annotations": 0.0, "device-spec": 1.0}


def test_observer_counts_containers_per_resource_and_label() -> None:
    plugin_metrics = metrics.PluginMetrics()
    plugin_metrics.allocated("a.io/fuse", "cdi+cdi-annotations", 2)
    plugin_metrics.allocated("a.io/fuse", "cdi+cdi-annotations", 1)
    plugin_metrics.allocated("a.io/fuse", "device-spec", 1)
    plugin_metrics.allocated("b.io/fuse", "device-spec", 4)
    registry = plugin_metrics.registry
    total = "cdi_fuse_allocations_total"
    assert sample(registry, total, resource="a.io/fuse", strategy="cdi+cdi-annotations") == 3
    assert sample(registry, total, resource="a.io/fuse", strategy="device-spec") == 1
    assert sample(registry, total, resource="b.io/fuse", strategy="device-spec") == 4
    assert sample(registry, total, resource="b.io/fuse", strategy="cdi+cdi-annotations") is None


def test_each_plugin_metrics_has_its_own_registry() -> None:
    first, second = metrics.PluginMetrics(), metrics.PluginMetrics()
    first.kubelet_restarts.inc()
    assert sample(first.registry, "cdi_fuse_kubelet_restarts_total") == 1
    assert sample(second.registry, "cdi_fuse_kubelet_restarts_total") == 0


# ---- the HTTP endpoint -----------------------------------------------------------------------------------


def test_healthz_follows_the_health_callback() -> None:
    state = {"ok": False}

    def is_healthy() -> tuple[bool, str]:
        return state["ok"], f"registered={state['ok']}"

    with serving(metrics.PluginMetrics(), is_healthy) as metrics_server:
        assert get(metrics_server.address, "/healthz") == (503, "registered=False\n")
        assert get(metrics_server.address, "/readyz")[0] == 503
        assert get(metrics_server.address, "/livez")[0] == 200
        state["ok"] = True
        assert get(metrics_server.address, "/healthz?verbose=1") == (200, "registered=True\n")


def test_metrics_and_not_found() -> None:
    plugin_metrics = metrics.PluginMetrics()
    plugin_metrics.registrations.labels(RESOURCE).inc()
    with serving(plugin_metrics, lambda: (True, "")) as metrics_server:
        status, body = get(metrics_server.address, "/metrics")
        assert status == 200
        assert f'cdi_fuse_registrations_total{{resource="{RESOURCE}"}} 1.0' in body
        assert get(metrics_server.address, "/nope")[0] == 404


def test_stop_frees_the_port_promptly() -> None:
    metrics_server = metrics.MetricsServer("127.0.0.1:0", metrics.PluginMetrics(), lambda: (True, ""))
    metrics_server.start()
    port = int(metrics_server.address[1])
    started = time.monotonic()
    metrics_server.stop()
    assert time.monotonic() - started < 3  # the hour-long poll interval does not delay shutdown
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


# ---- what a running plugin reports -----------------------------------------------------------------------


@pytest.fixture
def kubelet() -> Iterator[FakeKubelet]:
    with fake_kubelet() as started:
        yield started


def test_running_plugin_figures(
    kubelet: FakeKubelet, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    plugin_metrics = metrics.PluginMetrics()
    config = plugin_config(kubelet, char_device, proc_filesystems, tmp_path / "cdi", strategy="cdi,device-spec")
    manager = loop.PluginLoop(config, observer=plugin_metrics)
    registry = plugin_metrics.registry
    with plugin_thread(manager), serving(plugin_metrics, manager.health_report) as metrics_server:
        conn = kubelet.wait_for_plugin(RESOURCE)
        conn.wait_for_list(lambda r: True)
        assert sample(registry, "cdi_fuse_registrations_total", resource=RESOURCE) == 1
        assert sample(registry, "cdi_fuse_registered", resource=RESOURCE) == 1
        assert sample(registry, "cdi_fuse_device_healthy") == 1
        assert sample(registry, "cdi_fuse_spec_writes_total") == 1
        assert sample(registry, "cdi_fuse_strategy", strategy="cdi") == 1
        assert sample(registry, "cdi_fuse_strategy", strategy="cdi-annotations") == 0
        assert sample(registry, "cdi_fuse_strategy", strategy="device-spec") == 1
        assert get(metrics_server.address, "/healthz")[0] == 200

        kubelet.allocate(RESOURCE, [["fuse-0"], ["fuse-1"]])
        kubelet.allocate(RESOURCE, [["fuse-2"]])
        label = {"resource": RESOURCE, "strategy": "cdi+device-spec"}
        assert sample(registry, "cdi_fuse_allocations_total", **label) == 3

        char_device.unlink()
        conn.wait_for_list(lambda r: {d.health for d in r.devices} == {"Unhealthy"})
        assert sample(registry, "cdi_fuse_device_healthy") == 0
        assert get(metrics_server.address, "/healthz")[0] == 503

        kubelet.restart()
        conn = kubelet.wait_for_plugin(RESOURCE, newer_than=conn)
        conn.wait_for_list(lambda r: True)
        assert sample(registry, "cdi_fuse_kubelet_restarts_total") == 1
        assert sample(registry, "cdi_fuse_registrations_total", resource=RESOURCE) == 2

        # the kubelet goes away (kubelet.sock left behind, nobody answers): not ready, though still registered
        kubelet.kill()
        status, body = get(metrics_server.address, "/healthz")
        assert status == 503 and "kubelet=down" in body


def test_registration_failures_are_counted(char_device: Path, proc_filesystems: Path, tmp_path: Path) -> None:
    directory = short_tmp_dir("kubelet-")
    dead = FakeKubelet(directory)
    dead.kill()  # a stale kubelet.sock nobody answers
    plugin_metrics = metrics.PluginMetrics()
    config = plugin_config(dead, char_device, proc_filesystems, tmp_path / "cdi", min_backoff=0.01, max_backoff=0.02)
    manager = loop.PluginLoop(config, observer=plugin_metrics)
    failures = plugin_metrics.registration_failures.labels(RESOURCE)
    try:
        with plugin_thread(manager), serving(plugin_metrics, manager.health_report) as metrics_server:
            deadline = time.monotonic() + 5
            while (sample(plugin_metrics.registry, "cdi_fuse_registration_failures_total", resource=RESOURCE) or 0) < 3:
                assert time.monotonic() < deadline, f"registration failures not counted: {failures}"
                time.sleep(0.01)
            status, body = get(metrics_server.address, "/healthz")
            assert status == 503 and f"{RESOURCE}=serving" in body and "kubelet=down" in body
            assert sample(plugin_metrics.registry, "cdi_fuse_registered", resource=RESOURCE) in (None, 0)
    finally:
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()
