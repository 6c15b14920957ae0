"""cdi/versions.py: the minimum cdiVersion a spec's content needs, and validate_version."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdi_fuse import errors
from cdi_fuse.cdi import compat, models, versions

BASE_EDITS: dict[str, Any] = {"deviceNodes": [{"path": "/dev/x"}]}


def make_spec(
    *,
    version: str = "1.1.0",
    kind: str = "vendor.com/device",
    device_name: str = "dev",
    spec_edits: dict[str, Any] | None = None,
    device_edits: dict[str, Any] | None = None,
    spec_annotations: dict[str, str] | None = None,
    device_annotations: dict[str, str] | None = None,
) -> models.Spec:
    device: dict[str, Any] = {"name": device_name, "containerEdits": copy.deepcopy(device_edits or BASE_EDITS)}
    if device_annotations is not None:
        device["annotations"] = device_annotations
    data: dict[str, Any] = {"cdiVersion": version, "kind": kind, "devices": [device]}
    if spec_edits is not None:
        data["containerEdits"] = spec_edits
    if spec_annotations is not None:
        data["annotations"] = spec_annotations
    return models.Spec.model_validate(data)


# (id, edits that need the version, the version) — each is tried in spec-level and device-level edits.
EDIT_FEATURES = [
    pytest.param({"env": ["A=1"]}, "0.3.0", id="env-only"),
    pytest.param({"mounts": [{"hostPath": "/a", "containerPath": "/b"}]}, "0.3.0", id="mount-without-type"),
    pytest.param({"mounts": [{"hostPath": "/a", "containerPath": "/b", "type": ""}]}, "0.3.0", id="mount-empty-type"),
    pytest.param({"mounts": [{"hostPath": "/a", "containerPath": "/b", "type": "bind"}]}, "0.4.0", id="mount-type"),
    pytest.param({"deviceNodes": [{"path": "/dev/x", "hostPath": "/host/x"}]}, "0.5.0", id="devicenode-hostpath"),
    pytest.param({"intelRdt": {"closID": "c"}}, "0.7.0", id="intelrdt"),
    pytest.param({"intelRdt": {}}, "0.7.0", id="intelrdt-empty"),
    pytest.param({"intelRdt": {"enableMonitoring": False}}, "0.7.0", id="intelrdt-monitoring-false"),
    pytest.param({"additionalGids": [5]}, "0.7.0", id="additional-gids"),
    pytest.param({"additionalGids": []}, "0.3.0", id="additional-gids-empty"),
    pytest.param({"intelRdt": {"schemata": ["L3:0=f"]}}, "1.1.0", id="intelrdt-schemata"),
    pytest.param({"intelRdt": {"enableMonitoring": True}}, "1.1.0", id="intelrdt-monitoring"),
    pytest.param({"netDevices": [{"hostInterfaceName": "eth0", "name": "net0"}]}, "1.1.0", id="net-devices"),
]


@pytest.mark.parametrize(("edits", "needed"), EDIT_FEATURES)
def test_minimum_version_of_device_edits(edits: dict[str, Any], needed: str) -> None:
    assert versions.minimum_version(make_spec(device_edits=edits)) == needed


@pytest.mark.parametrize(("edits", "needed"), EDIT_FEATURES)
def test_minimum_version_of_spec_edits(edits: dict[str, Any], needed: str) -> None:
    assert versions.minimum_version(make_spec(spec_edits=edits)) == needed


@pytest.mark.parametrize(
    ("spec", "needed"),
    [
        pytest.param(make_spec(), "0.3.0", id="base"),
        pytest.param(make_spec(device_name="0fuse"), "0.5.0", id="device-name-digit-start"),
        pytest.param(make_spec(device_name="fuse0"), "0.3.0", id="device-name-digit-end"),
        pytest.param(make_spec(spec_annotations={"a": "b"}), "0.6.0", id="spec-annotations"),
        pytest.param(make_spec(device_annotations={"a": "b"}), "0.6.0", id="device-annotations"),
        pytest.param(make_spec(spec_annotations={}, device_annotations={}), "0.3.0", id="empty-annotations"),
        pytest.param(make_spec(kind="vendor/cl.ass"), "0.6.0", id="dot-in-class"),
        pytest.param(make_spec(kind="ven.dor/class"), "0.3.0", id="dot-in-vendor-only"),
        pytest.param(
            make_spec(kind="v/c.x", device_edits={"netDevices": [{"hostInterfaceName": "a", "name": "b"}]}),
            "1.1.0",
            id="newest-need-wins",
        ),
        pytest.param(
            make_spec(
                device_name="0x", spec_edits={"mounts": [{"hostPath": "/a", "containerPath": "/b", "type": "t"}]}
            ),
            "0.5.0",
            id="highest-of-two-needs",
        ),
    ],
)
def test_minimum_version(spec: models.Spec, needed: str) -> None:
    assert versions.minimum_version(spec) == needed


def _lower_versions(version: str) -> list[str]:
    return [v for v in versions.VALID_VERSIONS if versions.version_key(v) < versions.version_key(version)]


@pytest.mark.parametrize(("edits", "needed"), [p for p in EDIT_FEATURES if p.values[1] != "0.3.0"])
def test_declaring_less_than_needed_is_invalid(edits: dict[str, Any], needed: str) -> None:
    for declared in _lower_versions(needed):
        spec = make_spec(version=declared, device_edits=edits)
        with pytest.raises(errors.SpecVersionError) as info:
            versions.validate_version(spec)
        assert info.value.message == f"the spec version must be at least v{needed} (declared {declared!r})"
        assert info.value.location == "cdiVersion"
    for declared in versions.VALID_VERSIONS[versions.VALID_VERSIONS.index(needed) :]:
        versions.validate_version(make_spec(version=declared, device_edits=edits))


@pytest.mark.parametrize(
    ("kwargs", "needed"),
    [
        pytest.param({"device_name": "0fuse"}, "0.5.0", id="digit-device-name"),
        pytest.param({"spec_annotations": {"a": "b"}}, "0.6.0", id="spec-annotations"),
        pytest.param({"device_annotations": {"a": "b"}}, "0.6.0", id="device-annotations"),
        pytest.param({"kind": "vendor/cl.ass"}, "0.6.0", id="dot-in-class"),
    ],
)
def test_declaring_less_than_needed_is_invalid_for_names(kwargs: dict[str, Any], needed: str) -> None:
    below = _lower_versions(needed)[-1]
    with pytest.raises(errors.SpecVersionError, match=rf"the spec version must be at least v{needed}"):
        versions.validate_version(make_spec(version=below, **kwargs))
    versions.validate_version(make_spec(version=needed, **kwargs))


@pytest.mark.parametrize("version", ["1.2.0", "abc", "", "0.3", "1.0.0.0", "vv0.3.0", "V0.3.0"])
def test_unknown_versions_are_invalid(version: str) -> None:
    assert not versions.is_valid_version(version)
    with pytest.raises(errors.SpecVersionError, match=rf"invalid version {version!r}: known versions are 0.3.0, "):
        versions.validate_version(make_spec(version=version))


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "v0.1.0"])
def test_pre_release_versions_are_below_the_minimum(version: str) -> None:
    # The library knows 0.1.0 and 0.2.0 and refuses them as below 0.3.0 (the reference oracle's message).
    assert not versions.is_valid_version(version)
    with pytest.raises(errors.SpecVersionError, match=rf"must be at least v0\.3\.0 \(declared {version!r}\)"):
        versions.validate_version(make_spec(version=version))


@pytest.mark.parametrize("version", ["v0.3.0", "v1.0.0"])
def test_one_leading_v_is_accepted_on_load(version: str) -> None:
    # The library strips one leading 'v' before comparing (the reference oracle loads such files); we never write it.
    assert not versions.is_valid_version(version)
    versions.validate_version(make_spec(version=version))


def test_versions_a_library_does_not_know_yet() -> None:
    spec = make_spec(version="1.1.0")
    versions.validate_version(spec, compat.LIBRARIES["1.1"])
    with pytest.raises(errors.SpecVersionError, match=r"invalid version '1.1.0': CDI library 1.0 knows versions up"):
        versions.validate_version(spec, compat.LIBRARIES["1.0"])


@pytest.mark.parametrize("version", ["0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0", "1.0.0", "1.1.0"])
def test_released_versions_are_valid(version: str) -> None:
    assert versions.is_valid_version(version)
    versions.validate_version(make_spec(version=version))


def test_version_table() -> None:
    assert versions.EARLIEST_VERSION == "0.3.0"
    assert versions.VALID_VERSIONS[-1] == "1.1.0"
    assert list(versions.VALID_VERSIONS) == sorted(versions.VALID_VERSIONS, key=versions.version_key)
    assert versions.version_key("1.10.0") > versions.version_key("1.9.0")


def test_version_error_is_a_spec_error() -> None:
    assert issubclass(errors.SpecVersionError, errors.SpecError)


# --- property: the minimum version is always accepted, and nothing below it -----------------------------------------

_names = st.from_regex(r"[A-Za-z]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_device_names = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_.:-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_maybe_annotations = st.one_of(st.none(), st.dictionaries(st.sampled_from(["a", "b.io/c"]), st.just("v"), max_size=2))


@st.composite
def _edits(draw: st.DrawFn) -> models.ContainerEdits:
    # Models are built by Python field name (hypothesis' builds() would also fill the camelCase aliases).
    nodes = [
        models.DeviceNode(path="/dev/x", host_path=host_path)
        for host_path in draw(st.lists(st.sampled_from([None, "", "/host/dev/x"]), max_size=2))
    ]
    mounts = [
        models.Mount(host_path="/a", container_path="/b", type=mount_type)
        for mount_type in draw(st.lists(st.sampled_from([None, "", "bind"]), max_size=2))
    ]
    rdt = None
    if draw(st.booleans()):
        rdt = models.IntelRdt(
            clos_id=draw(st.sampled_from([None, "c"])),
            schemata=draw(st.sampled_from([None, [], ["L3:0=f"]])),
            enable_monitoring=draw(st.sampled_from([None, False, True])),
        )
    gids = draw(st.sampled_from([None, [], [5]]))
    nets = draw(st.sampled_from([None, [], [models.NetDevice(host_interface_name="eth0", name="net0")]]))
    return models.ContainerEdits(
        env=["A=1"], device_nodes=nodes, mounts=mounts, intel_rdt=rdt, additional_gids=gids, net_devices=nets
    )


@st.composite
def _specs(draw: st.DrawFn) -> models.Spec:
    devices = [
        models.Device(name=name, annotations=draw(_maybe_annotations), container_edits=draw(_edits()))
        for name in draw(st.lists(_device_names, min_size=1, max_size=3, unique=True))
    ]
    return models.Spec(
        cdi_version="0.3.0",
        kind=f"{draw(_names)}/{draw(_names)}",
        annotations=draw(_maybe_annotations),
        devices=devices,
        container_edits=draw(st.one_of(st.none(), _edits())),
    )


@settings(max_examples=150, deadline=None)
@given(_specs())
def test_minimum_version_is_always_accepted(spec: models.Spec) -> None:
    needed = versions.minimum_version(spec)
    assert needed in versions.VALID_VERSIONS
    for version in versions.VALID_VERSIONS:
        spec.cdi_version = version
        if versions.version_key(version) >= versions.version_key(needed):
            versions.validate_version(spec)
        else:
            with pytest.raises(errors.SpecVersionError, match=rf"at least v{needed} "):
                versions.validate_version(spec)
