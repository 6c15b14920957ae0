"""cdi_fuse.runtime.config: CDI snippets for containerd/CRI-O and in-place edits of their config files."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomlkit
import tomlkit.exceptions

from cdi_fuse import defaults, errors
from cdi_fuse.runtime import config
from tests.config_shapes import CRASHED, DATA
from tests.fakes.fake_cri import containerd_config, serve_fake_cri

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
    ("kwargs", "error", "needle"),
    [
        pytest.param({"version": 1}, errors.RuntimeConfigVersionError, "version 1", id="containerd-version-1"),
        pytest.param({"version": 4}, errors.RuntimeConfigVersionError, "version 4", id="unknown-version"),
        pytest.param(
            {"spec_dirs": ["etc/cdi"]},
            errors.RuntimeConfigValueError,
            "'etc/cdi' is not an absolute path",
            id="relative-dir",
        ),
        pytest.param(
            {"spec_dirs": "/etc/cdi"}, errors.RuntimeConfigValueError, "not the string '/etc/cdi'", id="string-not-list"
        ),
    ],
)
def test_rendering_refuses_bad_arguments(
    kwargs: dict[str, Any], error: type[errors.RuntimeConfigError], needle: str
) -> None:
    with pytest.raises(error, match=needle):
        config.render_containerd_config(**kwargs)


@pytest.mark.parametrize(
    ("runtime_version", "expected"),
    [
        pytest.param("v2.1.4", 3, id="containerd-2.1"),
        pytest.param("2.0.0~rc.1", 3, id="containerd-2.0-debian"),
        pytest.param("1.7.24~ds1", 2, id="containerd-1.7"),
    ],
)
def test_config_version_follows_the_running_containerd(runtime_version: str, expected: int) -> None:
    with serve_fake_cri(runtime_name="containerd", runtime_version=runtime_version, config=containerd_config()) as ep:
        choice = config.config_version_for_runtime(ep)

    assert choice.version == expected
    assert f"containerd {runtime_version} at {ep} reads config version {expected}" == choice.reason


@pytest.mark.parametrize(
    ("name", "version", "needle"),
    [
        pytest.param(None, None, "no containerd endpoint given", id="no-endpoint"),
        pytest.param("cri-o", "1.30.0", "cri-o 1.30.0 at", id="not-containerd"),
        pytest.param("containerd", "main", "containerd main at", id="unparseable"),
    ],
)
def test_config_version_falls_back_to_2_which_both_read(name: str | None, version: str | None, needle: str) -> None:
    if name is None:
        choice = config.config_version_for_runtime(None)
    else:
        with serve_fake_cri(runtime_name=name, runtime_version=version or "", config=containerd_config()) as ep:
            choice = config.config_version_for_runtime(ep)

    assert choice.version == 2
    assert needle in choice.reason
    assert "read by containerd 1.7 and 2.x" in choice.reason


def test_config_version_falls_back_when_the_runtime_cannot_be_asked(tmp_path: Path) -> None:
    choice = config.config_version_for_runtime(f"unix://{tmp_path}/absent.sock")

    assert choice.version == 2
    assert choice.reason.startswith("containerd could not be asked (")


@pytest.mark.parametrize(
    ("text", "version", "needle"),
    [
        pytest.param('root = "/var/lib/containerd"\n', None, "no 'version' key", id="implicit-v1"),
        pytest.param("version = 1\n", None, "is containerd config version 1", id="explicit-v1"),
        pytest.param('version = "2"\n', None, "declares version '2', expected an integer", id="string"),
        pytest.param("version = true\n", None, "declares version True", id="boolean"),
        pytest.param("version = 7\n", None, "declares containerd config version 7", id="unknown"),
        pytest.param("version = 2\n", 3, "is a containerd config version 2, not the version 3", id="mismatch"),
    ],
)
def test_apply_refuses_a_version_it_cannot_edit_and_leaves_the_file(
    tmp_path: Path, text: str, version: int | None, needle: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)

    with pytest.raises(errors.RuntimeConfigVersionError, match=needle) as caught:
        config.apply_containerd_config(path, version=version)

    assert caught.value.path == path
    assert path.read_text() == text
    assert _backups(path) == []


@pytest.mark.parametrize(
    ("text", "kwargs", "wanted"),
    [
        pytest.param("", {}, "convert it to version 2", id="default"),
        pytest.param("", {"version": 3}, "convert it to version 3", id="asked-3"),
        pytest.param("", {"endpoint": "v2.1.4"}, "convert it to version 3", id="runtime-2.x"),
        pytest.param("", {"endpoint": "1.7.24"}, "convert it to version 2", id="runtime-1.7"),
    ],
)
def test_version_1_refusal_names_the_version_to_convert_to(
    tmp_path: Path, text: str, kwargs: dict[str, Any], wanted: str
) -> None:
    """Regression: a file without `version` was told "convert it to version 2" even with --config-version 3."""
    path = tmp_path / "config.toml"
    path.write_text('root = "/var/lib/containerd"\n')
    runtime_version = kwargs.pop("endpoint", None)

    with contextlib.ExitStack() as stack:
        if runtime_version is not None:
            kwargs["runtime_endpoint"] = stack.enter_context(
                serve_fake_cri(runtime_name="containerd", runtime_version=runtime_version, config=containerd_config())
            )
        with pytest.raises(errors.RuntimeConfigVersionError) as caught:
            config.apply_containerd_config(path, **kwargs)

    assert wanted in str(caught.value)
    other = "convert it to version 2" if wanted.endswith("3") else "convert it to version 3"
    assert other not in str(caught.value)


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


def test_apply_adds_missing_spec_dirs_and_keeps_the_admins(tmp_path: Path) -> None:
    """The runtime must read where cdi-fuse writes; directories other devices use stay (with their comments)."""
    path = tmp_path / "config.toml"
    path.write_text(
        f"version = 3\n[plugins.'{CRI_V3}']\n  cdi_spec_dirs = [\n    '/opt/vendor/cdi',  # GPU specs\n  ]\n"
    )

    result = config.apply_containerd_config(path, spec_dirs=["/var/run/cdi"])

    text = path.read_text()
    assert tomllib.loads(text)["plugins"][CRI_V3]["cdi_spec_dirs"] == ["/opt/vendor/cdi", "/var/run/cdi"]
    assert "# GPU specs" in text
    assert result.changes[-1] == (
        f'plugins.{CRI_V3!r}.cdi_spec_dirs: ["/opt/vendor/cdi"] -> ["/opt/vendor/cdi", "/var/run/cdi"]'
    )


def test_apply_refuses_a_version_1_config_and_leaves_it_alone(fixture_copy) -> None:
    path = fixture_copy("containerd-v1.toml")
    original = path.read_bytes()

    with pytest.raises(errors.RuntimeConfigVersionError, match="version 1") as caught:
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
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    assert result.backup is None
    assert result.changed
    assert "no containerd endpoint given" in result.message


@pytest.mark.parametrize(
    ("runtime_version", "version", "table"),
    [pytest.param("v2.1.4", 3, CRI_V3, id="containerd-2.x"), pytest.param("1.7.24", 2, CRI_V2, id="containerd-1.7")],
)
def test_apply_creates_the_version_the_running_containerd_reads(
    tmp_path: Path, runtime_version: str, version: int, table: str
) -> None:
    """Regression: with no config file and a containerd 2.x endpoint, apply wrote a version 2 file."""
    path = tmp_path / "config.toml"

    with serve_fake_cri(runtime_name="containerd", runtime_version=runtime_version, config=containerd_config()) as ep:
        result = config.apply_containerd_config(path, runtime_endpoint=ep)

    data = tomllib.loads(path.read_text())
    assert data["version"] == version
    assert data["plugins"][table]["enable_cdi"] is True
    assert f"containerd {runtime_version} at {ep} reads config version {version}" in result.message


def test_apply_asks_nobody_when_the_file_declares_its_version(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("version = 2\n")

    # an endpoint that would say 2.x: the file's own version wins and nothing is asked
    result = config.apply_containerd_config(path, runtime_endpoint=f"unix://{tmp_path}/absent.sock")

    assert tomllib.loads(path.read_text())["plugins"][CRI_V2]["enable_cdi"] is True
    assert result.notes == ()


def test_apply_wraps_a_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("version = 2\n[plugins\n")

    with pytest.raises(errors.RuntimeConfigSyntaxError, match=r"cannot parse .* as TOML") as caught:
        config.apply_containerd_config(path)

    assert isinstance(caught.value.__cause__, tomllib.TOMLDecodeError | tomlkit.exceptions.ParseError)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param(f'version = 2\n[plugins]\n"{CRI_V2}" = "off"\n', f"'{CRI_V2}' is a str, not a table", id="string"),
        pytest.param("version = 2\nplugins = 3\n", "'plugins' is a int, not a table", id="plugins-int"),
        pytest.param(f'version = 2\n[[plugins."{CRI_V2}"]]\n', "is an array of tables", id="array-of-tables"),
        pytest.param(
            f'version = 2\n[plugins."{CRI_V2}"]\ncdi_spec_dirs = "/etc/cdi"\n',
            'cdi_spec_dirs is "/etc/cdi", not a list of directories',
            id="spec-dirs-string",
        ),
    ],
)
def test_apply_refuses_a_layout_it_cannot_extend(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)

    with pytest.raises(errors.RuntimeConfigLayoutError, match=needle):
        config.apply_containerd_config(path)

    assert path.read_text() == text


def test_apply_refuses_an_edit_that_would_change_other_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard: the written text must read as the old settings plus the CDI ones, or nothing is written."""
    path = tmp_path / "config.toml"
    text = f'version = 2\n[plugins."{CRI_V2}"]\n  sandbox_image = "pause:3.9"\n'
    path.write_text(text)
    real_dumps = tomlkit.dumps
    monkeypatch.setattr(tomlkit, "dumps", lambda doc: real_dumps(doc).replace("pause:3.9", "pause:3.10"))

    with pytest.raises(errors.RuntimeConfigLayoutError, match=r"add these by hand: .*enable_cdi: \(unset\) -> true"):
        config.apply_containerd_config(path)

    assert path.read_text() == text
    assert _backups(path) == []


@pytest.mark.parametrize(
    ("prepare", "error", "needle"),
    [
        pytest.param("parent-is-a-file", errors.RuntimeConfigReadError, "cannot read", id="parent-is-a-file"),
        pytest.param("not-utf8", errors.RuntimeConfigReadError, "is not UTF-8 text", id="not-utf8"),
        pytest.param("symlink", errors.RuntimeConfigWriteError, "is a symbolic link", id="symlink"),
    ],
)
def test_apply_reports_what_it_cannot_read_or_replace(
    tmp_path: Path, prepare: str, error: type[errors.RuntimeConfigError], needle: str
) -> None:
    path = tmp_path / "config.toml"
    if prepare == "parent-is-a-file":
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "config.toml"
    elif prepare == "not-utf8":
        path.write_bytes(b"version = 2\n# caf\xe9\n")
    else:
        (tmp_path / "real.toml").write_text("version = 2\n")
        path.symlink_to(tmp_path / "real.toml")

    with pytest.raises(error, match=needle) as caught:
        config.apply_containerd_config(path)

    assert caught.value.path == path
    if prepare == "symlink":
        assert path.is_symlink() and (tmp_path / "real.toml").read_text() == "version = 2\n"
        assert str(tmp_path / "real.toml") in str(caught.value)


def test_apply_reports_an_unwritable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text("version = 2\n")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)

    with pytest.raises(errors.RuntimeConfigWriteError, match=r"cannot write config .*No space left on device"):
        config.apply_containerd_config(path)

    assert path.read_text() == "version = 2\n"
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_apply_keeps_the_files_owner(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("version = 2\n")
    os.chown(path, 1234, 5678)
    path.chmod(0o640)

    config.apply_containerd_config(path)

    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1234, 5678, 0o640)


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


@pytest.mark.parametrize("name", [*CRASHED, "containerd-2.1-default-without-cdi.toml"])
def test_apply_to_indented_tables_without_enable_cdi(tmp_path: Path, name: str) -> None:
    path = tmp_path / "config.toml"
    if name in CRASHED:
        path.write_text(CRASHED[name])
    else:  # `containerd config default` of containerd 2.1.9 (Debian sid) with its enable_cdi/cdi_spec_dirs lines cut
        shutil.copyfile(DATA / name, path)
    original = path.read_text()
    version = tomllib.loads(original)["version"]
    table = CRI_V3 if version == 3 else CRI_V2

    result = config.apply_containerd_config(path)

    text = path.read_text()
    data = tomllib.loads(text)
    assert data["plugins"][table]["enable_cdi"] is True
    assert data["plugins"][table]["cdi_spec_dirs"] == ["/etc/cdi", "/var/run/cdi"]
    assert _without(data, ("plugins", table), {"enable_cdi", "cdi_spec_dirs"}) == tomllib.loads(original)
    assert _comments(text) == _comments(original)
    assert [c.split(":")[0] for c in result.changes] == [
        f"plugins.{table!r}.enable_cdi",
        f"plugins.{table!r}.cdi_spec_dirs",
    ]
    # the added keys line up with the table's other keys
    indent = next(line for line in original.splitlines() if "restrict_oom_score_adj" in line or "sandbox_image" in line)
    indent = indent[: len(indent) - len(indent.lstrip())]
    assert f"{indent}enable_cdi = true" in text.splitlines()
    assert not config.apply_containerd_config(path).changed


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
    assert Path("/etc/containerd/config.toml") == defaults.CONTAINERD_CONFIG
    assert Path("/etc/crio/crio.conf.d/10-cdi.conf") == defaults.CRIO_DROP_IN


def test_all_is_complete() -> None:
    public = {name for name in vars(config) if not name.startswith("_")}
    imported = {"annotations", "contextlib", "copy", "datetime", "logging", "os", "re", "shutil", "tomllib", "tomlkit"}
    imported |= {"Any", "Final", "Sequence", "dataclass", "Path", "errors", "files", "cri", "defaults"}
    assert set(config.__all__) == public - imported
