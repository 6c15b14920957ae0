"""cli.py: the generate, validate and list commands, --version and --help, through typer's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import cdi_fuse
from cdi_fuse import defaults
from cdi_fuse.cdi import specdirs, store
from cdi_fuse.cli import app
from cdi_fuse.node import fuse

GOLDEN_SPEC = Path(__file__).parent.parent.parent / "specs" / "cdi-fuse.io-fuse.yaml"
DATA = Path(__file__).parent.parent / "data" / "specs"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def probed(monkeypatch: pytest.MonkeyPatch, fuse_device: fuse.FuseDevice) -> list[Path]:
    """probe_fuse returns a 10:229 device (no root needed); the list records each probed path."""
    calls: list[Path] = []

    def probe(device_path: Path, *, proc_filesystems: Path) -> fuse.FuseDevice:
        calls.append(device_path)
        return fuse_device

    monkeypatch.setattr(fuse, "probe_fuse", probe)
    return calls


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# --- generate -----------------------------------------------------------------------------------------------------


def test_generate_writes_the_spec_and_prints_the_name(runner: CliRunner, probed: list[Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--spec-dir", str(tmp_path / "cdi")])
    path = tmp_path / "cdi" / "cdi-fuse.io-fuse.yaml"
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {path}\ncdi-fuse.io/fuse=fuse\n"
    assert path.read_bytes() == GOLDEN_SPEC.read_bytes()
    assert probed == [Path("/dev/fuse")]
    again = runner.invoke(app, ["generate", "--spec-dir", str(tmp_path / "cdi")])
    assert again.exit_code == 0
    assert again.stdout == f"unchanged {path}\ncdi-fuse.io/fuse=fuse\n"


def test_generate_with_names(runner: CliRunner, probed: list[Path], tmp_path: Path) -> None:
    args = ["generate", "--spec-dir", str(tmp_path), "--vendor", "example.com", "--class", "dev.fuse"]
    args += ["--device-name", "0", "--permissions", "rwm"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "example.com/dev.fuse=0"
    spec = store.read_spec(tmp_path / "example.com-dev.fuse.yaml")
    assert spec.cdi_version == "0.6.0"
    nodes = spec.devices[0].container_edits.device_nodes
    assert nodes is not None and nodes[0].permissions == "rwm"


def test_generate_format_json(runner: CliRunner, probed: list[Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--spec-dir", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "cdi-fuse.io-fuse.json").read_text())
    assert data == yaml.safe_load(GOLDEN_SPEC.read_text())
    assert files_under(tmp_path) == ["cdi-fuse.io-fuse.json"]


def test_generate_output_json_path(runner: CliRunner, probed: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    result = runner.invoke(app, ["generate", "--output", str(out), "--spec-dir", str(tmp_path / "unused")])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {out}\ncdi-fuse.io/fuse=fuse\n"
    assert json.loads(out.read_text())["kind"] == "cdi-fuse.io/fuse"
    assert files_under(tmp_path) == ["x.json"]


def test_generate_output_dash_prints_only_the_spec(runner: CliRunner, probed: list[Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--output", "-", "--spec-dir", str(tmp_path / "cdi")])
    assert result.exit_code == 0, result.output
    assert result.stdout == GOLDEN_SPEC.read_text()
    assert not (tmp_path / "cdi").exists()
    as_json = runner.invoke(app, ["generate", "-o", "-", "--format", "json", "--spec-version", "1.1.0"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["cdiVersion"] == "1.1.0"


def test_generate_check(runner: CliRunner, probed: list[Path], tmp_path: Path) -> None:
    path = tmp_path / "cdi-fuse.io-fuse.yaml"
    args = ["generate", "--check", "--spec-dir", str(tmp_path)]

    missing = runner.invoke(app, args)
    assert missing.exit_code == 1
    assert "differs from the spec for this node" in missing.stdout
    assert files_under(tmp_path) == []

    shutil.copy(GOLDEN_SPEC, path)
    same = runner.invoke(app, args)
    assert same.exit_code == 0, same.output
    assert same.stdout == f"{path}: up to date\ncdi-fuse.io/fuse=fuse\n"

    path.write_text(GOLDEN_SPEC.read_text().replace("minor: 229", "minor: 230"))
    before = path.read_bytes()
    different = runner.invoke(app, args)
    assert different.exit_code == 1
    assert different.stdout == f"{path}: differs from the spec for this node (run without --check to write it)\n"
    assert path.read_bytes() == before
    assert files_under(tmp_path) == ["cdi-fuse.io-fuse.yaml"]


def test_generate_missing_device_says_modprobe_and_writes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-fuse"
    result = runner.invoke(app, ["generate", "--device-path", str(missing), "--spec-dir", str(tmp_path / "cdi")])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"error: device {str(missing)!r} does not exist" in result.stderr
    assert "hint: load the kernel module with `modprobe fuse`" in result.stderr
    assert not (tmp_path / "cdi").exists()


@pytest.mark.skipif(not fuse.fuse_in_kernel(), reason="the kernel does not list 'fuse' (`modprobe fuse`)")
def test_generate_refuses_a_device_that_is_not_fuse_unless_allowed(runner: CliRunner, tmp_path: Path) -> None:
    """Regression (issue 11): `generate --device-path /dev/null` wrote a spec handing out char 1:3."""
    refused = runner.invoke(app, ["generate", "--device-path", "/dev/null", "--spec-dir", str(tmp_path / "cdi")])
    assert refused.exit_code == 1
    assert "error: '/dev/null' is character device 1:3 (the kernel's 'null'), not the FUSE misc device 10:229" in (
        refused.stderr
    )
    assert "pass --allow-other-device" in refused.stderr
    assert not (tmp_path / "cdi").exists()

    allowed = runner.invoke(
        app, ["generate", "--device-path", "/dev/null", "--allow-other-device", "--spec-dir", str(tmp_path / "cdi")]
    )
    assert allowed.exit_code == 0, allowed.stderr
    assert "minor: 3" in (tmp_path / "cdi" / "cdi-fuse.io-fuse.yaml").read_text()


def test_generate_regular_file_device(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "fuse").write_text("")
    result = runner.invoke(app, ["generate", "--device-path", str(tmp_path / "fuse"), "--spec-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not a character device" in result.stderr
    assert files_under(tmp_path) == ["fuse"]


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        pytest.param("--vendor", "1bad", "invalid vendor name '1bad'", id="vendor"),
        pytest.param("--vendor", "", "invalid (empty) vendor name", id="empty-vendor"),
        # Regression (issue 10): a one-character vendor or class makes the runtimes' CDI library panic.
        pytest.param("--vendor", "a", "one-character vendor name 'a' crashes the CDI library", id="vendor-one-char"),
        pytest.param("--class", "b", "one-character class name 'b' crashes the CDI library", id="class-one-char"),
        pytest.param("--class", "fu se", "invalid class name 'fu se'", id="class"),
        pytest.param("--device-name", "-x", "invalid device name '-x'", id="device-name"),
        pytest.param("--permissions", "rwx", "invalid permissions 'rwx'", id="permissions"),
        # The library knows 0.2.0 but says it is below the 0.3.0 minimum (the reference oracle agrees).
        pytest.param("--spec-version", "0.2.0", "the spec version must be at least v0.3.0", id="spec-version"),
        pytest.param("--spec-version", "0.9.0", "invalid version '0.9.0'", id="spec-version-unknown"),
    ],
)
def test_generate_bad_option_is_a_usage_error(
    runner: CliRunner, probed: list[Path], tmp_path: Path, option: str, value: str, problem: str
) -> None:
    result = runner.invoke(app, ["generate", "--spec-dir", str(tmp_path / "cdi"), option, value])
    assert result.exit_code == 2
    assert problem in result.stderr
    assert not (tmp_path / "cdi").exists()


@pytest.mark.parametrize(
    ("runtime_version", "spec_version", "warned"),
    [
        # Debian's containerd 2.1.9 bundles CDI library 1.0.1: it refuses cdiVersion 1.1.0 (issue 10).
        pytest.param("2.1.9+unknown", "1.1.0", True, id="containerd-2.1-refuses-1.1.0"),
        pytest.param("2.1.9+unknown", "1.0.0", False, id="containerd-2.1-loads-1.0.0"),
        pytest.param("v2.2.1", "1.1.0", False, id="containerd-2.2.1-loads-1.1.0"),
    ],
)
def test_generate_warns_when_the_runtime_does_not_load_the_spec_version(
    runner: CliRunner, probed: list[Path], tmp_path: Path, runtime_version: str, spec_version: str, warned: bool
) -> None:
    from tests.fakes.fake_cri import containerd_config, serve_fake_cri

    config = containerd_config(enable_cdi=True, spec_dirs=[str(tmp_path / "cdi")])
    with serve_fake_cri(runtime_name="containerd", runtime_version=runtime_version, config=config) as endpoint:
        args = ["generate", "--spec-dir", str(tmp_path / "cdi"), "--spec-version", spec_version]
        result = runner.invoke(app, [*args, "--runtime-endpoint", endpoint])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cdi" / "cdi-fuse.io-fuse.yaml").exists()
    expected = (
        "warning: containerd 2.1.9+unknown (CDI library 1.0.1) does not load cdiVersion 1.1.0 (its library knows "
        "versions up to 1.0.0): containers asking for the device fail with 'unresolvable CDI devices'; use "
        "--spec-version 1.0.0 or leave the option out\n"
    )
    assert result.stderr == (expected if warned else "")


def test_generate_without_an_answering_runtime_does_not_warn(
    runner: CliRunner, probed: list[Path], tmp_path: Path
) -> None:
    args = ["generate", "--spec-dir", str(tmp_path / "cdi"), "--spec-version", "1.1.0"]
    result = runner.invoke(app, [*args, "--runtime-endpoint", f"unix://{tmp_path}/none.sock"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_generate_write_failure(runner: CliRunner, probed: list[Path], tmp_path: Path) -> None:
    (tmp_path / "cdi").write_text("a file where the dir should be")
    result = runner.invoke(app, ["generate", "--spec-dir", str(tmp_path / "cdi")])
    assert result.exit_code == 1
    assert "cannot create spec directory" in result.stderr
    assert "hint: nothing was changed on disk" in result.stderr


@pytest.mark.root
def test_generate_from_a_real_char_device(
    runner: CliRunner, char_device: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fuse, "fuse_in_kernel", lambda proc_filesystems=defaults.PROC_FILESYSTEMS: True)
    args = ["generate", "--device-path", str(char_device), "--spec-dir", str(tmp_path / "cdi")]
    # The host's /dev/fuse seen elsewhere (as in the plugin pod): the spec is the golden one.
    result = runner.invoke(app, [*args, "--host-device-path", "/dev/fuse"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cdi" / "cdi-fuse.io-fuse.yaml").read_bytes() == GOLDEN_SPEC.read_bytes()
    # Without --host-device-path the probed node is the host's node: it becomes hostPath (cdiVersion 0.5.0).
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    spec = store.read_spec(tmp_path / "cdi" / "cdi-fuse.io-fuse.yaml")
    assert spec.cdi_version == "0.5.0"
    nodes = spec.devices[0].container_edits.device_nodes
    assert nodes is not None and (nodes[0].path, nodes[0].host_path) == ("/dev/fuse", str(char_device))


# --- validate -----------------------------------------------------------------------------------------------------


def test_validate_good_files(runner: CliRunner) -> None:
    good = sorted((DATA / "good").iterdir())
    result = runner.invoke(app, ["validate", str(GOLDEN_SPEC), *map(str, good)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{GOLDEN_SPEC}: valid (cdiVersion 0.3.0, kind cdi-fuse.io/fuse, devices: fuse)"
    heads = [line for line in lines if not line.startswith("  ")]
    assert [h.partition(": ")[0] for h in heads] == [str(GOLDEN_SPEC), *map(str, good)]
    assert all(": valid (" in h for h in heads), heads
    assert all(line.startswith("  warning: ") for line in lines if line.startswith("  ")), lines


def test_validate_warnings_fail_only_with_strict(runner: CliRunner) -> None:
    annotated = DATA / "good" / "annotations-needs-0.6.0.yaml"
    result = runner.invoke(app, ["validate", str(annotated)])
    assert result.exit_code == 0, result.output
    assert '  warning: annotations: needs CDI library > 0.5 (json: unknown field "annotations")' in result.stdout
    assert "refused by containerd 1.7.0-1.7.11" in result.stdout
    assert runner.invoke(app, ["validate", "--strict", str(annotated)]).exit_code == 1
    assert runner.invoke(app, ["validate", "--strict", str(GOLDEN_SPEC)]).exit_code == 0


@pytest.mark.parametrize(
    ("runtime", "code", "line"),
    [
        # Debian's containerd 2.1.9 bundles library 1.0.1, which refuses cdiVersion 1.1.0 (issue 10).
        pytest.param("containerd-2.1", 1, "  error: cdiVersion: invalid version '1.1.0'", id="containerd-2.1"),
        pytest.param("containerd-2.2.1", 0, "valid for containerd 2.2.1 (CDI library 1.1.0)", id="containerd-2.2.1"),
        pytest.param("cri-o-1.35", 0, "valid for cri-o 1.35 (CDI library 1.1.0)", id="cri-o-1.35"),
        pytest.param("podman-5.5", 1, "invalid for podman 5.5 (CDI library 1.0.1)", id="podman-5.5"),
        pytest.param(
            "podman-4.0", 1, "invalid for podman 4.0 (CDI library 0.3.0, judged by the 0.5 rules)", id="podman-4"
        ),
    ],
)
def test_validate_against_a_runtime(runner: CliRunner, tmp_path: Path, runtime: str, code: int, line: str) -> None:
    spec = tmp_path / "new.yaml"
    spec.write_text((DATA / "good" / "fuse-declares-1.1.0-needs-0.3.0.yaml").read_text())
    result = runner.invoke(app, ["validate", "--runtime", runtime, str(spec)])
    assert result.exit_code == code, result.output
    assert line in result.stdout


def test_validate_unknown_runtime_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", "--runtime", "docker-20", str(GOLDEN_SPEC)])
    assert result.exit_code == 2
    assert "invalid runtime 'docker-20'" in result.stderr


def test_validate_bad_file_exits_1_with_locations(runner: CliRunner) -> None:
    bad = DATA / "bad" / "device-node-permissions-invalid.yaml"
    result = runner.invoke(app, ["validate", str(GOLDEN_SPEC), str(bad)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[1] == f"{bad}: invalid"
    assert (
        "  error: devices[0].containerEdits.deviceNodes[0].permissions: device '/dev/fuse': invalid permissions "
        "'rwx': only r, w and m"
    ) in lines


def test_validate_not_a_spec(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", "/etc/passwd"])
    assert result.exit_code == 1
    assert result.stdout == (
        "/etc/passwd: invalid\n"
        "  error: not a CDI spec: the top level must be a mapping with cdiVersion, kind, devices\n"
    )


def test_validate_unreadable_file_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    bad = DATA / "bad" / "devices-empty.yaml"
    result = runner.invoke(app, ["validate", str(bad), str(tmp_path / "missing.yaml"), str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path / 'missing.yaml'}: unreadable\n  error: no such file\n" in result.stdout
    assert f"{tmp_path}: unreadable\n  error: is a directory\n" in result.stdout


def test_validate_json_report(runner: CliRunner, tmp_path: Path) -> None:
    bad = DATA / "bad" / "version-below-mount-type.yaml"
    result = runner.invoke(
        app, ["validate", "--output", "json", str(GOLDEN_SPEC), str(bad), str(tmp_path / "missing.json")]
    )
    assert result.exit_code == 2
    reports: list[dict[str, Any]] = json.loads(result.stdout)
    common = {"library": "1.1", "runtime": None}
    assert reports == [
        {
            "path": str(GOLDEN_SPEC),
            "valid": True,
            "readable": True,
            **common,
            "cdiVersion": "0.3.0",
            "kind": "cdi-fuse.io/fuse",
            "devices": ["fuse"],
            "problems": [],
        },
        {
            "path": str(bad),
            "valid": False,
            "readable": True,
            **common,
            "cdiVersion": "0.3.0",
            "kind": "vendor.com/device",
            "devices": ["dev0"],
            "problems": [
                {
                    "level": "error",
                    "kind": "version",
                    "location": "cdiVersion",
                    "message": "the spec version must be at least v0.4.0 (declared '0.3.0')",
                }
            ],
        },
        {
            "path": str(tmp_path / "missing.json"),
            "valid": False,
            "readable": False,
            **common,
            "cdiVersion": None,
            "kind": None,
            "devices": [],
            "problems": [{"level": "error", "kind": "syntax", "location": "", "message": "no such file"}],
        },
    ]


def test_validate_json_report_of_a_load_error(runner: CliRunner) -> None:
    bad = DATA / "bad" / "duplicate-yaml-key.yaml"
    result = runner.invoke(app, ["validate", "--output", "json", str(bad)])
    assert result.exit_code == 1
    (report,) = json.loads(result.stdout)
    assert (report["valid"], report["readable"], report["cdiVersion"], report["devices"]) == (False, True, None, [])
    assert report["problems"] == [
        {"level": "error", "kind": "syntax", "location": "", "message": "yaml: line 3: key 'kind' already set in map"}
    ]


def test_validate_json_report_levels(runner: CliRunner) -> None:
    annotated = DATA / "good" / "annotations-needs-0.6.0.yaml"
    result = runner.invoke(app, ["validate", "--output", "json", str(annotated)])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(result.stdout)
    assert report["valid"] is True
    assert [(p["level"], p["kind"]) for p in report["problems"]] == [("warning", "compatibility")]


def test_validate_needs_a_file(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr


# --- list ---------------------------------------------------------------------------------------------------------


def spec_file(path: Path, kind: str, *devices: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "cdiVersion": "0.3.0",
        "kind": kind,
        "devices": [{"name": d, "containerEdits": {"env": ["A=1"]}} for d in devices],
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def two_dirs(tmp_path: Path) -> tuple[Path, Path]:
    etc, run = tmp_path / "etc", tmp_path / "run"
    spec_file(etc / "a.yaml", "vendor.com/device", "shared", "etc-only")
    spec_file(etc / "b.yaml", "other.io/xy", "dup")
    spec_file(etc / "c.yaml", "other.io/xy", "dup")
    (etc / "d.json").write_text("{")
    spec_file(etc / "e.yml", "ignored.io/x", "yml")
    spec_file(run / "a.yaml", "vendor.com/device", "shared")
    return etc, run


def test_list_text(runner: CliRunner, two_dirs: tuple[Path, Path]) -> None:
    etc, run = two_dirs
    result = runner.invoke(app, ["list", "--spec-dir", str(etc), "--spec-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"vendor.com/device=etc-only  {etc / 'a.yaml'}",
        f"vendor.com/device=shared    {run / 'a.yaml'}",
        f"conflict: other.io/xy=dup is defined by {etc / 'b.yaml'}, {etc / 'c.yaml'} (not provided)",
        f"skipped {etc / 'd.json'}: yaml: line 1, column 2: expected the node content, but found '<stream end>'",
    ]


def test_list_json(runner: CliRunner, two_dirs: tuple[Path, Path]) -> None:
    etc, run = two_dirs
    result = runner.invoke(app, ["list", "--spec-dir", str(etc), "--spec-dir", str(run), "--output", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "specDirs": [str(etc), str(run)],
        "devices": [
            {"name": "vendor.com/device=etc-only", "path": str(etc / "a.yaml"), "priority": 0},
            {"name": "vendor.com/device=shared", "path": str(run / "a.yaml"), "priority": 1},
        ],
        "conflicts": [{"name": "other.io/xy=dup", "paths": [str(etc / "b.yaml"), str(etc / "c.yaml")]}],
        "errors": [
            {
                "path": str(etc / "d.json"),
                "error": "yaml: line 1, column 2: expected the node content, but found '<stream end>'",
            }
        ],
    }


def test_list_order_of_dirs_decides(runner: CliRunner, two_dirs: tuple[Path, Path]) -> None:
    etc, run = two_dirs
    result = runner.invoke(app, ["list", "--spec-dir", str(run), "--spec-dir", str(etc), "--output", "json"])
    shared = [d for d in json.loads(result.stdout)["devices"] if d["name"] == "vendor.com/device=shared"]
    assert shared == [{"name": "vendor.com/device=shared", "path": str(etc / "a.yaml"), "priority": 1}]


def test_list_empty_dirs(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["list", "--spec-dir", str(tmp_path / "none")])
    assert result.exit_code == 0
    assert result.stdout == f"no CDI devices in {tmp_path / 'none'}\n"


def test_list_defaults_to_the_runtime_dirs(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Path, ...]] = []

    def scan(spec_dirs: tuple[Path, ...]) -> specdirs.SpecRegistry:
        seen.append(tuple(spec_dirs))
        return specdirs.SpecRegistry(spec_dirs=tuple(spec_dirs))

    monkeypatch.setattr(store, "scan_spec_dirs", scan)
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    assert seen == [(Path("/etc/cdi"), Path("/var/run/cdi"))]
    assert result.stdout == "no CDI devices in /etc/cdi, /var/run/cdi\n"


# --- --version and --help -----------------------------------------------------------------------------------------


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"cdi-fuse {cdi_fuse.__version__}\n"


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 2
    assert "generate" in result.output and "validate" in result.output and "list" in result.output


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        pytest.param(
            "generate",
            [
                "--device-path",
                "--vendor",
                "--class",
                "--device-name",
                "--permissions",
                "--format",
                "--spec-dir",
                "--output",
                "--spec-version",
                "--check",
                # Regression: "[default: ...]" in help texts was eaten as rich markup.
                "(default: from the --output extension, else yaml)",
                "(default: <spec-dir>/<vendor>-<class>.<ext>)",
                "(default: the minimum the spec needs)",
            ],
            id="generate",
        ),
        pytest.param(
            "validate",
            ["files...", "--output", "--runtime", "--strict", "Exit 0 when every file is valid"],
            id="validate",
        ),
        pytest.param(
            "list", ["--spec-dir", "--output", "later ones win (default: /etc/cdi, then /var/run/cdi)"], id="list"
        ),
    ],
)
def test_command_help(runner: CliRunner, command: str, expected: list[str]) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    flowed = "".join(result.stdout.split())  # help is wrapped to the terminal width, also at hyphens
    for text in expected:
        assert "".join(text.split()) in flowed, text
