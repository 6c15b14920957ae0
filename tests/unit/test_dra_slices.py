"""The ResourceSlice plan: what to create, replace or delete so the API holds exactly the node's slice."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cdi_fuse.dra import api, slices

HEALTHY = api.DeviceState(10, 229, healthy=True)
UNHEALTHY = api.DeviceState(10, 229, healthy=False, reason="gone")
SHARED = slices.SliceLayout(driver="fuse.cdi-fuse.io", node_name="node-a", shared=True)
DEVICES = slices.SliceLayout(driver="fuse.cdi-fuse.io", node_name="node-a", shared=False, count=3)


def stored(body: dict[str, Any], rv: str = "7", **server_fields: Any) -> dict[str, Any]:
    """`body` as the API server returns it: resourceVersion, uid and defaulted fields added."""
    result = copy.deepcopy(body)
    result["metadata"].update(resourceVersion=rv, uid="u-1", creationTimestamp="2026-01-01T00:00:00Z")
    for device in result["spec"]["devices"]:
        device.update(server_fields)
    return result


def test_nothing_published_creates_generation_one() -> None:
    (action,) = slices.plan([], SHARED, HEALTHY)
    assert isinstance(action, slices.Create)
    spec = action.body["spec"]
    assert action.body["metadata"]["name"] == "node-a-fuse.cdi-fuse.io"
    assert (spec["driver"], spec["nodeName"]) == ("fuse.cdi-fuse.io", "node-a")
    assert spec["pool"] == {"name": "node-a", "generation": 1, "resourceSliceCount": 1}
    assert spec["devices"] == [
        {
            "name": "fuse",
            "attributes": {"major": {"int": 10}, "minor": {"int": 229}, "healthy": {"bool": True}},
            "allowMultipleAllocations": True,
        }
    ]


def test_devices_layout_publishes_count_devices_without_sharing_flag() -> None:
    (action,) = slices.plan([], DEVICES, HEALTHY)
    assert isinstance(action, slices.Create)
    devices = action.body["spec"]["devices"]
    assert [d["name"] for d in devices] == ["fuse-0", "fuse-1", "fuse-2"]
    assert all("allowMultipleAllocations" not in d for d in devices)


def test_published_slice_with_server_additions_needs_nothing() -> None:
    body = slices.desired_slice(SHARED, HEALTHY, generation=4)
    assert slices.plan([stored(body, someServerDefault=None)], SHARED, HEALTHY) == []


def test_health_change_replaces_with_next_generation_and_resource_version() -> None:
    body = slices.desired_slice(SHARED, HEALTHY, generation=4)
    (action,) = slices.plan([stored(body, rv="42")], SHARED, UNHEALTHY)
    assert isinstance(action, slices.Replace)
    assert action.body["metadata"]["resourceVersion"] == "42"
    assert action.body["spec"]["pool"]["generation"] == 5
    assert action.body["spec"]["devices"][0]["attributes"]["healthy"] == {"bool": False}


def test_recreated_after_a_wipe_gets_a_generation_above_the_last_one_written() -> None:
    (action,) = slices.plan([], SHARED, HEALTHY, last_generation=9)
    assert isinstance(action, slices.Create)
    assert action.body["spec"]["pool"]["generation"] == 10


def test_other_slices_of_the_node_are_deleted_and_ours_is_bumped_above_them() -> None:
    ours = stored(slices.desired_slice(SHARED, HEALTHY, generation=2), rv="5")
    old = stored(slices.desired_slice(SHARED, HEALTHY, generation=8), rv="3")
    old["metadata"]["name"] = "node-a-fuse.cdi-fuse.io-x7k2p"  # an earlier naming, same pool
    actions = slices.plan([old, ours], SHARED, HEALTHY)
    replace = actions[0]
    assert isinstance(replace, slices.Replace)
    assert replace.name == ours["metadata"]["name"]
    assert replace.body["spec"]["pool"]["generation"] == 9
    assert actions[1:] == [slices.Delete("node-a-fuse.cdi-fuse.io-x7k2p", "3")]


def test_layout_change_replaces_the_devices() -> None:
    body = stored(slices.desired_slice(SHARED, HEALTHY, generation=1))
    (action,) = slices.plan([body], DEVICES, HEALTHY)
    assert isinstance(action, slices.Replace)
    assert [d["name"] for d in action.body["spec"]["devices"]] == ["fuse-0", "fuse-1", "fuse-2"]


def test_owner_reference_to_the_node_when_its_uid_is_known() -> None:
    (action,) = slices.plan([], SHARED, HEALTHY, node_uid="n-uid")
    assert isinstance(action, slices.Create)
    assert action.body["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "n-uid", "controller": True}
    ]


@pytest.mark.parametrize(
    ("node", "expected_length"),
    [
        pytest.param("n" * 50, 50 + 1 + len("fuse.cdi-fuse.io"), id="short"),
        pytest.param("n" * 250, 253, id="shortened-with-hash"),
    ],
)
def test_slice_name_fits_a_dns_subdomain(node: str, expected_length: int) -> None:
    name = slices.slice_name(node, "fuse.cdi-fuse.io")
    assert len(name) == expected_length
    assert name[-1].isalnum()


def test_shortened_names_differ_for_different_nodes() -> None:
    assert slices.slice_name("a" * 250 + "1", "d.io") != slices.slice_name("a" * 250 + "2", "d.io")
