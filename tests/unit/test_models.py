"""cdi/models.py: strict parsing of CDI spec data, camelCase keys, dumping without unset fields."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from cdi_fuse.cdi import models

FULL_SPEC: dict[str, Any] = {
    "cdiVersion": "1.1.0",
    "kind": "vendor.com/device",
    "annotations": {"a": "b"},
    "devices": [
        {
            "name": "dev0",
            "annotations": {"c": "d"},
            "containerEdits": {
                "env": ["A=1"],
                "deviceNodes": [
                    {
                        "path": "/dev/x",
                        "hostPath": "/host/dev/x",
                        "type": "c",
                        "major": 10,
                        "minor": 229,
                        "fileMode": 438,
                        "permissions": "rw",
                        "uid": 0,
                        "gid": 0,
                    }
                ],
                "hooks": [
                    {"hookName": "createContainer", "path": "/bin/h", "args": ["h"], "env": ["B=2"], "timeout": 5}
                ],
                "mounts": [{"hostPath": "/a", "containerPath": "/b", "options": ["ro"], "type": "bind"}],
                "intelRdt": {
                    "closID": "c",
                    "l3CacheSchema": "L3:0=f",
                    "memBwSchema": "MB:0=50",
                    "schemata": ["L2:0=1"],
                    "enableMonitoring": True,
                },
                "additionalGids": [5, 6],
                "netDevices": [{"hostInterfaceName": "eth0", "name": "net0"}],
            },
        }
    ],
    "containerEdits": {"env": ["C=3"]},
}


def test_every_field_round_trips_through_dump() -> None:
    spec = models.Spec.model_validate(FULL_SPEC)
    assert models.dump_spec(spec) == FULL_SPEC
    node = spec.devices[0].container_edits.device_nodes
    assert node is not None and node[0].host_path == "/host/dev/x" and node[0].file_mode == 0o666
    assert spec.devices[0].container_edits.net_devices == [models.NetDevice(host_interface_name="eth0", name="net0")]


def test_dump_leaves_out_unset_fields(minimal_spec: dict[str, Any]) -> None:
    spec = models.Spec.model_validate(minimal_spec)
    assert models.dump_spec(spec) == minimal_spec


def test_python_names_build_the_same_spec(minimal_spec: dict[str, Any]) -> None:
    built = models.Spec(
        cdi_version="0.3.0",
        kind="vendor.com/device",
        devices=[
            models.Device(
                name="dev0", container_edits=models.ContainerEdits(device_nodes=[models.DeviceNode(path="/dev/dev0")])
            )
        ],
    )
    assert built == models.Spec.model_validate(minimal_spec)


def _with(data: dict[str, Any], where: str, key: str, value: object) -> dict[str, Any]:
    """Set `key` in the mapping at `where` ('' = top, 'device', 'edits', 'node') of a FULL_SPEC copy."""
    import copy

    data = copy.deepcopy(data)
    target = {
        "": data,
        "device": data["devices"][0],
        "edits": data["devices"][0]["containerEdits"],
        "node": data["devices"][0]["containerEdits"]["deviceNodes"][0],
        "hook": data["devices"][0]["containerEdits"]["hooks"][0],
        "mount": data["devices"][0]["containerEdits"]["mounts"][0],
        "rdt": data["devices"][0]["containerEdits"]["intelRdt"],
        "net": data["devices"][0]["containerEdits"]["netDevices"][0],
    }[where]
    target[key] = value
    return data


@pytest.mark.parametrize(
    ("where", "key"),
    [
        pytest.param("", "extra", id="spec"),
        pytest.param("device", "extra", id="device"),
        pytest.param("edits", "extra", id="edits"),
        pytest.param("node", "extra", id="device-node"),
        pytest.param("hook", "extra", id="hook"),
        pytest.param("mount", "extra", id="mount"),
        pytest.param("rdt", "extra", id="intel-rdt"),
        pytest.param("net", "extra", id="net-device"),
        pytest.param("", "cdi_version", id="python-name-is-not-a-key"),
        pytest.param("node", "host_path", id="snake-case-key"),
    ],
)
def test_unknown_fields_are_rejected(where: str, key: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        models.Spec.model_validate(_with(FULL_SPEC, where, key, "x"))
    assert [e["type"] for e in info.value.errors()] == ["extra_forbidden"]


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        pytest.param("node", "major", "10", id="major-string"),
        pytest.param("node", "minor", 229.0, id="minor-float"),
        pytest.param("node", "uid", True, id="uid-bool"),
        pytest.param("node", "uid", -1, id="uid-negative"),
        pytest.param("node", "gid", 2**32, id="gid-over-uint32"),
        pytest.param("node", "major", 2**63, id="major-over-int64"),
        pytest.param("node", "fileMode", "0666", id="filemode-string"),
        pytest.param("node", "path", 5, id="path-int"),
        pytest.param("hook", "timeout", "5", id="timeout-string"),
        pytest.param("edits", "env", "A=1", id="env-not-a-list"),
        pytest.param("edits", "additionalGids", ["5"], id="gid-string"),
        pytest.param("rdt", "enableMonitoring", "true", id="bool-string"),
        pytest.param("device", "name", 0, id="name-int"),
        pytest.param("device", "annotations", {"a": 1}, id="annotation-value-int"),
        pytest.param("", "cdiVersion", 0.3, id="version-float"),
        pytest.param("", "devices", {}, id="devices-not-a-list"),
    ],
)
def test_wrong_types_are_not_coerced(where: str, key: str, value: object) -> None:
    with pytest.raises(pydantic.ValidationError):
        models.Spec.model_validate(_with(FULL_SPEC, where, key, value))


@pytest.mark.parametrize("missing", ["cdiVersion", "kind", "devices"])
def test_required_spec_fields(minimal_spec: dict[str, Any], missing: str) -> None:
    del minimal_spec[missing]
    with pytest.raises(pydantic.ValidationError) as info:
        models.Spec.model_validate(minimal_spec)
    assert [(e["type"], e["loc"]) for e in info.value.errors()] == [("missing", (missing,))]


def test_device_needs_container_edits(minimal_spec: dict[str, Any]) -> None:
    del minimal_spec["devices"][0]["containerEdits"]
    with pytest.raises(pydantic.ValidationError) as info:
        models.Spec.model_validate(minimal_spec)
    assert info.value.errors()[0]["loc"] == ("devices", 0, "containerEdits")


def test_extremes_of_integer_ranges_are_accepted() -> None:
    data = _with(FULL_SPEC, "node", "major", -(2**63))
    data = _with(data, "node", "uid", 2**32 - 1)
    spec = models.Spec.model_validate(data)
    nodes = spec.devices[0].container_edits.device_nodes
    assert nodes is not None and nodes[0].major == -(2**63) and nodes[0].uid == 2**32 - 1


@pytest.mark.parametrize(
    ("edits", "empty"),
    [
        pytest.param({}, True, id="nothing"),
        pytest.param({"env": [], "deviceNodes": [], "hooks": [], "mounts": []}, True, id="empty-lists"),
        pytest.param({"additionalGids": [], "netDevices": []}, True, id="empty-new-lists"),
        pytest.param({"env": ["A=1"]}, False, id="env"),
        pytest.param({"deviceNodes": [{"path": "/dev/x"}]}, False, id="device-node"),
        pytest.param({"hooks": [{"hookName": "poststop", "path": "/h"}]}, False, id="hook"),
        pytest.param({"mounts": [{"hostPath": "/a", "containerPath": "/b"}]}, False, id="mount"),
        pytest.param({"intelRdt": {}}, False, id="intel-rdt-present"),
        pytest.param({"additionalGids": [0]}, False, id="gid-zero"),
        pytest.param({"netDevices": [{"hostInterfaceName": "a", "name": "b"}]}, False, id="net-device"),
    ],
)
def test_container_edits_is_empty(edits: dict[str, Any], empty: bool) -> None:
    assert models.ContainerEdits.model_validate(edits).is_empty() is empty
