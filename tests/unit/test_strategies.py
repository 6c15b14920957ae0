"""Allocate strategies: parsing, the Allocation each strategy builds, annotation keys."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdi_fuse import errors
from cdi_fuse.deviceplugin import api, strategies

QUALIFIED = "cdi-fuse.io/fuse=fuse"
RESOURCE = "cdi-fuse.io/fuse"
DEVICE_SPEC = api.DeviceSpecEdit(container_path="/dev/fuse", host_path="/dev/fuse", permissions="rwm")
ANNOTATION = {"cdi.k8s.io/cdi-fuse.io_fuse_fuse-0": QUALIFIED}


# ---- parse_strategy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("auto", None, id="auto"),
        pytest.param(" auto ", None, id="auto-spaces"),
        pytest.param("cdi", {"cdi"}, id="cdi"),
        pytest.param("cdi-annotations", {"cdi-annotations"}, id="annotations"),
        pytest.param("device-spec", {"device-spec"}, id="device-spec"),
        pytest.param("cdi,device-spec", {"cdi", "device-spec"}, id="combo"),
        pytest.param(" cdi , cdi-annotations ,", {"cdi", "cdi-annotations"}, id="combo-spaces-trailing-comma"),
        pytest.param("cdi,cdi", {"cdi"}, id="repeated"),
        pytest.param("cdi,cdi-annotations,device-spec", set(api.ALL_STRATEGIES), id="all"),
    ],
)
def test_parse_strategy(text: str, expected: set[str] | None) -> None:
    choice = strategies.parse_strategy(text)
    assert choice.is_auto is (expected is None)
    assert choice.fixed == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(" , ", id="only-commas"),
        pytest.param("cdi,bogus", id="unknown-in-list"),
        pytest.param("auto,cdi", id="auto-in-list"),
        pytest.param("CDI", id="case-sensitive"),
        pytest.param("annotations", id="near-miss"),
    ],
)
def test_parse_strategy_rejects(text: str) -> None:
    with pytest.raises(errors.InvalidOptionError, match="invalid strategy") as caught:
        strategies.parse_strategy(text)
    assert repr(text) in str(caught.value)


# ---- what each strategy hands out ------------------------------------------------------------------------


def make_builder(resource: str = RESOURCE, ids: int = 3) -> strategies.AllocationBuilder:
    return strategies.AllocationBuilder(
        resource_name=resource,
        qualified_name=QUALIFIED,
        host_device_path="/dev/fuse",
        container_device_path="/dev/fuse",
        permissions="rwm",
        device_ids=[api.DeviceId(f"fuse-{i}") for i in range(ids)],
    )


ALL_COMBOS = [
    frozenset(combo)
    for size in range(1, len(api.ALL_STRATEGIES) + 1)
    for combo in itertools.combinations(api.ALL_STRATEGIES, size)
]


@pytest.mark.parametrize("chosen", [pytest.param(c, id="+".join(sorted(c))) for c in ALL_COMBOS])
def test_allocation_per_strategy(chosen: frozenset[str]) -> None:
    allocation = make_builder().build([api.DeviceId("fuse-0")], chosen)
    assert allocation.cdi_devices == ((QUALIFIED,) if "cdi" in chosen else ())
    assert allocation.annotations == (ANNOTATION if "cdi-annotations" in chosen else {})
    assert allocation.device_specs == ((DEVICE_SPEC,) if "device-spec" in chosen else ())


def test_annotation_key_comes_from_the_first_device() -> None:
    allocation = make_builder().build([api.DeviceId("fuse-2"), api.DeviceId("fuse-0")], frozenset({"cdi-annotations"}))
    assert allocation.annotations == {"cdi.k8s.io/cdi-fuse.io_fuse_fuse-2": QUALIFIED}


def test_no_devices_means_no_annotation() -> None:
    allocation = make_builder().build([], frozenset(api.ALL_STRATEGIES))
    assert allocation.annotations == {}
    assert allocation.cdi_devices == (QUALIFIED,)


@pytest.mark.parametrize(
    ("resource", "key"),
    [
        pytest.param("cdi-fuse.io/fuse", "cdi.k8s.io/cdi-fuse.io_fuse_fuse-0", id="default"),
        pytest.param("github.com/fuse", "cdi.k8s.io/github.com_fuse_fuse-0", id="alias-github"),
        pytest.param("squat.ai/fuse", "cdi.k8s.io/squat.ai_fuse_fuse-0", id="alias-squat"),
        pytest.param("smarter-devices/fuse", "cdi.k8s.io/smarter-devices_fuse_fuse-0", id="alias-smarter"),
        pytest.param("a" * 54 + "/f", "cdi.k8s.io/" + "a" * 54 + "_f_fuse-0", id="exactly-63"),
    ],
)
def test_annotation_keys(resource: str, key: str) -> None:
    allocation = make_builder(resource, ids=1).build([api.DeviceId("fuse-0")], frozenset({"cdi-annotations"}))
    assert allocation.annotations == {key: QUALIFIED}
    assert len(key.removeprefix("cdi.k8s.io/")) <= 63
    assert key.removeprefix("cdi.k8s.io/")[-1].isalnum()


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        pytest.param("a" * 55 + "/f", "longer than 63", id="64-chars"),
        pytest.param("-example.com/fuse", "alphanumeric at both ends", id="leading-dash"),
        pytest.param("example.com/fu$e", "alphanumeric at both ends", id="bad-char"),
    ],
)
def test_annotation_key_rules_rejected_at_construction(resource: str, message: str) -> None:
    with pytest.raises(errors.InvalidNameError, match=message):
        make_builder(resource, ids=1)


def test_builder_rejects_a_bad_qualified_name() -> None:
    with pytest.raises(errors.InvalidNameError):
        strategies.AllocationBuilder(
            resource_name=RESOURCE,
            qualified_name="no-equals-sign",
            host_device_path="/dev/fuse",
            container_device_path="/dev/fuse",
            permissions="rw",
            device_ids=[api.DeviceId("fuse-0")],
        )


_KEY_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")


@given(
    domain=st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,40}[a-z0-9])?", fullmatch=True),
    name=st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9])?", fullmatch=True),
    count=st.integers(min_value=1, max_value=200),
)
def test_annotation_keys_always_follow_the_rules(domain: str, name: str, count: int) -> None:
    resource = f"{domain}/{name}"
    longest = f"{strategies.plugin_name(resource)}_fuse-{count - 1}"
    if len(longest) > 63 or not _KEY_NAME.fullmatch(longest):
        with pytest.raises(errors.InvalidNameError):
            make_builder(resource, ids=count)
        return
    builder = make_builder(resource, ids=count)
    for index in (0, count - 1):
        annotations = builder.build([api.DeviceId(f"fuse-{index}")], frozenset({"cdi-annotations"})).annotations
        (key,) = annotations
        assert key.startswith("cdi.k8s.io/")
        assert len(key.removeprefix("cdi.k8s.io/")) <= 63
        assert _KEY_NAME.fullmatch(key.removeprefix("cdi.k8s.io/"))


def test_builder_without_annotations_accepts_resource_names_too_long_for_keys() -> None:
    """Regression: a long resource name made the plugin fail at start even with --strategy cdi."""
    long_resource = "example.com/" + "f" * 60
    ids = [api.DeviceId("fuse-0")]
    with pytest.raises(errors.InvalidNameError, match="longer than 63"):
        strategies.AllocationBuilder(
            resource_name=long_resource,
            qualified_name=QUALIFIED,
            host_device_path="/dev/fuse",
            container_device_path="/dev/fuse",
            permissions="rw",
            device_ids=ids,
        )
    builder = strategies.AllocationBuilder(
        resource_name=long_resource,
        qualified_name=QUALIFIED,
        host_device_path="/dev/fuse",
        container_device_path="/dev/fuse",
        permissions="rw",
        device_ids=ids,
        with_annotations=False,
    )
    allocation = builder.build(ids, frozenset({api.CDI}))
    assert allocation.cdi_devices == (QUALIFIED,)
    assert allocation.annotations == {}
