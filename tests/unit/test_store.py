"""cdi/store.py: loading spec files, atomic writes, and scanning spec dirs like the runtimes' cache."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cdi_fuse import defaults, errors
from cdi_fuse.cdi import compat, models, names, report, specdirs, store, validation, versions
from cdi_fuse.node import fuse


def fuse_spec(
    device: fuse.FuseDevice, *, vendor: str = "cdi-fuse.io", cls: str = "fuse", name: str = "fuse", **kw: Any
) -> models.Spec:
    return fuse.build_fuse_spec(device, vendor=vendor, cls=cls, device_name=name, **kw)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --- write_spec ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_write_round_trip(tmp_path: Path, fuse_device: fuse.FuseDevice, suffix: str) -> None:
    spec = fuse_spec(fuse_device)
    path = tmp_path / f"cdi-fuse.io-fuse{suffix}"
    result = store.write_spec(spec, path)
    assert result == store.WriteResult(path, changed=True, content=path.read_bytes())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert store.read_spec(path) == spec
    assert path.read_text() == store.encode_spec(spec, "json" if suffix == ".json" else "yaml")
    # A no-overwrite write of different content fails and leaves the file as it was.
    other = fuse_spec(fuse_device, name="other")
    with pytest.raises(errors.SpecWriteError, match="exists and overwriting was not asked for") as info:
        store.write_spec(other, path, overwrite=False)
    assert info.value.path == path
    assert store.read_spec(path) == spec
    # Overwriting (the default) replaces it.
    assert store.write_spec(other, path).changed
    assert store.read_spec(path) == other
    assert leftovers(tmp_path) == []


def test_write_without_overwrite_creates_a_new_file(tmp_path: Path, fuse_device: fuse.FuseDevice) -> None:
    path = tmp_path / "new.yaml"
    assert store.write_spec(fuse_spec(fuse_device), path, overwrite=False).changed
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.stat().st_nlink == 1  # the temp link was removed
    assert leftovers(tmp_path) == []


def test_unchanged_content_is_not_rewritten(tmp_path: Path, fuse_device: fuse.FuseDevice) -> None:
    spec = fuse_spec(fuse_device)
    path = tmp_path / "spec.yaml"
    store.write_spec(spec, path)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = path.stat()
    assert store.write_spec(spec, path) == store.WriteResult(path, changed=False, content=path.read_bytes())
    assert store.write_spec(spec, path, overwrite=False).changed is False
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, 1_000_000_000)


def test_format_follows_the_extension_unless_given(tmp_path: Path, fuse_device: fuse.FuseDevice) -> None:
    spec = fuse_spec(fuse_device)
    store.write_spec(spec, tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text()) == models.dump_spec(spec)
    store.write_spec(spec, tmp_path / "b.json", fmt="yaml")
    assert (tmp_path / "b.json").read_text().startswith("cdiVersion: 0.3.0\n")
    store.write_spec(spec, tmp_path / "c.spec")
    assert (tmp_path / "c.spec").read_text() == store.encode_spec(spec, "yaml")


def test_symlink_target_is_refused(tmp_path: Path, fuse_device: fuse.FuseDevice) -> None:
    target = tmp_path / "elsewhere" / "passwd"
    target.parent.mkdir()
    target.write_text("root:x:0:0\n")
    link = tmp_path / "cdi" / "spec.yaml"
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(errors.SpecWriteError, match="refusing to write through symbolic link"):
        store.write_spec(fuse_spec(fuse_device), link)
    assert target.read_text() == "root:x:0:0\n"
    assert link.is_symlink()
    assert leftovers(link.parent) == []


def test_dangling_symlink_is_refused(tmp_path: Path, fuse_device: fuse.FuseDevice) -> None:
    link = tmp_path / "spec.yaml"
    link.symlink_to(tmp_path / "missing")
    with pytest.raises(errors.SpecWriteError, match="symbolic link"):
        store.write_spec(fuse_spec(fuse_device), link)
    assert not (tmp_path / "missing").exists()


def test_directory_at_the_target_is_refused(tmp_path: Path, fuse_device: fuse.FuseDevice) -> None:
    (tmp_path / "spec.yaml").mkdir()
    with pytest.raises(errors.SpecWriteError, match="is a directory"):
        store.write_spec(fuse_spec(fuse_device), tmp_path / "spec.yaml")


def test_missing_dirs_are_created_0755_whatever_the_umask(tmp_path: Path, fuse_device: fuse.FuseDevice) -> None:
    # Regression: mkdir's mode was masked by the umask, so a 077 umask left /etc/cdi unreadable (0700).
    path = tmp_path / "etc" / "cdi" / "spec.yaml"
    old_umask = os.umask(0o077)
    try:
        store.write_spec(fuse_spec(fuse_device), path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "etc").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "etc" / "cdi").stat().st_mode) == 0o755
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_existing_dir_mode_is_left_alone(tmp_path: Path, fuse_device: fuse.FuseDevice) -> None:
    directory = tmp_path / "cdi"
    directory.mkdir(mode=0o750)
    os.chmod(directory, 0o750)
    store.write_spec(fuse_spec(fuse_device), directory / "spec.yaml")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750


@pytest.mark.parametrize("overwrite", [True, False])
def test_failed_write_leaves_no_temp_file_and_old_content(
    tmp_path: Path, fuse_device: fuse.FuseDevice, monkeypatch: pytest.MonkeyPatch, overwrite: bool
) -> None:
    path = tmp_path / "spec.yaml"
    if overwrite:
        path.write_text("old content\n")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace" if overwrite else "link", fail)
    with pytest.raises(errors.SpecWriteError, match="No space left on device") as info:
        store.write_spec(fuse_spec(fuse_device), path, overwrite=overwrite)
    assert isinstance(info.value.__cause__, OSError)
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == (["spec.yaml"] if overwrite else [])
    if overwrite:
        assert path.read_text() == "old content\n"


def test_invalid_spec_is_not_written(tmp_path: Path, fuse_device: fuse.FuseDevice) -> None:
    spec = fuse_spec(fuse_device, permissions="rwx")
    with pytest.raises(errors.SpecError, match="invalid permissions 'rwx'"):
        store.write_spec(spec, tmp_path / "cdi" / "spec.yaml")
    assert not (tmp_path / "cdi").exists()


def test_uncreatable_dir_is_a_write_error(tmp_path: Path, fuse_device: fuse.FuseDevice) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(errors.SpecWriteError, match="cannot create spec directory"):
        store.write_spec(fuse_spec(fuse_device), tmp_path / "file" / "cdi" / "spec.yaml")


# --- encode / load ------------------------------------------------------------------------------------------------


def test_encode_spec(fuse_device: fuse.FuseDevice) -> None:
    spec = fuse_spec(fuse_device)
    assert store.encode_spec(spec) == (
        "cdiVersion: 0.3.0\nkind: cdi-fuse.io/fuse\ndevices:\n- name: fuse\n  containerEdits:\n    deviceNodes:\n"
        "    - path: /dev/fuse\n      type: c\n      major: 10\n      minor: 229\n      permissions: rw\n"
    )
    encoded = store.encode_spec(spec, "json")
    assert encoded.endswith("}\n")
    assert json.loads(encoded) == models.dump_spec(spec)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.json", "json"), ("a.yaml", "yaml"), ("a.yml", "yaml"), ("a", "yaml"), ("a.JSON", "yaml")],
)
def test_format_for_path(name: str, fmt: str) -> None:
    assert store.format_for_path(Path(name)) == fmt


def test_load_spec_data_reads_yaml_and_json(tmp_path: Path, minimal_spec: dict[str, Any]) -> None:
    (tmp_path / "a.json").write_text(json.dumps(minimal_spec))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(minimal_spec))
    assert store.load_spec_data(tmp_path / "a.json") == minimal_spec
    assert store.load_spec_data(tmp_path / "a.yaml") == minimal_spec


# The runtimes' library reads JSON as YAML too (go-yaml v2): its messages, and what it accepts (a trailing comma in
# a JSON object is valid YAML flow syntax). tests/conformance/test_reference_oracle.py checks these verdicts.
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param("a.yaml", b"kind: \xff\xfe\n", "yaml: invalid UTF-8 at byte 6", id="not-utf8"),
        pytest.param("a.yaml", b"a: [1, 2\n", "yaml: line 2, column 1: expected ',' or ']'", id="yaml-unclosed"),
        pytest.param(
            "a.yaml", b"a: 1\nb: 2\na: 3\n", "yaml: line 3: key 'a' already set in map", id="yaml-duplicate-key"
        ),
        pytest.param(
            "a.yaml",
            b"a:\n  b: 1\n  b: 1\n",
            "yaml: line 3: key 'b' already set in map",
            id="yaml-nested-duplicate-key",
        ),
        # Regression: an unhashable (list) key escaped as a TypeError instead of a SpecError.
        pytest.param("a.yaml", b"? [a, b]\n: 1\n", "yaml: invalid map key at line 1", id="yaml-unhashable-key"),
        pytest.param("a.json", b"", "no spec data: the document is empty or null", id="json-empty"),
        # Regression: json.loads kept the last of two equal keys, silently dropping e.g. a "devices" list.
        pytest.param(
            "a.json", b'{"kind": "a/b", "kind": "c/d"}', "yaml: line 1: key 'kind' already set in map", id="json-dup"
        ),
        pytest.param(
            "a.json", b'{"a": {"b": 1, "b": 1}}', "yaml: line 1: key 'b' already set in map", id="json-nested-dup"
        ),
        pytest.param("a.json", b"[" * 100_000, "yaml: ", id="json-too-deep"),
        pytest.param("a.yaml", b"[" * 1_000 + b"]" * 1_000, "yaml: nested too deeply", id="yaml-too-deep"),
        pytest.param("a.yaml", b"- a\n", "not a CDI spec: the top level must be a mapping", id="not-a-mapping"),
    ],
)
def test_read_spec_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(errors.SpecError) as info:
        store.read_spec(path)
    assert info.value.message.startswith(message), info.value.message
    assert info.value.path == path


@pytest.mark.parametrize(
    ("name", "text"),
    [
        pytest.param("a.json", '{"a": 1, "b": [2,],}', id="json-trailing-commas"),
        pytest.param("a.yaml", "a: !!python/object:os.system {}\n", id="yaml-unknown-tag"),
        pytest.param("a.yaml", "{}\n---\n[: x\n", id="first-document-only"),
    ],
)
def test_load_spec_data_reads_as_the_library_does(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert isinstance(store.load_spec_data(path), dict)


def test_read_spec_as_the_library_reads_it(tmp_path: Path) -> None:
    # Regressions of the old PyYAML reading: the runtimes load a 'v' prefix, whole-number floats, non-string
    # scalars for string fields, and field names in any letter case (tests/data/specs and the oracle agree).
    path = tmp_path / "a.yaml"
    path.write_text(
        "cdiVersion: v0.5.0\nKind: vendor.com/device\n"
        "devices: [{name: 10, containerEdits: {deviceNodes: [{path: /dev/x, major: 10.0}]}}]\n"
    )
    spec = store.read_spec(path)
    assert (spec.cdi_version, spec.kind, spec.devices[0].name) == ("v0.5.0", "vendor.com/device", "10")
    nodes = spec.devices[0].container_edits.device_nodes
    assert nodes is not None and nodes[0].major == 10


def test_read_spec_against_an_older_library(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("cdiVersion: 1.1.0\nkind: vendor.com/device\ndevices: [{name: d, containerEdits: {env: [A=1]}}]\n")
    assert store.read_spec(path).cdi_version == "1.1.0"
    with pytest.raises(errors.SpecVersionError, match=r"invalid version '1.1.0': CDI library 1.0 knows versions up"):
        store.read_spec(path, library=compat.LIBRARIES["1.0"])


def test_yaml_merge_keys_are_plain_yaml(tmp_path: Path) -> None:
    # Regression: `<<` merge keys were reported as malformed YAML (no constructor for the merge tag).
    path = tmp_path / "a.yaml"
    path.write_text("base: &b {p: 1, q: 2}\nuse:\n  <<: *b\n  r: 3\n")
    assert store.load_spec_data(path) == {"base": {"p": 1, "q": 2}, "use": {"p": 1, "q": 2, "r": 3}}
    # go-yaml v2 (strict) refuses a key that a merge already set.
    path.write_text("base: &b {p: 1, q: 2}\nuse:\n  <<: *b\n  q: 3\n")
    with pytest.raises(errors.SpecError, match="key 'q' already set in map"):
        store.load_spec_data(path)


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * store.MAX_SPEC_SIZE + b"\n")
    with pytest.raises(errors.SpecError, match=r"spec file larger than 1048576 bytes"):
        store.load_spec_data(path)
    exactly = tmp_path / "big.json"
    exactly.write_bytes(b" " * (store.MAX_SPEC_SIZE - 2) + b"{}")
    assert store.load_spec_data(exactly) == {}


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(errors.SpecError, match="cannot read spec: No such file or directory"):
        store.read_spec(tmp_path / "missing.yaml")


def test_read_spec_sets_the_path_on_semantic_errors(tmp_path: Path, minimal_spec: dict[str, Any]) -> None:
    minimal_spec["devices"][0]["containerEdits"]["env"] = ["BAD"]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(minimal_spec))
    with pytest.raises(errors.SpecError) as info:
        store.read_spec(path)
    assert info.value.path == path
    assert str(info.value) == (
        f"{path}: devices[0].containerEdits.env[0]: invalid environment variable 'BAD': expected KEY=VALUE"
    )


# --- scan_spec_dirs -----------------------------------------------------------------------------------------------


def write_spec_file(path: Path, *device_names: str, kind: str = "vendor.com/device") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "cdiVersion": "0.5.0",
        "kind": kind,
        "devices": [{"name": n, "containerEdits": {"env": [f"DEV={n}"]}} for n in device_names],
    }
    path.write_text(json.dumps(data) if path.suffix == ".json" else yaml.safe_dump(data))
    return path


def test_scan_later_dir_wins(tmp_path: Path) -> None:
    etc, run = tmp_path / "etc", tmp_path / "run"
    low = write_spec_file(etc / "a.yaml", "dev0", "dev1")
    high = write_spec_file(run / "b.json", "dev1")
    registry = store.scan_spec_dirs([etc, run])
    assert registry.spec_dirs == (etc, run)
    assert registry.devices == {
        "vendor.com/device=dev0": specdirs.SpecDevice("vendor.com/device=dev0", low, 0),
        "vendor.com/device=dev1": specdirs.SpecDevice("vendor.com/device=dev1", high, 1),
    }
    assert registry.resolve("vendor.com/device=dev1") == specdirs.SpecDevice("vendor.com/device=dev1", high, 1)
    assert registry.resolve("vendor.com/device=nope") is None
    assert registry.conflicts == {}
    assert registry.spec_errors == {}
    # Reversed order, reversed winner.
    assert store.scan_spec_dirs([run, etc]).devices["vendor.com/device=dev1"].path == low


def test_scan_ignores_other_extensions_and_subdirectories(tmp_path: Path) -> None:
    write_spec_file(tmp_path / "a.yml", "yml")
    write_spec_file(tmp_path / "a.txt", "txt")
    write_spec_file(tmp_path / "sub" / "a.yaml", "sub")
    (tmp_path / "dir.yaml").mkdir()
    good = write_spec_file(tmp_path / "z.yaml", "z")
    registry = store.scan_spec_dirs([tmp_path])
    assert list(registry.devices) == ["vendor.com/device=z"]
    assert registry.devices["vendor.com/device=z"].path == good
    assert registry.spec_errors == {}


def test_scan_skips_missing_dirs(tmp_path: Path) -> None:
    write_spec_file(tmp_path / "run" / "a.yaml", "dev0")
    (tmp_path / "not-a-dir").write_text("")
    registry = store.scan_spec_dirs([tmp_path / "missing", tmp_path / "not-a-dir", tmp_path / "run"])
    assert list(registry.devices) == ["vendor.com/device=dev0"]
    assert registry.devices["vendor.com/device=dev0"].priority == 2


def test_scan_records_a_bad_file_and_goes_on(tmp_path: Path) -> None:
    bad = tmp_path / "a-bad.yaml"
    bad.write_text("cdiVersion: 0.3.0\nkind: vendor.com/device\ndevices: []\n")
    broken = tmp_path / "b-broken.json"
    broken.write_text("{")
    write_spec_file(tmp_path / "c-good.yaml", "dev0")
    registry = store.scan_spec_dirs([tmp_path])
    assert list(registry.devices) == ["vendor.com/device=dev0"]
    assert registry.spec_errors == {
        bad: "devices: invalid spec, no devices",
        broken: "yaml: line 1, column 2: expected the node content, but found '<stream end>'",
    }


def test_same_priority_duplicate_is_a_conflict_and_not_listed(tmp_path: Path) -> None:
    first = write_spec_file(tmp_path / "etc" / "a.yaml", "dup", "only-a")
    second = write_spec_file(tmp_path / "etc" / "b.json", "dup")
    third = write_spec_file(tmp_path / "etc" / "c.yaml", "dup", kind="vendor.com/other")
    registry = store.scan_spec_dirs([tmp_path / "etc"])
    assert sorted(registry.devices) == ["vendor.com/device=only-a", "vendor.com/other=dup"]
    assert registry.devices["vendor.com/other=dup"].path == third
    assert registry.conflicts == {"vendor.com/device=dup": [first, second]}


def test_conflict_lists_every_file(tmp_path: Path) -> None:
    paths = [write_spec_file(tmp_path / f"{i}.yaml", "dup") for i in range(3)]
    registry = store.scan_spec_dirs([tmp_path])
    assert registry.devices == {}
    assert registry.conflicts == {"vendor.com/device=dup": paths}


def test_scan_records_an_unreadable_dir_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: a PermissionError from an unreadable spec dir escaped scan_spec_dirs (`cdi-fuse list` crashed).
    locked, run = tmp_path / "locked", tmp_path / "run"
    write_spec_file(locked / "a.yaml", "hidden")
    write_spec_file(run / "a.yaml", "dev0")
    real_iterdir = Path.iterdir

    def iterdir(self: Path) -> Any:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    registry = store.scan_spec_dirs([locked, run])
    assert list(registry.devices) == ["vendor.com/device=dev0"]
    assert registry.spec_errors == {locked: "cannot scan spec dir: Permission denied"}


def test_scan_default_dirs() -> None:
    assert (Path("/etc/cdi"), Path("/var/run/cdi")) == defaults.SPEC_DIRS


# --- property: generated fuse specs survive encode -> file -> load -> parse, in both formats -----------------------


def _unanchored(pattern: str) -> str:
    return pattern.removeprefix("^").removesuffix("$")


# One-character vendor or class names crash the runtimes' CDI library: the writer refuses them (tested below).
_vendor_class = st.from_regex(_unanchored(names.VENDOR_CLASS_PATTERN), fullmatch=True).filter(
    lambda s: 2 <= len(s) <= 40
)
_device_name = st.from_regex(_unanchored(names.DEVICE_NAME_PATTERN), fullmatch=True).filter(lambda s: len(s) <= 40)
_permissions = st.lists(st.sampled_from("rwm"), unique=True).map("".join)
_numbers = st.integers(min_value=0, max_value=2**32 - 1)


@pytest.fixture(scope="module")
def roundtrip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("roundtrip")


@settings(max_examples=120, deadline=None)
@given(
    vendor=_vendor_class,
    cls=_vendor_class,
    device_name=_device_name,
    major=_numbers,
    minor=_numbers,
    permissions=_permissions,
    host_path=st.sampled_from(["/dev/fuse", "/host/dev/fuse", "/run/host dev/fuse"]),
    data=st.data(),
)
def test_fuse_spec_round_trip(
    roundtrip_dir: Path,
    vendor: str,
    cls: str,
    device_name: str,
    major: int,
    minor: int,
    permissions: str,
    host_path: str,
    data: st.DataObject,
) -> None:
    device = fuse.FuseDevice(path=Path("/dev/fuse"), major=major, minor=minor, mode=0o666, uid=0, gid=0)
    minimum = fuse.build_fuse_spec(
        device, vendor=vendor, cls=cls, device_name=device_name, permissions=permissions, host_path=host_path
    ).cdi_version
    allowed = [v for v in versions.VALID_VERSIONS if versions.version_key(v) >= versions.version_key(minimum)]
    spec = fuse.build_fuse_spec(
        device,
        vendor=vendor,
        cls=cls,
        device_name=device_name,
        permissions=permissions,
        host_path=host_path,
        cdi_version=data.draw(st.sampled_from(allowed), label="cdiVersion"),
    )
    for fmt in ("yaml", "json"):
        path = roundtrip_dir / f"spec.{fmt}"
        path.write_text(store.encode_spec(spec, fmt))
        assert store.load_spec_data(path) == models.dump_spec(spec)
        # Read back as the runtimes' library reads it: what the JSON (no scalar ambiguity) says, which is the spec
        # itself unless a field holds Go's zero value (0, ''), which reads as unset; and no problem at any level.
        read = store.read_spec(path)
        assert read == report.judge_bytes(store.encode_spec(spec, "json").encode()).spec
        if major and minor and permissions:
            assert read == spec
        judged = report.judge_file(path)
        assert judged.errors == []
        assert {p.kind for p in judged.warnings} <= {validation.ProblemKind.COMPATIBILITY}, judged.warnings


@pytest.mark.parametrize(
    "device_name",
    # go-yaml v2 reads these plain scalars as booleans or numbers: unquoted, device "y" would load as "true".
    ["y", "n", "Y", "N", "on", "0o17", "1e3", "0x1F", "1_0", "0b101", "10", "1.5"],
)
def test_yaml_writer_quotes_what_go_yaml_reads_as_another_type(tmp_path: Path, device_name: str) -> None:
    device = fuse.FuseDevice(path=Path("/dev/fuse"), major=10, minor=229, mode=0o666, uid=0, gid=0)
    spec = fuse.build_fuse_spec(device, vendor="vendor.com", cls="fuse", device_name=device_name)
    path = tmp_path / "spec.yaml"
    store.write_spec(spec, path)
    assert store.read_spec(path) == spec


@pytest.mark.parametrize("kind", [("a", "fuse"), ("vendor.com", "b")])
def test_writer_refuses_one_character_vendor_or_class(tmp_path: Path, kind: tuple[str, str]) -> None:
    device = fuse.FuseDevice(path=Path("/dev/fuse"), major=10, minor=229, mode=0o666, uid=0, gid=0)
    spec = fuse.build_fuse_spec(device, vendor=kind[0], cls=kind[1], device_name="fuse")
    with pytest.raises(errors.SpecError, match="crashes the CDI library of every released runtime"):
        store.write_spec(spec, tmp_path / "spec.yaml")
    assert not (tmp_path / "spec.yaml").exists()
