"""`cdi-fuse plugin` options: each reaches the PluginConfig handed to the one library entry point
(`loop.run_plugin`, replaced by a recorder) with the default from cdi_fuse.defaults; library errors become
exit codes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cdi_fuse import cli, defaults, errors
from cdi_fuse.deviceplugin import loop
from cdi_fuse.runtime import cri


@dataclass
class Recorded:
    calls: list[tuple[loop.PluginConfig, str | None]] = field(default_factory=list)
    error: Exception | None = None

    @property
    def config(self) -> loop.PluginConfig:
        ((config, _),) = self.calls
        return config


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorded]:
    record = Recorded()

    def run_plugin(config: loop.PluginConfig, *, metrics_address: str | None = None) -> None:
        record.calls.append((config, metrics_address))
        if record.error is not None:
            raise record.error

    monkeypatch.setattr(loop, "run_plugin", run_plugin)
    root = logging.getLogger()
    level = root.level
    yield record
    root.setLevel(level)  # the command sets the root level; do not leak it into other tests


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.app, ["plugin", *args])


def test_defaults(recorded: Recorded) -> None:
    result = invoke()
    assert result.exit_code == 0, result.output
    ((config, metrics_address),) = recorded.calls
    assert config == loop.PluginConfig(
        strategy=config.strategy,
        generate_options=config.generate_options,
        runtime_probe=config.runtime_probe,
    )  # every other field is the library's default
    assert config.plugin_dir == defaults.PLUGIN_DIR == Path("/var/lib/kubelet/device-plugins")
    assert config.resource_names == (defaults.RESOURCE_NAME,) == ("cdi-fuse.io/fuse",)
    assert config.count == defaults.COUNT == 110
    assert config.strategy.is_auto
    assert config.spec_dirs == defaults.SPEC_DIRS == (Path("/etc/cdi"), Path("/var/run/cdi"))
    assert config.write_spec is True
    options = config.generate_options
    assert options.device_path == options.host_path == defaults.DEVICE_PATH == Path("/dev/fuse")
    assert options.spec_dir == Path("/etc/cdi")
    assert (options.vendor, options.cls, options.device_name, options.permissions) == (
        "cdi-fuse.io",
        "fuse",
        "fuse",
        "rw",
    )
    assert isinstance(config.runtime_probe, cri.RuntimeProbe)
    assert config.runtime_probe.endpoints == defaults.RUNTIME_ENDPOINTS
    assert metrics_address is None
    assert logging.getLogger().level == logging.INFO


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
    recorded: Recorded, args: list[str], check: Callable[[loop.PluginConfig], object]
) -> None:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert check(recorded.config)


def test_runtime_endpoints(recorded: Recorded) -> None:
    result = invoke("--runtime-endpoint", "unix:///a.sock", "--runtime-endpoint", "unix:///b.sock")
    assert result.exit_code == 0, result.output
    probe = recorded.config.runtime_probe
    assert isinstance(probe, cri.RuntimeProbe)
    assert probe.endpoints == ("unix:///a.sock", "unix:///b.sock")
    assert probe.socket_paths == (Path("/a.sock"), Path("/b.sock"))  # watched: a runtime restart is asked again


def test_runtime_probe_asks_the_given_endpoint(recorded: Recorded, tmp_path: Path) -> None:
    result = invoke("--runtime-endpoint", f"unix://{tmp_path}/none.sock")
    assert result.exit_code == 0, result.output
    probe = recorded.config.runtime_probe
    assert probe is not None
    with pytest.raises(errors.RuntimeQueryError, match=r"none\.sock"):
        probe()


def test_metrics_address(recorded: Recorded) -> None:
    result = invoke("--metrics-address", "[::1]:9400")
    assert result.exit_code == 0, result.output
    ((_, metrics_address),) = recorded.calls
    assert metrics_address == "[::1]:9400"


def test_log_level(recorded: Recorded) -> None:
    result = invoke("--log-level", "warning")
    assert result.exit_code == 0, result.output
    assert logging.getLogger().level == logging.WARNING


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--strategy", "bogus"], "invalid strategy 'bogus'", id="strategy"),
        pytest.param(["--strategy", "auto,cdi"], "invalid strategy", id="strategy-auto-in-list"),
        pytest.param(["--count", "0"], "", id="count-0"),
        pytest.param(["--count", "many"], "", id="count-not-a-number"),
        pytest.param(["--log-level", "chatty"], "invalid --log-level 'chatty'", id="log-level"),
        pytest.param(["--bogus"], "", id="unknown-option"),
    ],
)
def test_usage_errors_exit_2_before_anything_runs(recorded: Recorded, args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert recorded.calls == []


@pytest.mark.parametrize(
    ("error", "code", "lines"),
    [
        pytest.param(
            errors.InvalidOptionError("invalid metrics address '9400': expected host:port", option="--metrics-address"),
            2,
            ["error: invalid metrics address '9400'"],
            id="bad-metrics-address",
        ),
        pytest.param(
            errors.InvalidNameError("invalid vendor name '-x'"), 2, ["error: invalid vendor name '-x'"], id="bad-name"
        ),
        pytest.param(
            errors.DeviceProbeError(
                "device '/nope' does not exist",
                device=Path("/nope"),
                hint="load the kernel module with `modprobe fuse`",
            ),
            1,
            ["error: device '/nope' does not exist", "hint: load the kernel module with `modprobe fuse`"],
            id="missing-device",
        ),
        pytest.param(
            errors.RegistrationError("another process is serving '/x.sock'; stop it first"),
            1,
            ["error: another process is serving '/x.sock'"],
            id="socket-in-use",
        ),
    ],
)
def test_library_errors_become_exit_codes(recorded: Recorded, error: Exception, code: int, lines: list[str]) -> None:
    recorded.error = error
    result = invoke()
    assert result.exit_code == code, result.output
    for line in lines:
        assert line in result.output
    assert "Traceback" not in result.output
