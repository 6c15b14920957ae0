"""examples/apparmor/cdi-fuse: compiles with the real apparmor_parser and allows FUSE mounts, no others."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / "examples" / "apparmor" / "cdi-fuse"
# A fixed feature set (AppArmor 3.0 ABI, which mediates mounts) so the result doesn't depend on the
# kernel of the machine running the test; the parser never loads anything (-Q).
ABI_FEATURES = Path("/etc/apparmor.d/abi/3.0")


def _parser() -> str:
    parser = shutil.which("apparmor_parser") or shutil.which("apparmor_parser", path="/usr/sbin:/sbin")
    if parser is None:
        pytest.skip("apparmor_parser not installed (Debian package apparmor): profile not compiled")
    return parser


def _compile(profile: Path) -> subprocess.CompletedProcess[bytes]:
    # -Q: skip kernel load, -K/-T: no cache write/read, -S: write the compiled policy to stdout
    command = [_parser(), "-Q", "-K", "-T", "-S"]
    if ABI_FEATURES.is_file():
        command += ["--features-file", str(ABI_FEATURES)]
    return subprocess.run([*command, str(profile)], capture_output=True, timeout=60, check=False)


def _rules(text: str) -> list[str]:
    """The profile's rule lines without comments (but keeping #include lines) and indentation."""
    rules = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#include"):
            rules.append(stripped)
            continue
        stripped = stripped.split("#", 1)[0].strip()
        if stripped:
            rules.append(stripped)
    return rules


def test_profile_compiles_without_loading_it() -> None:
    result = _compile(PROFILE)

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout, "apparmor_parser -S produced no compiled policy"
    assert b"cdi-fuse" in result.stdout


def test_parser_rejects_a_broken_copy(tmp_path: Path) -> None:
    """Guards the test above: the same call fails when the profile is wrong."""
    broken = tmp_path / "cdi-fuse"
    broken.write_text(PROFILE.read_text().replace("mount fstype=fuse -> /**,", "mount fstype=fuse -> ,"))

    result = _compile(broken)

    assert result.returncode != 0
    assert b"syntax error" in result.stderr


def test_profile_allows_fuse_mounts_and_the_device() -> None:
    rules = _rules(PROFILE.read_text())

    assert "profile cdi-fuse flags=(attach_disconnected,mediate_deleted) {" in rules
    for rule in (
        "mount fstype=fuse -> /**,",
        "mount fstype=fuse.* -> /**,",
        "umount,",
        "capability sys_admin,",
        "/dev/fuse rw,",
        "file,",
        "network,",
    ):
        assert rule in rules, rule


def test_profile_allows_no_other_mount() -> None:
    mount_rules = [r for r in _rules(PROFILE.read_text()) if re.match(r"(deny\s+)?(mount|remount)\b", r)]
    allowed = [r for r in mount_rules if not r.startswith("deny")]

    assert allowed == ["mount fstype=fuse -> /**,", "mount fstype=fuse.* -> /**,"]
    assert "deny mount fstype=fuse* -> /proc/**," in mount_rules
    assert "deny mount fstype=fuse* -> /sys/**," in mount_rules


def test_profile_keeps_proc_and_sys_masks_and_grants_no_blanket_capability() -> None:
    rules = _rules(PROFILE.read_text())

    assert "deny umount /proc{,/**}," in rules
    assert "deny umount /sys{,/**}," in rules
    assert "deny @{PROC}/sysrq-trigger rwklx," in rules
    assert "deny @{PROC}/kcore rwklx," in rules
    assert "capability," not in rules
    granted = {r.removeprefix("capability ").rstrip(",") for r in rules if r.startswith("capability ")}
    assert "sys_module" not in granted and "sys_ptrace" not in granted and "net_admin" not in granted
    assert "sys_admin" in granted


def test_the_apparmor_examples_refer_to_this_profile() -> None:
    kustomization = yaml.safe_load((REPO / "examples" / "apparmor" / "kustomization.yaml").read_text())
    for patch in kustomization["patches"]:
        profile = yaml.safe_load(patch["patch"])["spec"]["securityContext"]["appArmorProfile"]
        assert profile == {"type": "Localhost", "localhostProfile": PROFILE.name}
