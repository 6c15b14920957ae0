"""The slice publisher against an in-memory API: converge, idempotence, sharing fallback, uninstall."""

from __future__ import annotations

import pytest

from cdi_fuse import errors
from cdi_fuse.dra import api, publisher
from tests.fakes.resource_api import FakeResourceApi

HEALTHY = api.DeviceState(10, 229, healthy=True)


def make(fake: FakeResourceApi, sharing: api.Sharing = api.Sharing.auto, count: int = 4) -> publisher.SlicePublisher:
    return publisher.SlicePublisher(fake, driver="fuse.cdi-fuse.io", node_name="node-a", sharing=sharing, count=count)


def test_publishes_once_then_converged_without_writes() -> None:
    fake = FakeResourceApi(node_uids={"node-a": "uid-a"})
    pub = make(fake)
    first = pub.converge(HEALTHY)
    assert first.changed and first.shared and first.generation == 1
    assert pub.published == {"fuse"}
    (stored,) = fake.slices.values()
    assert stored["metadata"]["ownerReferences"][0]["uid"] == "uid-a"
    assert pub.converge(HEALTHY).changed is False
    assert fake.writes == [("create", "node-a-fuse.cdi-fuse.io")]


def test_health_change_is_one_replace_with_a_bumped_generation() -> None:
    fake = FakeResourceApi()
    pub = make(fake)
    pub.converge(HEALTHY)
    report = pub.converge(api.DeviceState(10, 229, healthy=False, reason="gone"))
    assert report.changed and report.generation == 2
    (stored,) = fake.slices.values()
    assert stored["spec"]["devices"][0]["attributes"]["healthy"] == {"bool": False}
    assert [verb for verb, _ in fake.writes] == ["create", "replace"]


def test_auto_falls_back_to_count_devices_when_the_server_drops_sharing() -> None:
    fake = FakeResourceApi(consumable_capacity=False)
    pub = make(fake, count=3)
    report = pub.converge(HEALTHY)
    assert report.shared is False
    assert pub.published == {"fuse-0", "fuse-1", "fuse-2"}
    (stored,) = fake.slices.values()
    assert stored["spec"]["pool"]["generation"] == 2
    assert pub.converge(HEALTHY).changed is False  # and it stays there


def test_explicit_shared_does_not_rewrite_forever_when_the_server_drops_sharing(caplog) -> None:
    fake = FakeResourceApi(consumable_capacity=False)
    pub = make(fake, sharing=api.Sharing.shared)
    pub.converge(HEALTHY)
    for _ in range(3):
        assert pub.converge(HEALTHY).changed is False
    assert pub.published == {"fuse"}
    assert "only one claim at a time" in caplog.text
    assert len(fake.writes) <= 2


def test_devices_sharing_never_offers_multiple_allocations() -> None:
    fake = FakeResourceApi()
    make(fake, sharing=api.Sharing.devices, count=2).converge(HEALTHY)
    (stored,) = fake.slices.values()
    assert [d for d in stored["spec"]["devices"] if d.get("allowMultipleAllocations")] == []


def test_republishes_after_the_kubelet_wiped_the_node() -> None:
    fake = FakeResourceApi()
    pub = make(fake)
    pub.converge(HEALTHY)
    fake.wipe("node-a")
    report = pub.converge(HEALTHY)
    assert report.changed and report.generation == 2
    assert list(fake.slices) == ["node-a-fuse.cdi-fuse.io"]


def test_api_errors_reach_the_caller_and_the_next_round_converges() -> None:
    fake = FakeResourceApi()
    pub = make(fake)
    fake.fail_next.append(errors.ApiServerError("GET: connection refused"))
    with pytest.raises(errors.ApiServerError):
        pub.converge(HEALTHY)
    assert pub.converge(HEALTHY).changed


def test_delete_all_removes_every_slice_of_the_node_and_driver() -> None:
    fake = FakeResourceApi()
    pub = make(fake)
    pub.converge(HEALTHY)
    other = make(FakeResourceApi())  # another node's publisher must not be touched
    assert pub.delete_all() == 1
    assert fake.slices == {}
    assert pub.published == frozenset()
    assert other.delete_all() == 0


@pytest.mark.parametrize("count", [0, 129])
def test_count_is_bounded_by_one_slice(count: int) -> None:
    with pytest.raises(ValueError, match="between 1 and 128"):
        make(FakeResourceApi(), sharing=api.Sharing.devices, count=count)
