"""node/generate.py: options, output path, build/generate/write, and the golden spec in specs/."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdi_fuse import errors
from cdi_fuse.cdi import models, store, validation
from cdi_fuse.node import fuse, generate

GOLDEN_SPEC = Path(__file__).parent.parent.parent / "specs" / "cdi-fuse.io-fuse.yaml"


@pytest.fixture
def probed(monkeypatch: pytest.MonkeyPatch, fuse_device: fuse.FuseDevice) -> list[tuple[Path, Path]]:
    """Make probe_fuse return a 10:229 device; the list records (device_path, proc_filesystems) per call."""
    calls: list[tuple[Path, Path]] = []

    def probe(device_path: Path, *, proc_filesystems: Path) -> fuse.FuseDevice:
        calls.append((device_path, proc_filesystems))
        return fuse_device

    monkeypatch.setattr(fuse, "probe_fuse", probe)
    return calls


def test_golden_spec_is_what_generate_writes_for_10_229(fuse_device: fuse.FuseDevice) -> None:
    spec = generate.build_spec(generate.GenerateOptions(), device=fuse_device)
    assert GOLDEN_SPEC.read_bytes() == store.encode_spec(spec, "yaml").encode("utf-8")
    assert generate.default_output(generate.GenerateOptions(spec_dir=GOLDEN_SPEC.parent)) == GOLDEN_SPEC


def test_defaults() -> None:
    options = generate.GenerateOptions()
    assert options.qualified_name == "cdi-fuse.io/fuse=fuse"
    assert options.device_path == Path("/dev/fuse")
    assert options.spec_dir == Path("/etc/cdi")
    assert options.permissions == "rw"
    assert options.spec_format == "yaml"
    assert generate.default_output(options) == Path("/etc/cdi/cdi-fuse.io-fuse.yaml")


@pytest.mark.parametrize(
    ("fmt", "output", "spec_format", "path"),
    [
        pytest.param(None, None, "yaml", "/etc/cdi/cdi-fuse.io-fuse.yaml", id="default"),
        pytest.param("json", None, "json", "/etc/cdi/cdi-fuse.io-fuse.json", id="format-json"),
        pytest.param(None, "x.json", "json", "x.json", id="output-json-extension"),
        pytest.param(None, "x.yml", "yaml", "x.yml", id="output-yml-extension"),
        pytest.param(None, "x", "yaml", "x", id="output-no-extension"),
        pytest.param("yaml", "x.json", "yaml", "x.json", id="format-beats-extension"),
    ],
)
def test_format_and_output(fmt: store.SpecFormat | None, output: str | None, spec_format: str, path: str) -> None:
    options = generate.GenerateOptions(fmt=fmt, output=Path(output) if output else None)
    assert options.spec_format == spec_format
    assert generate.default_output(options) == Path(path)


def test_build_spec_probes_the_given_paths(probed: list[tuple[Path, Path]], tmp_path: Path) -> None:
    options = generate.GenerateOptions(device_path=tmp_path / "fuse", proc_filesystems=tmp_path / "fs")
    spec = generate.build_spec(options)
    assert probed == [(tmp_path / "fuse", tmp_path / "fs")]
    assert spec.kind == "cdi-fuse.io/fuse"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("vendor", "1bad", "invalid vendor name '1bad'", id="vendor"),
        pytest.param("cls", "bad-", "invalid class name 'bad-'", id="class"),
        pytest.param("device_name", "a/b", "invalid device name 'a/b'", id="device-name"),
        pytest.param("permissions", "rwx", "invalid permissions 'rwx'", id="permissions"),
        pytest.param("spec_version", "9.9.9", "invalid version '9.9.9'", id="unknown-version"),
    ],
)
def test_build_spec_rejects_bad_options(probed: list[tuple[Path, Path]], field: str, value: str, message: str) -> None:
    options = generate.GenerateOptions(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(errors.SpecError, match=message):
        generate.build_spec(options)


def test_names_are_checked_before_probing(probed: list[tuple[Path, Path]]) -> None:
    with pytest.raises(errors.InvalidNameError):
        generate.build_spec(generate.GenerateOptions(vendor=""))
    assert probed == []


def test_declared_version_below_the_minimum_is_refused(probed: list[tuple[Path, Path]]) -> None:
    options = generate.GenerateOptions(cls="fuse.v3", spec_version="0.5.0")
    with pytest.raises(errors.SpecVersionError, match=r"the spec version must be at least v0\.6\.0"):
        generate.build_spec(options)


def test_generate_writes_and_then_is_unchanged(probed: list[tuple[Path, Path]], tmp_path: Path) -> None:
    options = generate.GenerateOptions(spec_dir=tmp_path / "cdi")
    first = generate.generate(options)
    path = tmp_path / "cdi" / "cdi-fuse.io-fuse.yaml"
    assert (first.path, first.changed, first.qualified_name) == (path, True, "cdi-fuse.io/fuse=fuse")
    assert path.read_text() == first.content == GOLDEN_SPEC.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    second = generate.generate(options)
    assert (second.path, second.changed) == (path, False)
    assert generate.file_matches(second.content, path)


def test_generate_json_with_spec_version(probed: list[tuple[Path, Path]], tmp_path: Path) -> None:
    options = generate.GenerateOptions(spec_dir=tmp_path, fmt="json", spec_version="1.1.0")
    result = generate.generate(options)
    assert result.path == tmp_path / "cdi-fuse.io-fuse.json"
    assert json.loads(result.path.read_text())["cdiVersion"] == "1.1.0"


def test_generate_without_write_touches_nothing(probed: list[tuple[Path, Path]], tmp_path: Path) -> None:
    result = generate.generate(generate.GenerateOptions(spec_dir=tmp_path / "cdi"), write=False)
    assert (result.path, result.changed) == (None, False)
    assert result.content == GOLDEN_SPEC.read_text()
    assert not (tmp_path / "cdi").exists()


def test_generate_refuses_a_directory_output(probed: list[tuple[Path, Path]], tmp_path: Path) -> None:
    with pytest.raises(errors.SpecWriteError, match="is a directory") as info:
        generate.generate(generate.GenerateOptions(output=tmp_path))
    assert info.value.path == tmp_path


def test_generate_writes_nothing_when_probing_fails(tmp_path: Path, proc_filesystems: Path) -> None:
    options = generate.GenerateOptions(
        device_path=tmp_path / "no-fuse", spec_dir=tmp_path / "cdi", proc_filesystems=proc_filesystems
    )
    with pytest.raises(errors.DeviceProbeError, match="does not exist"):
        generate.generate(options)
    assert not (tmp_path / "cdi").exists()


@pytest.mark.parametrize(
    ("content", "matches"),
    [
        pytest.param(None, False, id="missing"),
        pytest.param(b"", False, id="empty"),
        pytest.param(b"\xff", False, id="not-utf8"),
        pytest.param(b"golden", True, id="same"),
    ],
)
def test_file_matches(fuse_device: fuse.FuseDevice, tmp_path: Path, content: bytes | None, matches: bool) -> None:
    spec = generate.build_spec(generate.GenerateOptions(), device=fuse_device)
    path = tmp_path / "spec.yaml"
    if content is not None:
        path.write_bytes(GOLDEN_SPEC.read_bytes() if content == b"golden" else content)
    assert generate.file_matches(store.encode_spec(spec, "yaml"), path) is matches
    assert generate.file_matches(store.encode_spec(spec, "json"), path) is False


@pytest.mark.root
def test_generate_from_a_real_char_device(char_device: Path, proc_filesystems: Path, tmp_path: Path) -> None:
    options = generate.GenerateOptions(
        device_path=char_device,
        host_device_path=Path("/dev/fuse"),
        spec_dir=tmp_path / "cdi",
        proc_filesystems=proc_filesystems,
    )
    result = generate.generate(options)
    assert result.path is not None
    assert result.path.read_bytes() == GOLDEN_SPEC.read_bytes()
    assert isinstance(store.read_spec(result.path), models.Spec)


@pytest.mark.parametrize(
    ("device_path", "host_device_path", "host_path", "version"),
    [
        pytest.param("/dev/fuse", None, None, "0.3.0", id="default-no-host-path"),
        pytest.param("/host/dev/fuse", None, "/host/dev/fuse", "0.5.0", id="probed-path-is-host-path"),
        pytest.param("/host/dev/fuse", "/dev/fuse", None, "0.3.0", id="host-sees-dev-fuse"),
        pytest.param("/dev/fuse", "/dev/fuse-alt", "/dev/fuse-alt", "0.5.0", id="host-path-elsewhere"),
    ],
)
def test_host_path(
    probed: list[tuple[Path, Path]],
    device_path: str,
    host_device_path: str | None,
    host_path: str | None,
    version: str,
) -> None:
    options = generate.GenerateOptions(
        device_path=Path(device_path), host_device_path=Path(host_device_path) if host_device_path else None
    )
    spec = generate.build_spec(options)
    nodes = spec.devices[0].container_edits.device_nodes
    assert nodes is not None
    assert (nodes[0].path, nodes[0].host_path, spec.cdi_version) == ("/dev/fuse", host_path, version)
    assert probed[0][0] == Path(device_path)


# --- only the FUSE device is handed out -------------------------------------------------------------------


def test_generate_refuses_dev_null_and_writes_nothing(tmp_path: Path, proc_filesystems: Path) -> None:
    """Regression (issue 11): `generate --device-path /dev/null` wrote a spec for char 1:3."""
    options = generate.GenerateOptions(
        device_path=Path("/dev/null"), spec_dir=tmp_path / "cdi", proc_filesystems=proc_filesystems
    )

    with pytest.raises(errors.UnexpectedDeviceError, match=r"1:3 \(the kernel's 'null'\), not the FUSE misc device"):
        generate.generate(options)

    assert not (tmp_path / "cdi").exists()


def test_generate_hands_out_another_device_only_when_asked(tmp_path: Path, proc_filesystems: Path) -> None:
    options = generate.GenerateOptions(
        device_path=Path("/dev/null"), spec_dir=tmp_path, proc_filesystems=proc_filesystems, allow_other_device=True
    )

    result = generate.generate(options)

    (node,) = result.spec.devices[0].container_edits.device_nodes or []
    assert (node.major, node.minor, node.host_path) == (1, 3, "/dev/null")


def test_a_given_device_is_checked_too(fuse_device: fuse.FuseDevice, tmp_path: Path) -> None:
    other = fuse.FuseDevice(Path("/dev/other"), 10, 230, 0o666, 0, 0)
    options = generate.GenerateOptions(spec_dir=tmp_path, sys_root=tmp_path)

    with pytest.raises(errors.UnexpectedDeviceError):
        generate.build_spec(options, device=other)
    assert generate.build_spec(options, device=fuse_device).devices[0].name == "fuse"


# ---- render: the spec without pydantic (what the plugin writes) is the validated one ---------------------

_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    vendor=st.builds(lambda a, b: f"{a}.{b}", _LABEL.filter(lambda s: s[0].isalpha()), _LABEL),
    cls=st.one_of(_LABEL.filter(lambda s: s[0].isalpha()), st.just("fu.se")),
    device_name=st.one_of(st.just("fuse"), _LABEL, st.just("0fuse")),
    permissions=st.sampled_from(["", "r", "rw", "rwm", "m"]),
    host_path=st.sampled_from([None, "/dev/fuse", "/host/dev/fuse"]),
    spec_version=st.sampled_from([None, "0.6.0", "0.8.0", "1.0.0", "1.1.0"]),
    fmt=st.sampled_from(["yaml", "json"]),
    major=st.integers(0, 4095),
    minor=st.integers(0, 1_048_575),
)
def test_render_is_what_full_validation_accepts_byte_for_byte(
    vendor: str,
    cls: str,
    device_name: str,
    permissions: str,
    host_path: str | None,
    spec_version: str | None,
    fmt: store.SpecFormat,
    major: int,
    minor: int,
) -> None:
    """The plugin writes `render`'s bytes without loading pydantic: for every input `render` accepts, the
    model built from its data passes every rule of the full validation and encodes to the same bytes; and
    what `render` refuses, the full validation refuses too (it only checks what its inputs can get wrong)."""
    device = fuse.FuseDevice(Path("/dev/fuse"), major, minor, 0o666, 0, 0)
    options = generate.GenerateOptions(
        vendor=vendor,
        cls=cls,
        device_name=device_name,
        permissions=permissions,
        spec_version=spec_version,
        fmt=fmt,
        host_device_path=Path(host_path) if host_path else None,
        allow_other_device=True,  # any numbers: the spec, not the device check, is under test
    )
    try:
        rendered = generate.render(options, device)
    except errors.SpecError:
        spec = models.Spec.model_validate(
            fuse.fuse_spec_data(
                device,
                vendor=vendor,
                cls=cls,
                device_name=device_name,
                permissions=permissions,
                cdi_version=spec_version,
                host_path=host_path or "/dev/fuse",
            )
        )
        with pytest.raises(errors.SpecError):
            validation.validate_spec(spec)
        return
    spec = models.Spec.model_validate(rendered.data)
    validation.validate_spec(spec)
    assert store.encode_spec(spec, fmt) == rendered.content
    assert generate.build_spec(options, device) == spec


def test_render_refuses_what_crashes_runtimes_before_probing(probed: list[tuple[Path, Path]]) -> None:
    with pytest.raises(errors.InvalidNameError, match="one-character vendor name 'a' crashes"):
        generate.render(generate.GenerateOptions(vendor="a"))
    assert probed == []
