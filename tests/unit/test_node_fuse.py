"""node/fuse.py: probing the FUSE device, judging its health, building its CDI spec."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import pytest

from cdi_fuse import defaults, errors
from cdi_fuse.cdi import models, validation
from cdi_fuse.node import fuse
from tests.conftest import FUSE_MAJOR, FUSE_MINOR, CharDeviceFactory

# --- fuse_in_kernel -----------------------------------------------------------------------------------------------


def test_fuse_in_kernel(proc_filesystems: Path, proc_filesystems_without_fuse: Path, tmp_path: Path) -> None:
    assert fuse.fuse_in_kernel(proc_filesystems)
    # fusectl and fuseblk are not fuse.
    assert not fuse.fuse_in_kernel(proc_filesystems_without_fuse)
    assert not fuse.fuse_in_kernel(tmp_path / "missing")
    (tmp_path / "builtin").write_text("\text4\nnodev\tfuse\n\n")
    assert fuse.fuse_in_kernel(tmp_path / "builtin")


# --- probe_fuse without root --------------------------------------------------------------------------------------


def test_probe_missing_device_tells_to_modprobe(tmp_path: Path, proc_filesystems: Path) -> None:
    missing = tmp_path / "dev" / "fuse"
    with pytest.raises(errors.DeviceProbeError) as info:
        fuse.probe_fuse(missing, proc_filesystems=proc_filesystems)
    assert str(info.value) == f"device {str(missing)!r} does not exist"
    assert info.value.device == missing
    assert "modprobe fuse" in info.value.hint
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_probe_regular_file_is_not_a_char_device(tmp_path: Path, proc_filesystems: Path) -> None:
    regular = tmp_path / "fuse"
    regular.write_text("")
    with pytest.raises(errors.DeviceProbeError, match=r"is not a character device$") as info:
        fuse.probe_fuse(regular, proc_filesystems=proc_filesystems)
    assert "10:229" in info.value.hint


def test_probe_directory_is_not_a_char_device(tmp_path: Path, proc_filesystems: Path) -> None:
    with pytest.raises(errors.DeviceProbeError, match=r"is not a character device$"):
        fuse.probe_fuse(tmp_path, proc_filesystems=proc_filesystems)


def test_probe_unstattable_path(tmp_path: Path, proc_filesystems: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "fuse"
    with pytest.raises(errors.DeviceProbeError, match=r"cannot stat device .*: Not a directory") as info:
        fuse.probe_fuse(path, proc_filesystems=proc_filesystems)
    assert info.value.hint == ""


def test_probe_is_not_fooled_by_a_block_device_numbered_10_229(tmp_path: Path, proc_filesystems: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"mknod of a block device needs root (running as uid {os.geteuid()})")
    path = tmp_path / "fuse"
    try:
        os.mknod(path, 0o600 | 0o060000, os.makedev(FUSE_MAJOR, FUSE_MINOR))
    except PermissionError as exc:
        pytest.skip(f"mknod of a block device refused although root: {exc}")
    with pytest.raises(errors.DeviceProbeError, match="is not a character device"):
        fuse.probe_fuse(path, proc_filesystems=proc_filesystems)


# --- probe_fuse / check_health with real char devices (root) ------------------------------------------------------


@pytest.mark.root
def test_probe_char_device(char_device: Path, proc_filesystems: Path) -> None:
    device = fuse.probe_fuse(char_device, proc_filesystems=proc_filesystems)
    assert device == fuse.FuseDevice(path=char_device, major=10, minor=229, mode=0o666, uid=0, gid=0)


@pytest.mark.root
def test_probe_reports_other_numbers(make_char_device: CharDeviceFactory, proc_filesystems: Path) -> None:
    path = make_char_device("cuse", 10, 230, mode=0o600)
    device = fuse.probe_fuse(path, proc_filesystems=proc_filesystems)
    assert (device.major, device.minor, device.mode) == (10, 230, 0o600)


@pytest.mark.root
def test_probe_without_fuse_in_kernel_tells_to_modprobe(char_device: Path, proc_filesystems_without_fuse: Path) -> None:
    with pytest.raises(errors.DeviceProbeError, match="the kernel does not list the 'fuse' filesystem") as info:
        fuse.probe_fuse(char_device, proc_filesystems=proc_filesystems_without_fuse)
    assert "modprobe fuse" in info.value.hint
    assert info.value.device == char_device


@pytest.mark.root
def test_check_health_transitions(
    make_char_device: CharDeviceFactory, proc_filesystems: Path, proc_filesystems_without_fuse: Path
) -> None:
    path = make_char_device("fuse", 10, 229)
    probed = fuse.probe_fuse(path, proc_filesystems=proc_filesystems)

    health = fuse.check_health(probed, proc_filesystems=proc_filesystems)
    assert health == fuse.Health(True, f"{str(path)!r} is char device 10:229")

    path.unlink()
    health = fuse.check_health(probed, proc_filesystems=proc_filesystems)
    assert not health.healthy
    assert health.reason == f"device {str(path)!r} does not exist"

    os.mknod(path, 0o20666, os.makedev(10, 230))
    health = fuse.check_health(probed, proc_filesystems=proc_filesystems)
    assert health == fuse.Health(False, f"{str(path)!r} is 10:230, expected 10:229")

    path.unlink()
    path.write_text("")
    health = fuse.check_health(probed, proc_filesystems=proc_filesystems)
    assert not health.healthy and health.reason.endswith("is not a character device")

    path.unlink()
    os.mknod(path, 0o20666, os.makedev(10, 229))
    health = fuse.check_health(probed, proc_filesystems=proc_filesystems_without_fuse)
    assert health == fuse.Health(False, "the kernel no longer lists the 'fuse' filesystem")

    assert fuse.check_health(probed, proc_filesystems=proc_filesystems).healthy


def test_check_health_of_a_missing_device_needs_no_root(tmp_path: Path, proc_filesystems: Path) -> None:
    expected = fuse.FuseDevice(path=tmp_path / "fuse", major=10, minor=229, mode=0o666, uid=0, gid=0)
    assert fuse.check_health(expected, proc_filesystems=proc_filesystems) == fuse.Health(
        False, f"device {str(tmp_path / 'fuse')!r} does not exist"
    )


# --- build_fuse_spec ----------------------------------------------------------------------------------------------


def test_build_fuse_spec(fuse_device: fuse.FuseDevice) -> None:
    spec = fuse.build_fuse_spec(fuse_device, vendor="cdi-fuse.io", cls="fuse", device_name="fuse")
    assert models.dump_spec(spec) == {
        "cdiVersion": "0.3.0",
        "kind": "cdi-fuse.io/fuse",
        "devices": [
            {
                "name": "fuse",
                "containerEdits": {
                    "deviceNodes": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "permissions": "rw"}]
                },
            }
        ],
    }
    assert validation.semantic_problems(spec) == []


def test_build_fuse_spec_uses_the_container_path_whatever_was_probed(fuse_device: fuse.FuseDevice) -> None:
    probed_elsewhere = replace(fuse_device, path=Path("/host/dev/fuse"), major=10, minor=230)
    spec = fuse.build_fuse_spec(probed_elsewhere, vendor="v", cls="c", device_name="d", permissions="rwm")
    nodes = spec.devices[0].container_edits.device_nodes
    assert nodes == [models.DeviceNode(path="/dev/fuse", type="c", major=10, minor=230, permissions="rwm")]


@pytest.mark.parametrize(
    ("cls", "device_name", "cdi_version", "expected"),
    [
        pytest.param("fuse", "fuse", None, "0.3.0", id="minimum-base"),
        pytest.param("fuse", "0", None, "0.5.0", id="minimum-digit-device"),
        pytest.param("fuse.v3", "fuse", None, "0.6.0", id="minimum-dotted-class"),
        pytest.param("fuse", "fuse", "1.1.0", "1.1.0", id="declared"),
    ],
)
def test_build_fuse_spec_version(
    fuse_device: fuse.FuseDevice, cls: str, device_name: str, cdi_version: str | None, expected: str
) -> None:
    spec = fuse.build_fuse_spec(fuse_device, vendor="v", cls=cls, device_name=device_name, cdi_version=cdi_version)
    assert spec.cdi_version == expected


def test_defaults() -> None:
    assert Path("/dev/fuse") == defaults.DEVICE_PATH
    assert defaults.CONTAINER_DEVICE_PATH == "/dev/fuse"
    assert Path("/proc/filesystems") == defaults.PROC_FILESYSTEMS


@pytest.mark.parametrize(
    ("host_path", "written", "version"),
    [
        pytest.param("/dev/fuse", None, "0.3.0", id="same-as-container-path"),
        pytest.param("/host/dev/fuse", "/host/dev/fuse", "0.5.0", id="elsewhere-needs-0.5.0"),
    ],
)
def test_build_fuse_spec_host_path(
    fuse_device: fuse.FuseDevice, host_path: str, written: str | None, version: str
) -> None:
    spec = fuse.build_fuse_spec(fuse_device, vendor="v", cls="c", device_name="d", host_path=host_path)
    nodes = spec.devices[0].container_edits.device_nodes
    assert nodes is not None and nodes[0].host_path == written
    assert spec.cdi_version == version


# --- is it the FUSE device? -----------------------------------------------------------------------------


def _sys_with(tmp_path: Path, major: int, minor: int, uevent: str) -> Path:
    entry = tmp_path / "sys" / "dev" / "char" / f"{major}:{minor}"
    entry.mkdir(parents=True)
    (entry / "uevent").write_text(uevent)
    return tmp_path / "sys"


def test_kernel_device_name_reads_devname(tmp_path: Path) -> None:
    sys_root = _sys_with(tmp_path, 1, 3, "MAJOR=1\nMINOR=3\nDEVNAME=null\nDEVMODE=0666\n")

    assert fuse.kernel_device_name(1, 3, sys_root=sys_root) == "null"
    assert fuse.kernel_device_name(1, 5, sys_root=sys_root) is None
    assert fuse.kernel_device_name(1, 3, sys_root=_sys_with(tmp_path / "b", 1, 3, "MAJOR=1\n")) is None


def test_the_fuse_misc_device_passes(fuse_device: fuse.FuseDevice, tmp_path: Path) -> None:
    assert fuse.FUSE_DEVICE_NUMBERS == (10, 229) == fuse_device.numbers
    fuse.validate_fuse_numbers(fuse_device, sys_root=tmp_path)


@pytest.mark.parametrize(
    ("numbers", "uevent", "expected"),
    [
        pytest.param((1, 3), "DEVNAME=null\n", "is character device 1:3 (the kernel's 'null'), not", id="dev-null"),
        pytest.param((10, 230), "", "is character device 10:230, not the FUSE misc device 10:229", id="unnamed"),
    ],
)
def test_another_char_device_is_refused_naming_what_it_is(
    fuse_device: fuse.FuseDevice, tmp_path: Path, numbers: tuple[int, int], uevent: str, expected: str
) -> None:
    """Regression (issue 11): `generate --device-path /dev/null` wrote a spec handing out /dev/null as FUSE."""
    device = replace(fuse_device, path=Path("/dev/other"), major=numbers[0], minor=numbers[1])
    sys_root = _sys_with(tmp_path, *numbers, uevent)

    with pytest.raises(errors.UnexpectedDeviceError, match=re.escape(expected)) as info:
        fuse.validate_fuse_numbers(device, sys_root=sys_root)

    assert isinstance(info.value, errors.DeviceProbeError)
    assert info.value.found == numbers and info.value.device == Path("/dev/other")
    assert "--allow-other-device" in info.value.hint


def test_dev_null_is_named_by_the_real_sysfs(proc_filesystems: Path) -> None:
    device = fuse.probe_fuse(Path("/dev/null"), proc_filesystems=proc_filesystems)

    with pytest.raises(
        errors.UnexpectedDeviceError, match=r"'/dev/null' is character device 1:3 \(the kernel's 'null'\)"
    ):
        fuse.validate_fuse_numbers(device)


@pytest.mark.parametrize(
    ("mode", "others"), [(0o666, True), (0o600, False), (0o660, False), (0o664, False), (0o606, True)]
)
def test_others_can_open(fuse_device: fuse.FuseDevice, mode: int, others: bool) -> None:
    assert replace(fuse_device, mode=mode).others_can_open is others
