"""cdi_fuse.runtime.config: CDI snippets for containerd/CRI-O and in-place edits of their config files."""

from __future__ import annotations

import shutil
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomlkit.exceptions

from cdi_fuse.errors import CdiFuseError
from cdi_fuse.runtime import config

DATA = Path(__file__).resolve().parents[1] / "data" / "runtime-config"
CRI_V2 = "io.containerd.grpc.v1.cri"
CRI_V3 = "io.containerd.cri.v1.runtime"


@pytest.fixture
def fixture_copy(tmp_path: Path):
    def copy(name: str, mode: int = 0o640) -> Path:
        target = tmp_path / name
        shutil.copyfile(DATA / name, target)
        target.chmod(mode)
        return target

    return copy


def _comments(text: str) -> list[str]:
    """Every comment in a TOML text (whole-line and trailing), in order."""
    return [line[line.index("#") :].strip() for line in text.splitlines() if "#" in line]


def _without(data: dict[str, Any], table_path: tuple[str, ...], keys: set[str]) -> dict[str, Any]:
    """A deep copy of `data` with `keys` removed from the table at `table_path`."""
    copied = dict(data)
    node = copied
    for key in table_path[:-1]:
        node[key] = dict(node[key])
        node = node[key]
    node[table_path[-1]] = {k: v for k, v in node[table_path[-1]].items() if k not in keys}
    return copied


def _backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.bak-*"))


# --- rendering ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "table"),
    [pytest.param(2, CRI_V2, id="containerd-1.7"), pytest.param(3, CRI_V3, id="containerd-2.x")],
)
def test_rendered_containerd_config_enables_cdi_in_the_versions_table(version: int, table: str) -> None:
    data = tomllib.loads(config.render_containerd_config(version=version))

    assert data == {
        "version": version,
        "plugins": {table: {"enable_cdi": True, "cdi_spec_dirs": ["/etc/cdi", "/var/run/cdi"]}},
    }


def test_rendered_containerd_config_uses_the_given_spec_dirs() -> None:
    data = tomllib.loads(config.render_containerd_config(spec_dirs=["/opt/cdi"]))

    assert data["plugins"][CRI_V2]["cdi_spec_dirs"] == ["/opt/cdi"]


def test_rendered_crio_drop_in_sets_spec_dirs_under_crio_runtime() -> None:
    text = config.render_crio_config(spec_dirs=["/etc/cdi", "/var/run/cdi"])

    assert tomllib.loads(text) == {"crio": {"runtime": {"cdi_spec_dirs": ["/etc/cdi", "/var/run/cdi"]}}}
    assert text.startswith("#")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        pytest.param({"version": 1}, "version 1", id="containerd-version-1"),
        pytest.param({"version": 4}, "version 4", id="unknown-version"),
        pytest.param({"spec_dirs": ["etc/cdi"]}, "'etc/cdi' is not an absolute path", id="relative-dir"),
        pytest.param({"spec_dirs": "/etc/cdi"}, "not the string '/etc/cdi'", id="string-not-list"),
    ],
)
def test_rendering_refuses_bad_arguments(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(CdiFuseError, match=needle):
        config.render_containerd_config(**kwargs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", None, id="empty"),
        pytest.param("# only a comment\n\n", None, id="comments-only"),
        pytest.param("version = 2\n", 2, id="v2"),
        pytest.param("version = 3\n[plugins]\n", 3, id="v3"),
    ],
)
def test_config_version_is_read_from_the_file(text: str, expected: int | None) -> None:
    assert config.containerd_config_version(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param('root = "/var/lib/containerd"\n', "no 'version' key", id="implicit-v1"),
        pytest.param("version = 1\n", "version 1", id="explicit-v1"),
        pytest.param('version = "2"\n', "declares version '2'", id="string"),
        pytest.param("version = 7\n", "version 7", id="unknown"),
    ],
)
def test_config_version_refuses_what_it_cannot_edit(text: str, needle: str) -> None:
    with pytest.raises(CdiFuseError, match=needle):
        config.containerd_config_version(text)


# --- containerd apply --------------------------------------------------------------------------------


def test_apply_to_containerd_17_config_enables_cdi_and_keeps_the_rest(fixture_copy) -> None:
    path = fixture_copy("containerd-1.7.toml")
    original = path.read_text()

    result = config.apply_containerd_config(path)

    text = path.read_text()
    data = tomllib.loads(text)
    assert data["plugins"][CRI_V2]["enable_cdi"] is True
    assert data["plugins"][CRI_V2]["cdi_spec_dirs"] == ["/etc/cdi", "/var/run/cdi"]
    assert _without(data, ("plugins", CRI_V2), {"enable_cdi", "cdi_spec_dirs"}) == _without(
        tomllib.loads(original), ("plugins", CRI_V2), {"enable_cdi", "cdi_spec_dirs"}
    )
    assert _comments(text) == _comments(original)
    # the added key lines up with its neighbours instead of starting at column 0
    assert '    cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]' in text.splitlines()
    assert result.changed
    assert result.changes == (
        f"plugins.{CRI_V2!r}.enable_cdi: false -> true",
        f'plugins.{CRI_V2!r}.cdi_spec_dirs: (unset) -> ["/etc/cdi", "/var/run/cdi"]',
    )
    assert result.restart_command == "systemctl restart containerd"
    assert "systemctl restart containerd" in result.message


def test_apply_writes_a_backup_of_the_previous_file_with_its_mode(fixture_copy) -> None:
    path = fixture_copy("containerd-1.7.toml", mode=0o600)
    original = path.read_bytes()

    result = config.apply_containerd_config(path)

    assert result.backup is not None
    assert _backups(path) == [result.backup]
    assert result.backup.read_bytes() == original
    assert stat.S_IMODE(result.backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(result.backup) in result.message
    assert not list(path.parent.glob(".*.tmp")), "temporary file left behind"


def test_second_apply_is_unchanged_and_writes_no_backup(fixture_copy) -> None:
    path = fixture_copy("containerd-1.7.toml")
    config.apply_containerd_config(path)
    after_first = path.read_bytes()
    inode = path.stat().st_ino

    second = config.apply_containerd_config(path)

    assert not second.changed
    assert second.changes == ()
    assert second.backup is None
    assert "unchanged" in second.message
    assert path.read_bytes() == after_first
    assert path.stat().st_ino == inode, "an unchanged file must not be rewritten"
    assert len(_backups(path)) == 1


def test_apply_to_containerd_2_config_edits_the_version_3_table(fixture_copy) -> None:
    path = fixture_copy("containerd-2.0.toml")
    original = path.read_text()

    result = config.apply_containerd_config(path)

    data = tomllib.loads(path.read_text())
    assert data["version"] == 3
    assert data["plugins"][CRI_V3]["cdi_spec_dirs"] == ["/etc/cdi", "/var/run/cdi"]
    assert data["plugins"][CRI_V3]["enable_cdi"] is True
    assert CRI_V2 not in data["plugins"]
    # enable_cdi was already true: only the directory list changed
    assert result.changes == (f'plugins.{CRI_V3!r}.cdi_spec_dirs: ["/etc/cdi"] -> ["/etc/cdi", "/var/run/cdi"]',)
    assert _comments(path.read_text()) == _comments(original)


def test_apply_with_custom_spec_dirs_replaces_the_list(fixture_copy) -> None:
    path = fixture_copy("containerd-2.0.toml")

    config.apply_containerd_config(path, spec_dirs=["/var/run/cdi"])

    assert tomllib.loads(path.read_text())["plugins"][CRI_V3]["cdi_spec_dirs"] == ["/var/run/cdi"]


def test_apply_refuses_a_version_other_than_the_files_and_leaves_it_alone(fixture_copy) -> None:
    path = fixture_copy("containerd-1.7.toml")
    original = path.read_bytes()

    with pytest.raises(CdiFuseError, match="version 2, not the version 3"):
        config.apply_containerd_config(path, version=3)

    assert path.read_bytes() == original
    assert _backups(path) == []


def test_apply_refuses_a_version_1_config_and_leaves_it_alone(fixture_copy) -> None:
    path = fixture_copy("containerd-v1.toml")
    original = path.read_bytes()

    with pytest.raises(CdiFuseError, match="version 1") as caught:
        config.apply_containerd_config(path)

    assert repr(str(path)) in str(caught.value)
    assert path.read_bytes() == original
    assert _backups(path) == []


@pytest.mark.parametrize(
    ("version", "table"),
    [pytest.param(None, CRI_V2, id="default-v2"), pytest.param(3, CRI_V3, id="asked-v3")],
)
def test_apply_to_an_empty_config_starts_a_versioned_one_and_keeps_its_comment(
    fixture_copy, version: int | None, table: str
) -> None:
    path = fixture_copy("empty.toml")
    original = path.read_text()

    result = config.apply_containerd_config(path, version=version)

    text = path.read_text()
    data = tomllib.loads(text)
    assert data["version"] == (version or 2)
    assert data["plugins"][table] == {"enable_cdi": True, "cdi_spec_dirs": ["/etc/cdi", "/var/run/cdi"]}
    assert text.startswith(f"version = {version or 2}\n")
    assert _comments(text) == _comments(original)
    assert result.changes[0] == f"version: (none) -> {version or 2}"


def test_apply_creates_a_missing_config_without_backup(tmp_path: Path) -> None:
    path = tmp_path / "containerd" / "config.toml"

    result = config.apply_containerd_config(path)

    assert tomllib.loads(path.read_text()) == tomllib.loads(config.render_containerd_config())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert result.backup is None
    assert result.changed


def test_apply_wraps_a_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("version = 2\n[plugins\n")

    with pytest.raises(CdiFuseError, match=r"cannot parse .* as TOML") as caught:
        config.apply_containerd_config(path)

    assert isinstance(caught.value.__cause__, tomlkit.exceptions.ParseError)


def test_apply_refuses_a_cri_entry_that_is_not_a_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'version = 2\n[plugins]\n"{CRI_V2}" = "off"\n')

    with pytest.raises(CdiFuseError, match="not a table"):
        config.apply_containerd_config(path)


def test_apply_reports_an_unwritable_location(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")

    with pytest.raises(CdiFuseError, match="cannot read") as caught:
        config.apply_containerd_config(not_a_dir / "config.toml")

    assert isinstance(caught.value.__cause__, OSError)


def test_apply_handles_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'version = 2\nplugins."{CRI_V2}".enable_cdi = false  # off for now\n')

    config.apply_containerd_config(path)

    text = path.read_text()
    assert tomllib.loads(text)["plugins"][CRI_V2] == {
        "enable_cdi": True,
        "cdi_spec_dirs": ["/etc/cdi", "/var/run/cdi"],
    }
    assert "# off for now" in text


# --- CRI-O apply -------------------------------------------------------------------------------------


def test_apply_to_crio_conf_sets_spec_dirs_and_keeps_comments(fixture_copy) -> None:
    path = fixture_copy("crio.conf")
    original = path.read_text()

    result = config.apply_crio_config(path)

    text = path.read_text()
    data = tomllib.loads(text)
    assert data["crio"]["runtime"]["cdi_spec_dirs"] == ["/etc/cdi", "/var/run/cdi"]
    assert _without(data, ("crio", "runtime"), {"cdi_spec_dirs"}) == tomllib.loads(original)
    assert _comments(text) == _comments(original)
    assert result.restart_command == "systemctl restart crio"
    assert result.backup is not None and result.backup.read_text() == original


def test_crio_drop_in_is_created_with_its_directory_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "crio.conf.d" / "10-cdi.conf"

    first = config.apply_crio_config(path)
    second = config.apply_crio_config(path)

    assert path.read_text() == config.render_crio_config()
    assert first.changed and first.backup is None
    assert not second.changed and second.backup is None
    assert _backups(path) == []


def test_crio_drop_in_edited_by_the_admin_is_updated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "10-cdi.conf"
    path.write_text('[crio.runtime]\n# ours only\ncdi_spec_dirs = ["/etc/cdi"]\n')

    result = config.apply_crio_config(path, spec_dirs=["/etc/cdi", "/run/cdi"])

    assert tomllib.loads(path.read_text()) == {"crio": {"runtime": {"cdi_spec_dirs": ["/etc/cdi", "/run/cdi"]}}}
    assert "# ours only" in path.read_text()
    assert result.changes == ('crio.runtime.cdi_spec_dirs: ["/etc/cdi"] -> ["/etc/cdi", "/run/cdi"]',)


def test_default_paths() -> None:
    assert Path("/etc/containerd/config.toml") == config.CONTAINERD_CONFIG
    assert Path("/etc/crio/crio.conf.d/10-cdi.conf") == config.CRIO_DROP_IN
    assert config.DEFAULT_SPEC_DIRS == ("/etc/cdi", "/var/run/cdi")


def test_all_is_complete() -> None:
    public = {name for name in vars(config) if not name.startswith("_")}
    imported = {"annotations", "contextlib", "datetime", "logging", "os", "shutil", "tempfile", "tomlkit"}
    imported |= {"Any", "Final", "Iterator", "Sequence", "dataclass", "Path", "errors"}
    assert set(config.__all__) == public - imported
