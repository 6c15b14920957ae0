"""`cdi-fuse plugin` options: each reaches PluginConfig (or the metrics server) with the right default;
errors become exit codes. The library entry (lifecycle.Manager) is replaced by a recorder."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cdi_fuse import cli, doctor, errors
from cdi_fuse.deviceplugin import api, lifecycle
from cdi_fuse.deviceplugin import metrics as plugin_metrics
from cdi_fuse.runtime import cri


@dataclass
class Recorded:
    configs: list[lifecycle.PluginConfig] = field(default_factory=list)
    metrics: list[plugin_metrics.PluginMetrics | None] = field(default_factory=list)
    runs: int = 0
    metrics_servers: list[tuple[str, plugin_metrics.PluginMetrics]] = field(default_factory=list)
    probe_endpoints: list[list[str]] = field(default_factory=list)
    signals: dict[int, Callable[..., Any]] = field(default_factory=dict)
    init_error: Exception | None = None
    run_error: Exception | None = None
    stops: int = 0

    @property
    def config(self) -> lifecycle.PluginConfig:
        (config,) = self.configs
        return config


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorded]:
    record = Recorded()

    class RecordingManager:
        def __init__(self, config: lifecycle.PluginConfig, *, metrics: plugin_metrics.PluginMetrics | None = None):
            if record.init_error is not None:
                raise record.init_error
            record.configs.append(config)
            record.metrics.append(metrics)

        def run(self) -> None:
            record.runs += 1
            if record.run_error is not None:
                raise record.run_error

        def stop(self) -> None:
            record.stops += 1

        def health_report(self) -> tuple[bool, str]:
            return True, "recorded"

    class RecordingMetricsServer:
        def __init__(self, address: str, metrics: plugin_metrics.PluginMetrics, is_healthy: object) -> None:
            plugin_metrics.parse_address(address)
            record.metrics_servers.append((address, metrics))

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

    real_probe = doctor.runtime_probe

    def recording_probe(endpoints: Sequence[str], *, timeout: float = 2.0) -> api.RuntimeProbe:
        record.probe_endpoints.append(list(endpoints))
        return real_probe(endpoints, timeout=timeout)

    monkeypatch.setattr(lifecycle, "Manager", RecordingManager)
    monkeypatch.setattr(plugin_metrics, "MetricsServer", RecordingMetricsServer)
    monkeypatch.setattr(doctor, "runtime_probe", recording_probe)
    monkeypatch.setattr(signal, "signal", lambda signum, handler: record.signals.__setitem__(signum, handler))
    root = logging.getLogger()
    level = root.level
    yield record
    root.setLevel(level)  # the command sets the root level; do not leak it into other tests


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.app, ["plugin", *args])


def test_defaults(recorded: Recorded) -> None:
    result = invoke()
    assert result.exit_code == 0, result.output
    config = recorded.config
    assert config.plugin_dir == Path("/var/lib/kubelet/device-plugins")
    assert tuple(config.resource_names) == ("cdi-fuse.io/fuse",)
    assert config.count == 110
    assert config.strategy.is_auto
    assert tuple(config.spec_dirs) == (Path("/etc/cdi"), Path("/var/run/cdi"))
    assert config.write_spec is True
    options = config.generate_options
    assert options.device_path == Path("/dev/fuse")
    assert options.host_path == Path("/dev/fuse")
    assert options.spec_dir == Path("/etc/cdi")
    assert (options.vendor, options.cls, options.device_name, options.permissions) == (
        "cdi-fuse.io",
        "fuse",
        "fuse",
        "rw",
    )
    assert recorded.metrics == [None] and recorded.metrics_servers == []
    assert recorded.probe_endpoints == [list(cri.DEFAULT_ENDPOINTS)]
    assert config.runtime_probe is not None
    assert recorded.runs == 1
    assert logging.getLogger().level == logging.INFO


def test_library_defaults_match_the_cli() -> None:
    config = lifecycle.PluginConfig()
    assert config.plugin_dir == lifecycle.DEFAULT_PLUGIN_DIR == Path("/var/lib/kubelet/device-plugins")
    assert config.count == lifecycle.DEFAULT_COUNT == 110
    assert tuple(config.resource_names) == ("cdi-fuse.io/fuse",)


@pytest.mark.parametrize(
    ("args", "check"),
    [
        pytest.param(
            ["--device-plugin-dir", "/x/plugins"], lambda c: c.plugin_dir == Path("/x/plugins"), id="device-plugin-dir"
        ),
        pytest.param(["--count", "7"], lambda c: c.count == 7, id="count"),
        pytest.param(["--count", "1"], lambda c: c.count == 1, id="count-min"),
        pytest.param(
            ["--resource-name", "github.com/fuse"],
            lambda c: tuple(c.resource_names) == ("github.com/fuse",),
            id="resource-name",
        ),
        pytest.param(
            ["--resource-name", "a.io/fuse", "--resource-name", "b.io/fuse", "--resource-name", "a.io/fuse"],
            lambda c: tuple(c.resource_names) == ("a.io/fuse", "b.io/fuse"),
            id="resource-names-repeated-deduplicated",
        ),
        pytest.param(
            ["--strategy", "cdi,device-spec"],
            lambda c: c.strategy.fixed == {"cdi", "device-spec"} and c.runtime_probe is None,
            id="fixed-strategy-no-probe",
        ),
        pytest.param(["--strategy", "auto"], lambda c: c.strategy.is_auto and c.runtime_probe, id="auto"),
        pytest.param(
            ["--spec-dir", "/a", "--spec-dir", "/b"],
            lambda c: tuple(c.spec_dirs) == (Path("/a"), Path("/b")) and c.generate_options.spec_dir == Path("/a"),
            id="spec-dirs-first-is-written",
        ),
        pytest.param(["--no-generate"], lambda c: c.write_spec is False, id="no-generate"),
        pytest.param(["--generate"], lambda c: c.write_spec is True, id="generate"),
        pytest.param(
            ["--device-path", "/host/dev/fuse"],
            lambda c: (
                c.generate_options.device_path == Path("/host/dev/fuse")
                and c.generate_options.host_path == Path("/host/dev/fuse")
            ),
            id="device-path",
        ),
        pytest.param(
            ["--device-path", "/host/dev/fuse", "--host-device-path", "/dev/fuse"],
            lambda c: (
                c.generate_options.device_path == Path("/host/dev/fuse")
                and c.generate_options.host_path == Path("/dev/fuse")
            ),
            id="host-device-path",
        ),
        pytest.param(
            ["--vendor", "example.com", "--class", "dev", "--device-name", "f0"],
            lambda c: c.generate_options.qualified_name == "example.com/dev=f0",
            id="names",
        ),
        pytest.param(["--permissions", "rwm"], lambda c: c.generate_options.permissions == "rwm", id="permissions"),
    ],
)
def test_option_reaches_the_config(
    recorded: Recorded, args: list[str], check: Callable[[lifecycle.PluginConfig], object]
) -> None:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert check(recorded.config)


def test_runtime_endpoints(recorded: Recorded) -> None:
    result = invoke("--runtime-endpoint", "unix:///a.sock", "--runtime-endpoint", "unix:///b.sock")
    assert result.exit_code == 0, result.output
    assert recorded.probe_endpoints == [["unix:///a.sock", "unix:///b.sock"]]


def test_runtime_probe_asks_the_given_endpoint(recorded: Recorded, tmp_path: Path) -> None:
    result = invoke("--runtime-endpoint", f"unix://{tmp_path}/none.sock")
    assert result.exit_code == 0, result.output
    probe = recorded.config.runtime_probe
    assert probe is not None
    with pytest.raises(errors.RuntimeQueryError, match=r"none\.sock"):
        probe()


def test_metrics_address(recorded: Recorded) -> None:
    result = invoke("--metrics-address", "127.0.0.1:9400")
    assert result.exit_code == 0, result.output
    ((address, server_metrics),) = recorded.metrics_servers
    assert address == "127.0.0.1:9400"
    assert recorded.metrics == [server_metrics]  # the manager and the server share one PluginMetrics


def test_log_level(recorded: Recorded) -> None:
    result = invoke("--log-level", "warning")
    assert result.exit_code == 0, result.output
    assert logging.getLogger().level == logging.WARNING


def test_signals_stop_the_manager(recorded: Recorded) -> None:
    result = invoke()
    assert result.exit_code == 0, result.output
    assert set(recorded.signals) == {signal.SIGTERM, signal.SIGINT}
    recorded.signals[signal.SIGTERM](signal.SIGTERM, None)
    recorded.signals[signal.SIGINT](signal.SIGINT, None)
    assert recorded.stops == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--strategy", "bogus"], "invalid strategy 'bogus'", id="strategy"),
        pytest.param(["--strategy", "auto,cdi"], "invalid strategy", id="strategy-auto-in-list"),
        pytest.param(["--count", "0"], "", id="count-0"),
        pytest.param(["--count", "many"], "", id="count-not-a-number"),
        pytest.param(["--metrics-address", "9400"], "invalid metrics address", id="metrics-address"),
        pytest.param(["--log-level", "chatty"], "Unknown level: 'CHATTY'", id="log-level"),
        pytest.param(["--bogus"], "", id="unknown-option"),
    ],
)
def test_usage_errors_exit_2(recorded: Recorded, args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert recorded.runs == 0 and recorded.configs == []


def test_missing_device_exits_1_with_the_hint(recorded: Recorded) -> None:
    recorded.init_error = errors.DeviceProbeError(
        "device '/nope' does not exist", device=Path("/nope"), hint="load the kernel module with `modprobe fuse`"
    )
    result = invoke("--device-path", "/nope")
    assert result.exit_code == 1
    assert "error: device '/nope' does not exist" in result.output
    assert "hint: load the kernel module with `modprobe fuse`" in result.output
    assert recorded.runs == 0


def test_socket_in_use_exits_1(recorded: Recorded) -> None:
    recorded.run_error = errors.RegistrationError("another process is serving '/x.sock'; stop it first")
    result = invoke()
    assert result.exit_code == 1
    assert "error: another process is serving '/x.sock'" in result.output


def test_bad_names_exit_1(recorded: Recorded) -> None:
    recorded.init_error = errors.InvalidNameError("invalid vendor name '-x'")
    result = invoke("--vendor", "-x")
    assert result.exit_code == 1
    assert "error: invalid vendor name '-x'" in result.output
