"""`cdi-fuse runtime-config containerd` against the real containerd binaries (1.7 and 2.x).

The judge of an edited config is containerd itself: `containerd --config FILE config dump` prints the
configuration it would run with (defaults filled in, version 2 files migrated by 2.x). After `--apply` the
dump must show CDI on with the spec dirs, and differ from the dump of the original file in nothing else,
over the fixture files, the shapes that once crashed, and generated real-world shapes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from cdi_fuse.runtime import config
from tests.config_shapes import CRASHED, DATA, containerd_configs
from tests.e2e.containerd import fetch, harness

pytestmark = [pytest.mark.e2e, pytest.mark.root]

RuntimeFactory = Callable[[bool], harness.ContainerdRuntime]
CDI_FUSE = [sys.executable, "-m", "cdi_fuse"]
DEFAULT_DIRS = ["/etc/cdi", "/var/run/cdi"]
FIXTURES = ["containerd-1.7.toml", "containerd-2.0.toml", "containerd-2.1-default-without-cdi.toml"]


def _cdi_fuse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CDI_FUSE, *args], capture_output=True, text=True, timeout=60, check=False)


def _reads(install: fetch.ContainerdInstall, version: int) -> bool:
    """containerd 1.7 reads config version 2 only; 2.x reads 2 (migrating it) and 3."""
    return version == 2 or install.version_tuple[0] >= 2


def _dump(install: fetch.ContainerdInstall, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [str(install.containerd), "--config", str(path), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, f"containerd {install.version} refused {path}:\n{out.stderr}\n{path.read_text()}"
    return tomllib.loads(out.stdout)


def _dump_table(install: fetch.ContainerdInstall) -> str:
    """Where `config dump` of this containerd shows the CRI settings (2.x dumps version 3)."""
    return config.CONTAINERD_CRI_TABLES[3 if install.version_tuple[0] >= 2 else 2]


def _cdi_settings(install: fetch.ContainerdInstall, dump: dict[str, Any]) -> tuple[Any, Any]:
    cri = dump["plugins"][_dump_table(install)]
    return cri.get("enable_cdi"), cri.get("cdi_spec_dirs")


def _without_cdi(install: fetch.ContainerdInstall, dump: dict[str, Any]) -> dict[str, Any]:
    cri = dump["plugins"][_dump_table(install)]
    cri.pop("enable_cdi", None)
    cri.pop("cdi_spec_dirs", None)
    dump.pop("imports", None)  # 1.7 lists the file it read, whose name differs
    return dump


def _assert_only_cdi_changed(install: fetch.ContainerdInstall, before: Path, after: Path) -> None:
    old, new = _dump(install, before), _dump(install, after)
    enabled, dirs = _cdi_settings(install, new)
    assert enabled is True, f"containerd {install.version} does not see CDI on:\n{after.read_text()}"
    assert set(DEFAULT_DIRS) <= set(dirs), dirs
    assert _without_cdi(install, new) == _without_cdi(install, old), "the edit changed other settings"


def test_print_gives_the_version_the_running_containerd_reads(
    containerd_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    runtime = containerd_runtime(False)
    install = runtime.daemon.install
    version = 3 if install.version_tuple[0] >= 2 else 2
    result = _cdi_fuse("runtime-config", "containerd", "--runtime-endpoint", runtime.endpoint)
    assert result.returncode == 0, result.stderr
    print(result.stdout)

    assert result.stdout.startswith(f"# containerd {runtime.version} at {runtime.endpoint} reads config version")
    snippet = tmp_path / "snippet.toml"
    snippet.write_text(result.stdout)
    assert tomllib.loads(result.stdout)["version"] == version
    assert _cdi_settings(install, _dump(install, snippet)) == (True, DEFAULT_DIRS)


def test_apply_to_the_cdi_off_daemons_own_config(containerd_runtime: RuntimeFactory, tmp_path: Path) -> None:
    """The running CDI-off daemon's config (version 2 for 1.7, 3 for 2.x): `config dump` then says CDI is on."""
    runtime = containerd_runtime(False)
    install = runtime.daemon.install
    original = tmp_path / "original.toml"
    shutil.copy(runtime.daemon.paths.config, original)
    applied = tmp_path / "config.toml"
    shutil.copy(original, applied)
    assert _cdi_settings(install, _dump(install, original))[0] is False

    result = _cdi_fuse("runtime-config", "containerd", "--apply", "--config", str(applied))

    assert result.returncode == 0, result.stderr
    assert "restart" in result.stdout
    _assert_only_cdi_changed(install, original, applied)
    # the daemon's own spec dir stays; the default ones are added
    assert _cdi_settings(install, _dump(install, applied))[1] == [str(runtime.spec_dir), *DEFAULT_DIRS]
    again = _cdi_fuse("runtime-config", "containerd", "--apply", "--config", str(applied))
    assert again.returncode == 0 and "unchanged" in again.stdout


def test_apply_to_a_new_file_writes_the_version_the_running_containerd_reads(
    containerd_runtime: RuntimeFactory, tmp_path: Path
) -> None:
    """Regression: with no config file and a containerd 2.x endpoint, apply wrote a version 2 file."""
    runtime = containerd_runtime(False)
    install = runtime.daemon.install
    path = tmp_path / "etc" / "config.toml"

    result = _cdi_fuse(
        "runtime-config", "containerd", "--apply", "--config", str(path), "--runtime-endpoint", runtime.endpoint
    )

    assert result.returncode == 0, result.stderr
    wanted = 3 if install.version_tuple[0] >= 2 else 2
    assert tomllib.loads(path.read_text())["version"] == wanted
    assert f"reads config version {wanted}" in result.stdout
    assert _cdi_settings(install, _dump(install, path)) == (True, DEFAULT_DIRS)


@pytest.mark.parametrize("name", [*FIXTURES, *CRASHED])
def test_apply_to_known_shapes(containerd_install: fetch.ContainerdInstall, tmp_path: Path, name: str) -> None:
    original = tmp_path / "original.toml"
    if name in CRASHED:
        original.write_text(CRASHED[name])
    else:
        shutil.copy(DATA / name, original)
    version = tomllib.loads(original.read_text())["version"]
    if not _reads(containerd_install, version):
        pytest.skip(f"containerd {containerd_install.version} cannot read config version {version}")
    applied = tmp_path / "config.toml"
    shutil.copy(original, applied)

    config.apply_containerd_config(applied)

    _assert_only_cdi_changed(containerd_install, original, applied)


@settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(generated=containerd_configs())
def test_apply_to_generated_shapes_changes_only_cdi_for_containerd(
    containerd_install: fetch.ContainerdInstall, generated: tuple[str, int]
) -> None:
    text, version = generated
    if not _reads(containerd_install, version):  # the same shape in version 2, which 1.7 reads
        tables = config.CONTAINERD_CRI_TABLES
        text = text.replace("version = 3", "version = 2").replace(tables[3], tables[2])
    with tempfile.TemporaryDirectory(prefix="cdifuzz-") as work:
        original, applied = Path(work) / "original.toml", Path(work) / "config.toml"
        original.write_bytes(text.encode())
        applied.write_bytes(text.encode())

        config.apply_containerd_config(applied)

        _assert_only_cdi_changed(containerd_install, original, applied)
