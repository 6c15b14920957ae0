"""`cdi-fuse doctor` and `cdi-fuse runtime-config` against fixture dirs and a fake CRI runtime over a real socket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdi_fuse import doctor
from cdi_fuse.cli import app
from cdi_fuse.node import fuse, generate
from tests.conftest import PROC_FILESYSTEMS_WITH_FUSE, PROC_FILESYSTEMS_WITHOUT_FUSE, CharDeviceFactory
from tests.fakes.fake_cri import containerd_config, crio_config, serve_fake_cri

QUALIFIED = "cdi-fuse.io/fuse=fuse"
DATA = Path(__file__).parent.parent / "data" / "runtime-config"


def _write_spec(directory: Path, name: str = "cdi-fuse.io-fuse.yaml") -> Path:
    spec = fuse.build_fuse_spec(
        fuse.FuseDevice(Path("/dev/fuse"), 10, 229, 0o666, 0, 0), vendor="cdi-fuse.io", cls="fuse", device_name="fuse"
    )
    from cdi_fuse.cdi import store

    return store.write_spec(spec, directory / name).path


@pytest.fixture
def node(tmp_path: Path) -> dict[str, Path]:
    spec_dir = tmp_path / "cdi"
    plugin_dir = tmp_path / "device-plugins"
    plugin_dir.mkdir()
    (plugin_dir / "kubelet.sock").touch()
    proc = tmp_path / "filesystems"
    proc.write_text(PROC_FILESYSTEMS_WITH_FUSE)
    sys_root = tmp_path / "sys"
    (sys_root / "module/apparmor/parameters").mkdir(parents=True)
    (sys_root / "module/apparmor/parameters/enabled").write_text("Y\n")
    return {"spec_dir": spec_dir, "plugin_dir": plugin_dir, "proc": proc, "sys": sys_root}


def _options(node: dict[str, Path], endpoint: str, **overrides: object) -> doctor.DoctorOptions:
    values: dict[str, object] = {
        "device_path": Path("/dev/fuse"),
        "proc_filesystems": node["proc"],
        "qualified_name": QUALIFIED,
        "spec_dirs": (node["spec_dir"],),
        "runtime_endpoints": (endpoint,),
        "device_plugin_dir": node["plugin_dir"],
        "sys_root": node["sys"],
        "runtime_timeout": 1.0,
    }
    values.update(overrides)
    return doctor.DoctorOptions(**values)  # type: ignore[arg-type]


def _by_name(report: doctor.Report) -> dict[str, doctor.Check]:
    return {check.name: check for check in report.checks}


requires_fuse = pytest.mark.skipif(not Path("/dev/fuse").exists(), reason="no /dev/fuse on this machine")


@requires_fuse
def test_ready_node_with_cdi_runtime_picks_cdi(node: dict[str, Path]) -> None:
    _write_spec(node["spec_dir"])
    config = containerd_config(enable_cdi=True, spec_dirs=[str(node["spec_dir"])])
    with serve_fake_cri(runtime_name="containerd", runtime_version="v1.7.24", config=config) as endpoint:
        report = doctor.run_doctor(_options(node, endpoint))
    checks = _by_name(report)
    assert not report.blocking
    assert checks["runtime"].status == "ok"
    assert "containerd v1.7.24: CDI enabled" in checks["runtime"].detail
    assert checks["spec"].status == "ok" and "resolves to" in checks["spec"].detail
    assert checks["kubelet"].status == "ok"
    assert "AppArmor enabled" in checks["security"].detail
    assert "apparmor" in checks["security"].hint.lower()
    assert report.strategy == "cdi"


@requires_fuse
def test_cdi_off_runtime_picks_device_spec_and_hints_runtime_config(node: dict[str, Path]) -> None:
    _write_spec(node["spec_dir"])
    config = containerd_config(enable_cdi=False, spec_dirs=[str(node["spec_dir"])])
    with serve_fake_cri(runtime_name="containerd", runtime_version="v1.7.24", config=config) as endpoint:
        report = doctor.run_doctor(_options(node, endpoint))
    runtime = _by_name(report)["runtime"]
    assert runtime.status == "warn"
    assert "CDI disabled" in runtime.detail
    assert "runtime-config" in runtime.hint
    assert report.strategy == "device-spec"
    assert not report.blocking


@requires_fuse
def test_duplicate_spec_blocks_and_unreachable_runtime_sends_everything(node: dict[str, Path]) -> None:
    _write_spec(node["spec_dir"])
    _write_spec(node["spec_dir"], "copy.yaml")
    report = doctor.run_doctor(_options(node, "unix:///nonexistent/cri.sock"))
    checks = _by_name(report)
    assert checks["spec"].status == "fail"
    assert "defined twice" in checks["spec"].detail
    assert checks["runtime"].status == "warn"
    assert report.strategy == "device-spec"  # a duplicated name would make a CDI runtime fail the container
    assert report.blocking


def test_missing_device_and_kernel_support_block(node: dict[str, Path], tmp_path: Path) -> None:
    node["proc"].write_text(PROC_FILESYSTEMS_WITHOUT_FUSE)
    report = doctor.run_doctor(_options(node, "unix:///nonexistent/cri.sock", device_path=tmp_path / "nofuse"))
    checks = _by_name(report)
    assert checks["kernel"].status == "fail" and "modprobe fuse" in checks["kernel"].hint
    assert checks["device"].status == "fail" and "does not exist" in checks["device"].detail
    assert report.blocking


def test_doctor_cli_json_and_exit_code(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "doctor",
            "--device-path",
            str(tmp_path / "missing"),
            "--spec-dir",
            str(tmp_path),
            "--runtime-endpoint",
            "unix:///nonexistent/cri.sock",
            "--device-plugin-dir",
            str(tmp_path / "nokubelet"),
            "--output",
            "json",
        ],
    )
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["ok"] is False
    names = [c["name"] for c in data["checks"]]
    assert names[:2] == ["kernel", "device"]
    assert {"spec", "runtime", "kubelet", "security"} <= set(names)
    assert data["strategy"]["auto"] == "device-spec"  # runtime unreachable and no spec in the spec dir


@requires_fuse
def test_doctor_cli_text_ready(node: dict[str, Path]) -> None:
    _write_spec(node["spec_dir"])
    result = CliRunner().invoke(
        app,
        [
            "doctor",
            "--spec-dir",
            str(node["spec_dir"]),
            "--runtime-endpoint",
            "unix:///nonexistent/cri.sock",
            "--device-plugin-dir",
            str(node["plugin_dir"]),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "strategy auto would use: cdi+device-spec" in result.output
    assert "verdict: ready for FUSE pods" in result.output


def test_runtime_config_containerd_version_follows_the_running_runtime() -> None:
    with serve_fake_cri(runtime_name="containerd", runtime_version="v2.1.0", config=containerd_config()) as endpoint:
        result = CliRunner().invoke(app, ["runtime-config", "containerd", "--runtime-endpoint", endpoint])
    assert result.exit_code == 0, result.output
    assert "version = 3" in result.output
    assert (
        "[plugins.'io.containerd.cri.v1.runtime']" in result.output
        or '[plugins."io.containerd.cri.v1.runtime"]' in result.output
    )
    assert "enable_cdi = true" in result.output


def test_runtime_config_containerd_defaults_to_version_2_when_runtime_unreachable() -> None:
    result = CliRunner().invoke(
        app, ["runtime-config", "containerd", "--runtime-endpoint", "unix:///nonexistent/c.sock"]
    )
    assert result.exit_code == 0, result.output
    assert "version = 2" in result.output
    assert '[plugins."io.containerd.grpc.v1.cri"]' in result.output
    assert "--config-version 3" in result.output


def test_runtime_config_apply_edits_keeps_comments_and_is_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text((DATA / "containerd-1.7.toml").read_text())
    comments = [line for line in target.read_text().splitlines() if line.lstrip().startswith("#")]
    first = CliRunner().invoke(app, ["runtime-config", "containerd", "--apply", "--config", str(target)])
    assert first.exit_code == 0, first.output
    assert "restart" in first.output and "containerd" in first.output
    text = target.read_text()
    assert "enable_cdi = true" in text
    assert all(comment in text for comment in comments)
    assert list(tmp_path.glob("config.toml.bak-*")), "a backup is written"
    second = CliRunner().invoke(app, ["runtime-config", "containerd", "--apply", "--config", str(target)])
    assert second.exit_code == 0
    assert "unchanged" in second.output
    assert target.read_text() == text
    assert len(list(tmp_path.glob("config.toml.bak-*"))) == 1


def test_runtime_config_rejects_unknown_config_version() -> None:
    result = CliRunner().invoke(app, ["runtime-config", "containerd", "--config-version", "7"])
    assert result.exit_code == 2
    assert "use 2 or 3" in result.output


def test_generate_options_qualified_name_matches_default() -> None:
    assert generate.GenerateOptions().qualified_name == QUALIFIED


@requires_fuse
def test_crio_with_its_own_spec_dir_is_asked_for_it(node: dict[str, Path], tmp_path: Path) -> None:
    """CRI-O configured for a dir that is not among doctor's --spec-dir: doctor and auto use CRI-O's dirs.

    Regression: the CRI-O answer was read like containerd's (top-level cdiSpecDirs), so the defaults were
    assumed and auto fell back to device-spec although CRI-O resolves the name.
    """
    crio_dir = tmp_path / "crio-cdi"
    spec = _write_spec(crio_dir)
    config = crio_config([str(crio_dir)])
    with serve_fake_cri(runtime_name="cri-o", runtime_version="1.37.0", config=config) as endpoint:
        report = doctor.run_doctor(_options(node, endpoint))
    checks = _by_name(report)
    assert checks["runtime"].status == "ok"
    assert f"cri-o 1.37.0: CDI enabled, spec dirs {crio_dir}" in checks["runtime"].detail
    assert "crio.CDISpecDirs" in checks["runtime"].detail
    assert checks["spec"].status == "warn"  # not in doctor's own --spec-dir
    assert checks["runtime spec dirs"].status == "ok"
    assert str(spec) in checks["runtime spec dirs"].detail
    assert report.strategy == "cdi"
    assert str(crio_dir) in report.strategy_reason


# --- user namespaces and the device node's mode ------------------------------------------------------------

RUNC_WITH_USERNS = [("", True, True), ("runc", True, True)]
RUNC_WITHOUT_USERNS = [("", False, True), ("runc", False, True)]  # what containerd 2.1.9 + runc 1.1.5 says


@pytest.mark.parametrize(
    ("handlers", "status", "detail"),
    [
        pytest.param(RUNC_WITH_USERNS, "ok", "its default runtime handler can run user-namespaced pods", id="can"),
        pytest.param(RUNC_WITHOUT_USERNS, "warn", "default runtime handler cannot run", id="cannot"),
        pytest.param([("kata", True, False)], "ok", "runtime handler 'kata' can run", id="named-only"),
        pytest.param([], "warn", "reports no runtime handler features (CRI of Kubernetes 1.30+)", id="not-reported"),
    ],
)
def test_doctor_says_whether_the_runtime_can_run_user_namespaced_pods(
    node: dict[str, Path], handlers: list[tuple[str, bool, bool]], status: str, detail: str
) -> None:
    with serve_fake_cri(runtime_version="v2.1.9", config=containerd_config(), runtime_handlers=handlers) as endpoint:
        check = _by_name(doctor.run_doctor(_options(node, endpoint, device_path=node["proc"])))["userns"]

    assert check.status == status
    assert detail in check.detail and "containerd v2.1.9" in check.detail and "kernel " in check.detail
    if status == "warn":
        assert "containerd >= 2.0 or CRI-O >= 1.25" in check.hint and "runc >= 1.2" in check.hint


def test_doctor_cannot_tell_user_namespaces_without_the_runtime(node: dict[str, Path]) -> None:
    report = doctor.run_doctor(_options(node, "unix:///nonexistent/cri.sock", device_path=node["proc"]))

    check = _by_name(report)["userns"]
    assert check.status == "warn" and "could not be asked whether it runs user-namespaced pods" in check.detail


def test_a_device_that_is_not_fuse_blocks(node: dict[str, Path]) -> None:
    report = doctor.run_doctor(_options(node, "unix:///nonexistent/cri.sock", device_path=Path("/dev/null")))

    check = _by_name(report)["device"]
    assert check.status == "fail" and report.blocking
    assert "'/dev/null' is character device 1:3" in check.detail and "not the FUSE misc device 10:229" in check.detail
    assert "--allow-other-device" in check.hint


@pytest.mark.root
@pytest.mark.parametrize(
    ("handlers", "consequence"),
    [
        pytest.param(RUNC_WITH_USERNS, "so FUSE pods with hostUsers: false will fail here", id="runtime-can"),
        pytest.param([], "no pod is affected yet", id="runtime-cannot"),
    ],
)
def test_device_mode_0600_warns_with_the_fix(
    node: dict[str, Path], make_char_device: CharDeviceFactory, handlers: list[tuple[str, bool, bool]], consequence: str
) -> None:
    """Regression (issue 11): doctor reported a 0600 /dev/fuse as OK, yet hostUsers: false pods cannot open it."""
    device = make_char_device("fuse", mode=0o600)
    with serve_fake_cri(runtime_version="v2.1.9", config=containerd_config(), runtime_handlers=handlers) as endpoint:
        report = doctor.run_doctor(_options(node, endpoint, device_path=device))

    check = _by_name(report)["device"]
    assert check.status == "warn" and not report.blocking
    assert "mode 0600" in check.detail and "pods with hostUsers: false (user namespaces) cannot open it" in check.detail
    assert consequence in check.detail
    for fix in ('KERNEL=="fuse", MODE="0666"', "/etc/udev/rules.d/", "chmod 0666 /dev/fuse", "every process"):
        assert fix in check.hint, fix


@pytest.mark.root
def test_device_mode_0666_is_ok(node: dict[str, Path], make_char_device: CharDeviceFactory) -> None:
    device = make_char_device("fuse", mode=0o666)
    report = doctor.run_doctor(_options(node, "unix:///nonexistent/cri.sock", device_path=device))

    check = _by_name(report)["device"]
    assert check.status == "ok" and "mode 0666" in check.detail


# --- the runtime's own CDI library (issue 10) -----------------------------------------------------------------------

_SPEC_1_1 = "cdiVersion: 1.1.0\nkind: cdi-fuse.io/fuse\ndevices:\n- name: fuse\n  containerEdits:\n    env: [A=1]\n"


@pytest.mark.parametrize(
    ("version", "status", "detail"),
    [
        # Debian sid's containerd 2.1.9 bundles library 1.0.1: it refuses cdiVersion 1.1.0.
        pytest.param(
            "2.1.9+unknown",
            "warn",
            "containerd 2.1.9+unknown (CDI library 1.0.1) cannot load {spec}: cdiVersion: invalid version '1.1.0'",
            id="containerd-2.1",
        ),
        pytest.param("v2.2.1", "ok", "containerd v2.2.1 (CDI library 1.1.0) loads every valid spec in", id="2.2.1"),
        # Debian trixie's 1.7.24~ds1 links Debian's library 0.8.0, not the vendored 0.7.2.
        pytest.param("1.7.24~ds1", "warn", "(CDI library 0.8.0) cannot load", id="containerd-1.7.24-debian"),
    ],
)
def test_runtime_library_judges_the_specs_in_its_dirs(
    node: dict[str, Path], version: str, status: str, detail: str
) -> None:
    node["spec_dir"].mkdir()
    spec = node["spec_dir"] / "cdi-fuse.io-fuse.yaml"
    spec.write_text(_SPEC_1_1)
    config = containerd_config(enable_cdi=True, spec_dirs=[str(node["spec_dir"])])
    with serve_fake_cri(runtime_name="containerd", runtime_version=version, config=config) as endpoint:
        report = doctor.run_doctor(_options(node, endpoint))
    check = _by_name(report)["runtime library"]
    assert check.status == status
    assert detail.format(spec=spec) in check.detail
    if status == "warn":
        assert "--spec-version 1.0.0" in check.hint or "--spec-version 0.8.0" in check.hint


def test_runtime_library_fails_on_a_spec_that_crashes_the_runtime(node: dict[str, Path]) -> None:
    node["spec_dir"].mkdir()
    spec = node["spec_dir"] / "a-fuse.yaml"
    spec.write_text(_SPEC_1_1.replace("1.1.0", "0.3.0").replace("cdi-fuse.io/fuse", "a/fuse"))
    config = containerd_config(enable_cdi=True, spec_dirs=[str(node["spec_dir"])])
    with serve_fake_cri(runtime_name="containerd", runtime_version="2.1.9+unknown", config=config) as endpoint:
        report = doctor.run_doctor(_options(node, endpoint))
    check = _by_name(report)["runtime library"]
    assert check.status == "fail"
    assert f"crashes on {spec}: kind: one-character vendor name 'a'" in check.detail
    assert "fails to start" in check.hint
    assert report.blocking


def test_runtime_library_of_an_unknown_release_is_not_judged(node: dict[str, Path]) -> None:
    config = containerd_config(enable_cdi=True, spec_dirs=[str(node["spec_dir"])])
    with serve_fake_cri(runtime_name="containerd", runtime_version="weird", config=config) as endpoint:
        report = doctor.run_doctor(_options(node, endpoint))
    check = _by_name(report)["runtime library"]
    assert check.status == "ok"
    assert check.detail == "containerd weird: no CDI library version on record; specs not judged"


APPARMOR_PROFILES = "kernel/security/apparmor/profiles"
LOAD_PROFILE = "apparmor_parser --replace examples/apparmor/cdi-fuse"


def _sys_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "directory", "ready", "needs"),
    [
        pytest.param({}, "examples/pods", True, "", id="no-lsm"),
        pytest.param({"module/apparmor/parameters/enabled": "N\n"}, "examples/pods", True, "", id="apparmor-off"),
        pytest.param(
            {"module/apparmor/parameters/enabled": "Y\n", APPARMOR_PROFILES: "cdi-fuse (enforce)\n"},
            "examples/apparmor", True, "", id="apparmor-profile-loaded",
        ),
        pytest.param(
            {"module/apparmor/parameters/enabled": "Y\n", APPARMOR_PROFILES: "cri-containerd (enforce)\n"},
            "examples/apparmor", False, LOAD_PROFILE, id="apparmor-no-profile",
        ),
        pytest.param(
            {"module/apparmor/parameters/enabled": "Y\n"}, "examples/apparmor", True,
            LOAD_PROFILE, id="apparmor-profiles-unreadable",
        ),
        pytest.param(
            {"fs/selinux/enforce": "1\n", "fs/selinux/booleans/virt_sandbox_use_fusefs": "0 0\n"},
            "examples/pods", False, "setsebool -P virt_sandbox_use_fusefs on", id="selinux-boolean-off",
        ),
        pytest.param(
            {"fs/selinux/enforce": "1\n", "fs/selinux/booleans/virt_sandbox_use_fusefs": "1 1\n"},
            "examples/pods", True, "", id="selinux-boolean-on",
        ),
        pytest.param({"fs/selinux/enforce": "0\n"}, "examples/pods", True, "", id="selinux-permissive"),
    ],
)  # fmt: skip
def test_examples_variant_follows_the_lsm_in_force(
    tmp_path: Path, files: dict[str, str], directory: str, ready: bool, needs: str
) -> None:
    variant = doctor.examples_variant(_sys_tree(tmp_path / "sys", files))
    assert (variant.directory, variant.ready) == (directory, ready)
    assert needs in variant.needs if needs else variant.needs == ""


def test_security_check_names_the_variant_and_warns_when_the_node_lacks_its_setting(tmp_path: Path) -> None:
    sys_root = _sys_tree(
        tmp_path / "sys", {"fs/selinux/enforce": "1\n", "fs/selinux/booleans/virt_sandbox_use_fusefs": "0 0\n"}
    )
    check = doctor._lsm(doctor.DoctorOptions(sys_root=sys_root))
    assert check.status == "warn"
    assert check.detail == "AppArmor absent, SELinux enforcing; FUSE pods: the examples/pods variant"
    assert check.hint == "setsebool -P virt_sandbox_use_fusefs on"
