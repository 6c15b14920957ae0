"""`cdi-fuse dra` options: each reaches DriverConfig with the right default; errors become exit codes.
The library entry (entry.build_driver) is replaced by a recorder."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cdi_fuse import cli, errors
from cdi_fuse.dra import api, driver, entry


@dataclass
class Recorded:
    configs: list[driver.DriverConfig] = field(default_factory=list)
    kubeconfigs: list[Path | None] = field(default_factory=list)
    runs: int = 0
    stops: int = 0
    init_error: Exception | None = None
    handler_while_running: Any = None

    @property
    def config(self) -> driver.DriverConfig:
        (config,) = self.configs
        return config


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorded]:
    record = Recorded()

    class RecordingDriver:
        def run(self) -> None:
            record.runs += 1
            record.handler_while_running = signal.getsignal(signal.SIGTERM)

        def stop(self) -> None:
            record.stops += 1

        def health_report(self) -> tuple[bool, str]:
            return True, "recorded"

        wakeup_fd = None

    def build(config: driver.DriverConfig, *, kubeconfig: Path | None = None) -> Any:
        if record.init_error is not None:
            raise record.init_error
        record.configs.append(config)
        record.kubeconfigs.append(kubeconfig)
        return RecordingDriver()

    monkeypatch.setattr(entry, "build_driver", build)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield record
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli.app, ["dra", *args], env=env or {}, catch_exceptions=False)


def test_defaults(recorded: Recorded) -> None:
    result = invoke("--node-name", "node-a")
    assert result.exit_code == 0, result.output
    config = recorded.config
    assert (config.node_name, config.driver) == ("node-a", "fuse.cdi-fuse.io")
    assert config.registry_dir == Path("/var/lib/kubelet/plugins_registry")
    assert config.plugins_dir == Path("/var/lib/kubelet/plugins")
    assert config.dra_socket == Path("/var/lib/kubelet/plugins/fuse.cdi-fuse.io/dra.sock")
    assert config.registration_socket == Path("/var/lib/kubelet/plugins_registry/fuse.cdi-fuse.io-reg.sock")
    assert (config.sharing, config.count) == (api.Sharing.auto, 110)
    assert config.write_spec is True and config.remove_slices_on_stop is False
    assert config.generate_options.spec_dir == Path("/etc/cdi")
    assert config.generate_options.device_path == Path("/dev/fuse")
    assert recorded.kubeconfigs == [None]
    assert recorded.runs == 1


def test_node_name_from_the_environment(recorded: Recorded) -> None:
    assert invoke(env={"NODE_NAME": "from-env"}).exit_code == 0
    assert recorded.config.node_name == "from-env"


def test_options_reach_the_config(recorded: Recorded, tmp_path: Path) -> None:
    result = invoke(
        "--node-name=n",
        "--driver-name=fuse.example.com",
        f"--kubeconfig={tmp_path / 'kc'}",
        f"--kubelet-registry-dir={tmp_path / 'reg'}",
        f"--kubelet-plugins-dir={tmp_path / 'plugins'}",
        "--sharing=devices",
        "--count=8",
        f"--spec-dir={tmp_path / 'cdi'}",
        "--no-generate",
        "--remove-slices-on-stop",
        "--device-path=/host/dev/fuse",
        "--host-device-path=/dev/fuse",
        "--vendor=example.com",
        "--class=fuse",
        "--device-name=f",
        "--permissions=rw",
    )
    assert result.exit_code == 0, result.output
    config = recorded.config
    assert config.driver == "fuse.example.com"
    assert (config.registry_dir, config.plugins_dir) == (tmp_path / "reg", tmp_path / "plugins")
    assert (config.sharing, config.count) == (api.Sharing.devices, 8)
    assert (config.write_spec, config.remove_slices_on_stop) == (False, True)
    options = config.generate_options
    assert (options.device_path, options.host_path) == (Path("/host/dev/fuse"), Path("/dev/fuse"))
    assert options.qualified_name == "example.com/fuse=f"
    assert options.spec_dir == tmp_path / "cdi"
    assert recorded.kubeconfigs == [tmp_path / "kc"]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-node-name"),
        pytest.param(["--node-name=n", "--count=0"], id="count-zero"),
        pytest.param(["--node-name=n", "--count=129"], id="count-above-one-slice"),
        pytest.param(["--node-name=n", "--sharing=some"], id="unknown-sharing"),
        pytest.param(["--node-name=n", "--health-address=9401"], id="bad-health-address"),
    ],
)
def test_usage_errors_exit_2_before_any_work(recorded: Recorded, args: list[str]) -> None:
    assert invoke(*args).exit_code == 2
    assert recorded.configs == []


def test_device_probe_error_exits_1_with_the_hint(recorded: Recorded) -> None:
    recorded.init_error = errors.DeviceProbeError(
        "device '/dev/fuse' does not exist", device=Path("/dev/fuse"), hint="modprobe fuse"
    )
    result = CliRunner().invoke(cli.app, ["dra", "--node-name=n"], env={})
    assert result.exit_code == 1
    assert "error: device '/dev/fuse' does not exist" in result.output
    assert "hint: modprobe fuse" in result.output


def test_api_configuration_error_exits_1(recorded: Recorded) -> None:
    recorded.init_error = errors.ApiServerError("cannot load the Kubernetes client configuration from x: nope")
    result = CliRunner().invoke(cli.app, ["dra", "--node-name=n"], env={})
    assert result.exit_code == 1
    assert "cannot load the Kubernetes client configuration" in result.output


def test_sigterm_stops_the_driver_and_the_handlers_are_restored(recorded: Recorded) -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert invoke("--node-name=n").exit_code == 0
    handler = recorded.handler_while_running
    assert callable(handler)
    handler(signal.SIGTERM, None)
    assert recorded.stops == 1
    assert signal.getsignal(signal.SIGTERM) == before


def test_help_explains_sharing_and_slices() -> None:
    result = CliRunner().invoke(cli.app, ["dra", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    assert "ResourceSlice" in text
    assert "allowMultipleAllocations" in text
    assert "[default: $NODE_NAME]" in text


def test_health_address_serves_while_running(recorded: Recorded) -> None:
    assert invoke("--node-name=n", "--health-address=127.0.0.1:0").exit_code == 0
    assert recorded.runs == 1
