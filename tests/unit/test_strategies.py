"""Allocate strategies: parsing, the Allocation each strategy builds, annotation keys, and `auto`
(decided from what a fake CRI runtime says and what its spec dirs provide, through the running plugin)."""

from __future__ import annotations

import itertools
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdi_fuse import doctor, errors
from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse.deviceplugin import api, lifecycle, strategies
from cdi_fuse.node import generate
from tests.fakes.fake_cri import FakeCri, RuntimeAnswers, containerd_config, make_stale_socket, short_tmp_dir
from tests.fakes.kubelet import FakeKubelet, fake_kubelet, plugin_thread

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
    with pytest.raises(ValueError, match="invalid strategy") as caught:
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


# ---- decide_auto on its own ------------------------------------------------------------------------------


def write_fuse_spec(device: Path, proc: Path, spec_dir: Path) -> Path:
    result = generate.generate(generate.GenerateOptions(device_path=device, spec_dir=spec_dir, proc_filesystems=proc))
    assert result.path is not None
    return result.path


def view(spec_dir: Path, *, cdi: bool = True) -> api.RuntimeView:
    return api.RuntimeView("containerd v2.0.4", cdi_enabled=cdi, spec_dirs=(spec_dir,), reason="enableCDI")


def test_decide_auto_cannot_ask_runtime(char_device: Path, proc_filesystems: Path, tmp_path: Path) -> None:
    write_fuse_spec(char_device, proc_filesystems, tmp_path / "cdi")
    decision = strategies.decide_auto(
        None, errors.RuntimeQueryError("no socket", endpoint="x"), QUALIFIED, fallback_spec_dirs=[tmp_path / "cdi"]
    )
    assert decision.strategies == frozenset(api.ALL_STRATEGIES)
    assert "no socket" in decision.reason
    assert decision.label == "cdi+cdi-annotations+device-spec"


def test_decide_auto_cannot_ask_runtime_and_name_unresolvable_sends_device_only(tmp_path: Path) -> None:
    """Regression: an unresolvable CDI name makes a CDI-on runtime fail CreateContainer."""
    decision = strategies.decide_auto(
        None, errors.RuntimeQueryError("no socket", endpoint="x"), QUALIFIED, fallback_spec_dirs=[tmp_path]
    )
    assert decision.strategies == {"device-spec"}
    assert "does not resolve" in decision.reason


def test_decide_auto_cannot_ask_runtime_and_name_defined_twice_sends_device_only(
    char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    spec = write_fuse_spec(char_device, proc_filesystems, tmp_path / "cdi")
    shutil.copy(spec, spec.with_name("copy.yaml"))
    decision = strategies.decide_auto(
        None, errors.RuntimeQueryError("no socket", endpoint="x"), QUALIFIED, fallback_spec_dirs=[tmp_path / "cdi"]
    )
    assert decision.strategies == {"device-spec"}


def test_decide_auto_cdi_off(tmp_path: Path) -> None:
    decision = strategies.decide_auto(view(tmp_path, cdi=False), None, QUALIFIED)
    assert decision.strategies == {"device-spec"}
    assert "CDI disabled (enableCDI)" in decision.reason


def test_decide_auto_resolves(char_device: Path, proc_filesystems: Path, tmp_path: Path) -> None:
    write_fuse_spec(char_device, proc_filesystems, tmp_path / "cdi")
    decision = strategies.decide_auto(view(tmp_path / "cdi"), None, QUALIFIED)
    assert decision.strategies == {"cdi", "cdi-annotations"}
    assert decision.label == "cdi+cdi-annotations"


def test_decide_auto_missing(tmp_path: Path) -> None:
    decision = strategies.decide_auto(view(tmp_path), None, QUALIFIED)
    assert decision.strategies == {"device-spec"}
    assert "not in" in decision.reason


def test_decide_auto_duplicate(char_device: Path, proc_filesystems: Path, tmp_path: Path) -> None:
    spec = write_fuse_spec(char_device, proc_filesystems, tmp_path / "cdi")
    shutil.copy(spec, spec.with_name("copy.yaml"))
    decision = strategies.decide_auto(view(tmp_path / "cdi"), None, QUALIFIED)
    assert decision.strategies == {"device-spec"}
    assert "defined twice" in decision.reason


# ---- auto through the running plugin, with a fake CRI runtime -------------------------------------------


@pytest.fixture
def kubelet() -> Iterator[FakeKubelet]:
    with fake_kubelet() as started:
        yield started


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """Holds the fake runtime's socket and its CDI spec dir (short: AF_UNIX path limit)."""
    directory = short_tmp_dir("cri-")
    (directory / "cdi").mkdir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def auto_config(
    kubelet: FakeKubelet,
    device: Path,
    proc: Path,
    *,
    endpoint: str,
    write_into: Path | None,
    fallback_dirs: tuple[Path, ...],
    runtime_interval: float = 60.0,
) -> lifecycle.PluginConfig:
    options = generate.GenerateOptions(
        device_path=device,
        spec_dir=write_into or fallback_dirs[0],
        permissions="rwm",
        proc_filesystems=proc,
        host_device_path=Path("/dev/fuse"),  # the temp node stands in for the host's /dev/fuse
    )
    return lifecycle.PluginConfig(
        plugin_dir=kubelet.plugin_dir,
        count=4,
        spec_dirs=fallback_dirs,
        generate_options=options,
        write_spec=write_into is not None,
        runtime_probe=doctor.runtime_probe([endpoint], timeout=2.0),
        runtime_interval=runtime_interval,
        safety_interval=3600.0,
    )


def allocate_one(kubelet: FakeKubelet) -> pb.ContainerAllocateResponse:
    (response,) = kubelet.allocate(RESOURCE, [["fuse-1"]]).container_responses
    return response


def strategies_of(response: pb.ContainerAllocateResponse) -> set[str]:
    """Which strategies an Allocate response used, checking each part is exactly what it should be."""
    used = set()
    if response.cdi_devices:
        assert [d.name for d in response.cdi_devices] == [QUALIFIED]
        used.add("cdi")
    if response.annotations:
        assert dict(response.annotations) == {"cdi.k8s.io/cdi-fuse.io_fuse_fuse-1": QUALIFIED}
        used.add("cdi-annotations")
    if response.devices:
        assert [(d.container_path, d.host_path, d.permissions) for d in response.devices] == [
            ("/dev/fuse", "/dev/fuse", "rwm")
        ]
        used.add("device-spec")
    return used


def wait_for_strategies(kubelet: FakeKubelet, expected: set[str], timeout: float = 5.0) -> None:
    """Allocate until the response uses `expected` (the plugin re-decides asynchronously)."""
    deadline = time.monotonic() + timeout
    while (used := strategies_of(allocate_one(kubelet))) != expected:
        assert time.monotonic() < deadline, f"still {used} after {timeout}s, expected {expected}"
        time.sleep(0.02)


def test_auto_cdi_on_and_spec_resolves(
    kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    cdi_dir = runtime_dir / "cdi"
    answers = RuntimeAnswers(config=containerd_config(enable_cdi=True, spec_dirs=[str(cdi_dir)]))
    with FakeCri(answers, runtime_dir) as fake:
        config = auto_config(
            kubelet,
            char_device,
            proc_filesystems,
            endpoint=fake.endpoint,
            write_into=cdi_dir,
            fallback_dirs=(tmp_path / "unused",),
        )
        manager = lifecycle.Manager(config)
        with plugin_thread(manager):
            assert strategies_of(allocate_one(kubelet)) == {"cdi", "cdi-annotations"}
        assert [method for method, _ in fake.requests][:2] == ["Version", "Status"]


def test_auto_cdi_off(kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path) -> None:
    cdi_dir = runtime_dir / "cdi"
    answers = RuntimeAnswers(runtime_version="v1.7.24", config=containerd_config(enable_cdi=False))
    with FakeCri(answers, runtime_dir) as fake:
        config = auto_config(
            kubelet, char_device, proc_filesystems, endpoint=fake.endpoint, write_into=cdi_dir, fallback_dirs=(cdi_dir,)
        )
        with plugin_thread(lifecycle.Manager(config)):
            assert strategies_of(allocate_one(kubelet)) == {"device-spec"}


@pytest.mark.parametrize("stale", [pytest.param(False, id="no-socket"), pytest.param(True, id="stale-socket")])
def test_auto_runtime_unreachable(
    kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path, stale: bool
) -> None:
    socket_path = runtime_dir / "gone.sock"
    if stale:
        make_stale_socket(socket_path)
    config = auto_config(
        kubelet,
        char_device,
        proc_filesystems,
        endpoint=f"unix://{socket_path}",
        write_into=runtime_dir / "cdi",
        fallback_dirs=(runtime_dir / "cdi",),
    )
    manager = lifecycle.Manager(config)
    with plugin_thread(manager):
        assert strategies_of(allocate_one(kubelet)) == {"cdi", "cdi-annotations", "device-spec"}
        assert "could not be asked" in manager.state.decision.reason


def test_auto_runtime_unreachable_without_a_spec(
    kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path
) -> None:
    config = auto_config(
        kubelet,
        char_device,
        proc_filesystems,
        endpoint=f"unix://{runtime_dir}/gone.sock",
        write_into=None,
        fallback_dirs=(runtime_dir / "cdi",),
        runtime_interval=3600.0,
    )
    with plugin_thread(lifecycle.Manager(config)):
        assert strategies_of(allocate_one(kubelet)) == {"device-spec"}
        # the spec appears in the plugin's own spec dir: CDI names are safe to send again
        write_fuse_spec(char_device, proc_filesystems, runtime_dir / "cdi")
        wait_for_strategies(kubelet, {"cdi", "cdi-annotations", "device-spec"})


def test_auto_spec_not_in_the_runtime_dirs(
    kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    answers = RuntimeAnswers(config=containerd_config(enable_cdi=True, spec_dirs=[str(runtime_dir / "cdi")]))
    with FakeCri(answers, runtime_dir) as fake:
        # --generate writes into a dir the runtime does not read
        config = auto_config(
            kubelet,
            char_device,
            proc_filesystems,
            endpoint=fake.endpoint,
            write_into=tmp_path / "elsewhere",
            fallback_dirs=(tmp_path / "elsewhere",),
        )
        manager = lifecycle.Manager(config)
        with plugin_thread(manager):
            assert strategies_of(allocate_one(kubelet)) == {"device-spec"}
        assert (tmp_path / "elsewhere" / "cdi-fuse.io-fuse.yaml").exists()


def test_auto_spec_defined_twice(
    kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path
) -> None:
    cdi_dir = runtime_dir / "cdi"
    spec = write_fuse_spec(char_device, proc_filesystems, cdi_dir)
    shutil.copy(spec, cdi_dir / "other-fuse.yaml")
    answers = RuntimeAnswers(config=containerd_config(enable_cdi=True, spec_dirs=[str(cdi_dir)]))
    with FakeCri(answers, runtime_dir) as fake:
        config = auto_config(
            kubelet, char_device, proc_filesystems, endpoint=fake.endpoint, write_into=None, fallback_dirs=(cdi_dir,)
        )
        manager = lifecycle.Manager(config)
        with plugin_thread(manager):
            assert strategies_of(allocate_one(kubelet)) == {"device-spec"}
            assert "defined twice" in manager.state.decision.reason


def test_auto_redecides_when_the_spec_changes(
    kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path
) -> None:
    cdi_dir = runtime_dir / "cdi"
    spec = write_fuse_spec(char_device, proc_filesystems, cdi_dir)
    answers = RuntimeAnswers(config=containerd_config(enable_cdi=True, spec_dirs=[str(cdi_dir)]))
    with FakeCri(answers, runtime_dir) as fake:
        # --no-generate and the runtime asked only once an hour: only the spec-dir event can cause a change
        config = auto_config(
            kubelet,
            char_device,
            proc_filesystems,
            endpoint=fake.endpoint,
            write_into=None,
            fallback_dirs=(cdi_dir,),
            runtime_interval=3600.0,
        )
        with plugin_thread(lifecycle.Manager(config)):
            assert strategies_of(allocate_one(kubelet)) == {"cdi", "cdi-annotations"}
            spec.unlink()
            wait_for_strategies(kubelet, {"device-spec"})
            write_fuse_spec(char_device, proc_filesystems, cdi_dir)
            wait_for_strategies(kubelet, {"cdi", "cdi-annotations"})
            shutil.copy(spec, cdi_dir / "dup.yaml")
            wait_for_strategies(kubelet, {"device-spec"})


def test_auto_redecides_when_the_runtime_answer_changes(
    kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path
) -> None:
    cdi_dir = runtime_dir / "cdi"
    answers = RuntimeAnswers(config=containerd_config(enable_cdi=True, spec_dirs=[str(cdi_dir)]))
    fake = FakeCri(answers, runtime_dir).start()
    try:
        config = auto_config(
            kubelet,
            char_device,
            proc_filesystems,
            endpoint=fake.endpoint,
            write_into=cdi_dir,
            fallback_dirs=(cdi_dir,),
            runtime_interval=0.1,
        )
        with plugin_thread(lifecycle.Manager(config)):
            assert strategies_of(allocate_one(kubelet)) == {"cdi", "cdi-annotations"}
            answers.config = containerd_config(enable_cdi=False, spec_dirs=[str(cdi_dir)])
            wait_for_strategies(kubelet, {"device-spec"})
            answers.config = containerd_config(enable_cdi=True, spec_dirs=[str(cdi_dir)])
            wait_for_strategies(kubelet, {"cdi", "cdi-annotations"})
            fake.stop()  # the runtime goes away: every strategy
            wait_for_strategies(kubelet, {"cdi", "cdi-annotations", "device-spec"})
    finally:
        fake.stop()


def test_auto_follows_the_runtime_spec_dirs(
    kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    """Regression: the dirs the runtime reports (not --spec-dir) are watched for spec changes."""
    cdi_dir = runtime_dir / "cdi"
    answers = RuntimeAnswers(config=containerd_config(enable_cdi=True, spec_dirs=[str(cdi_dir)]))
    with FakeCri(answers, runtime_dir) as fake:
        config = auto_config(
            kubelet,
            char_device,
            proc_filesystems,
            endpoint=fake.endpoint,
            write_into=None,
            fallback_dirs=(tmp_path / "not-the-runtimes",),
            runtime_interval=3600.0,
        )
        with plugin_thread(lifecycle.Manager(config)):
            assert strategies_of(allocate_one(kubelet)) == {"device-spec"}
            write_fuse_spec(char_device, proc_filesystems, cdi_dir)
            wait_for_strategies(kubelet, {"cdi", "cdi-annotations"})


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
