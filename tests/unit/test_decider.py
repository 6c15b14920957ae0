"""The strategy decider: `decide_auto`'s rules on their own, and `auto` through the running plugin, decided
from what a fake CRI runtime says and what the spec dirs provide; asked again when the runtime's socket is
created again (a restarted runtime may have CDI turned off or on)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdi_fuse import errors
from cdi_fuse._proto import deviceplugin_pb2 as pb
from cdi_fuse.deviceplugin import api, decider, loop
from cdi_fuse.node import generate
from cdi_fuse.runtime import cri
from tests.fakes.fake_cri import FakeCri, RuntimeAnswers, containerd_config, make_stale_socket, short_tmp_dir
from tests.fakes.kubelet import FakeKubelet, fake_kubelet, plugin_thread

QUALIFIED = "cdi-fuse.io/fuse=fuse"
RESOURCE = "cdi-fuse.io/fuse"
NOT_ASKED = errors.RuntimeQueryError("no socket", endpoint="x")


# ---- decide_auto on its own ------------------------------------------------------------------------------


def write_fuse_spec(device: Path, proc: Path, spec_dir: Path) -> Path:
    result = generate.generate(generate.GenerateOptions(device_path=device, spec_dir=spec_dir, proc_filesystems=proc))
    assert result.path is not None
    return result.path


@dataclass(frozen=True)
class View:
    description: str
    cdi_enabled: bool
    cdi_spec_dirs: tuple[str, ...]
    reason: str


def view(spec_dir: Path, *, cdi: bool = True) -> api.RuntimeView:
    return View("containerd v2.0.4", cdi_enabled=cdi, cdi_spec_dirs=(str(spec_dir),), reason="enableCDI")


def test_decide_auto_cannot_ask_runtime(char_device: Path, proc_filesystems: Path, tmp_path: Path) -> None:
    write_fuse_spec(char_device, proc_filesystems, tmp_path / "cdi")
    decision = decider.decide_auto(None, NOT_ASKED, QUALIFIED, fallback_spec_dirs=[tmp_path / "cdi"])
    # right whether the runtime has CDI on (it injects the node once) or off (it ignores the name)
    assert decision.strategies == {"cdi", "device-spec"}
    assert "no socket" in decision.reason
    assert decision.label == "cdi+device-spec"


def test_decide_auto_cannot_ask_runtime_and_name_unresolvable_sends_device_only(tmp_path: Path) -> None:
    """Regression: an unresolvable CDI name makes a CDI-on runtime fail CreateContainer."""
    decision = decider.decide_auto(None, NOT_ASKED, QUALIFIED, fallback_spec_dirs=[tmp_path])
    assert decision.strategies == {"device-spec"}
    assert f"{QUALIFIED} is not in {tmp_path}" in decision.reason


def test_decide_auto_cannot_ask_runtime_and_name_defined_twice_sends_device_only(
    char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    spec = write_fuse_spec(char_device, proc_filesystems, tmp_path / "cdi")
    shutil.copy(spec, spec.with_name("copy.yaml"))
    decision = decider.decide_auto(None, NOT_ASKED, QUALIFIED, fallback_spec_dirs=[tmp_path / "cdi"])
    assert decision.strategies == {"device-spec"}
    assert "defined twice" in decision.reason


def test_decide_auto_cdi_off(tmp_path: Path) -> None:
    decision = decider.decide_auto(view(tmp_path, cdi=False), None, QUALIFIED)
    assert decision.strategies == {"device-spec"}
    assert "CDI disabled (enableCDI)" in decision.reason


def test_decide_auto_resolves(char_device: Path, proc_filesystems: Path, tmp_path: Path) -> None:
    write_fuse_spec(char_device, proc_filesystems, tmp_path / "cdi")
    decision = decider.decide_auto(view(tmp_path / "cdi"), None, QUALIFIED)
    # the CDI devices field alone: the annotations are deprecated (CRI-O warns), kubelets >= 1.29 pass the field
    assert decision.strategies == {"cdi"}
    assert "not the deprecated cdi.k8s.io annotations" in decision.reason


def test_decide_auto_missing(tmp_path: Path) -> None:
    decision = decider.decide_auto(view(tmp_path), None, QUALIFIED)
    assert decision.strategies == {"device-spec"}
    assert "not in" in decision.reason


def test_decide_auto_duplicate(char_device: Path, proc_filesystems: Path, tmp_path: Path) -> None:
    spec = write_fuse_spec(char_device, proc_filesystems, tmp_path / "cdi")
    shutil.copy(spec, spec.with_name("copy.yaml"))
    decision = decider.decide_auto(view(tmp_path / "cdi"), None, QUALIFIED)
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
) -> loop.PluginConfig:
    options = generate.GenerateOptions(
        device_path=device,
        spec_dir=write_into or fallback_dirs[0],
        permissions="rwm",
        proc_filesystems=proc,
        host_device_path=Path("/dev/fuse"),  # the temp node stands in for the host's /dev/fuse
    )
    return loop.PluginConfig(
        plugin_dir=kubelet.plugin_dir,
        count=4,
        spec_dirs=fallback_dirs,
        generate_options=options,
        write_spec=write_into is not None,
        runtime_probe=cri.RuntimeProbe([endpoint], timeout=2.0),
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
        manager = loop.PluginLoop(config)
        with plugin_thread(manager):
            assert strategies_of(allocate_one(kubelet)) == {"cdi"}
        assert [method for method, _ in fake.requests][:2] == ["Version", "Status"]


def test_auto_cdi_off(kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path) -> None:
    cdi_dir = runtime_dir / "cdi"
    answers = RuntimeAnswers(runtime_version="v1.7.24", config=containerd_config(enable_cdi=False))
    with FakeCri(answers, runtime_dir) as fake:
        config = auto_config(
            kubelet, char_device, proc_filesystems, endpoint=fake.endpoint, write_into=cdi_dir, fallback_dirs=(cdi_dir,)
        )
        with plugin_thread(loop.PluginLoop(config)):
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
    manager = loop.PluginLoop(config)
    with plugin_thread(manager):
        assert strategies_of(allocate_one(kubelet)) == {"cdi", "device-spec"}
        assert "runtime not asked" in manager.state.decision.reason


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
    with plugin_thread(loop.PluginLoop(config)):
        assert strategies_of(allocate_one(kubelet)) == {"device-spec"}
        # the spec appears in the plugin's own spec dir: CDI names are safe to send again
        write_fuse_spec(char_device, proc_filesystems, runtime_dir / "cdi")
        wait_for_strategies(kubelet, {"cdi", "device-spec"})


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
        manager = loop.PluginLoop(config)
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
        manager = loop.PluginLoop(config)
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
        with plugin_thread(loop.PluginLoop(config)):
            assert strategies_of(allocate_one(kubelet)) == {"cdi"}
            spec.unlink()
            wait_for_strategies(kubelet, {"device-spec"})
            write_fuse_spec(char_device, proc_filesystems, cdi_dir)
            wait_for_strategies(kubelet, {"cdi"})
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
        with plugin_thread(loop.PluginLoop(config)):
            assert strategies_of(allocate_one(kubelet)) == {"cdi"}
            answers.config = containerd_config(enable_cdi=False, spec_dirs=[str(cdi_dir)])
            wait_for_strategies(kubelet, {"device-spec"})
            answers.config = containerd_config(enable_cdi=True, spec_dirs=[str(cdi_dir)])
            wait_for_strategies(kubelet, {"cdi"})
            fake.stop()  # the runtime goes away: the CDI name and the device
            wait_for_strategies(kubelet, {"cdi", "device-spec"})
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
        with plugin_thread(loop.PluginLoop(config)):
            assert strategies_of(allocate_one(kubelet)) == {"device-spec"}
            write_fuse_spec(char_device, proc_filesystems, cdi_dir)
            wait_for_strategies(kubelet, {"cdi"})


def test_auto_asks_again_when_the_runtime_socket_is_created_again(
    kubelet: FakeKubelet, runtime_dir: Path, char_device: Path, proc_filesystems: Path
) -> None:
    """Regression (seen on a real node): containerd restarted with CDI turned off kept `auto` on its CDI
    answer until the next timed question (60 s); pods admitted meanwhile started without /dev/fuse."""
    cdi_dir = runtime_dir / "cdi"
    answers = RuntimeAnswers(config=containerd_config(enable_cdi=True, spec_dirs=[str(cdi_dir)]))
    runtimes = [FakeCri(answers, runtime_dir).start()]
    try:
        config = auto_config(
            kubelet,
            char_device,
            proc_filesystems,
            endpoint=runtimes[0].endpoint,
            write_into=cdi_dir,
            fallback_dirs=(cdi_dir,),
            runtime_interval=3600.0,  # only the socket's creation can make it ask again in time
        )
        with plugin_thread(loop.PluginLoop(config)):
            assert strategies_of(allocate_one(kubelet)) == {"cdi"}
            for enable_cdi, expected in ((False, {"device-spec"}), (True, {"cdi"})):
                runtimes[-1].stop()
                restarted = RuntimeAnswers(config=containerd_config(enable_cdi=enable_cdi, spec_dirs=[str(cdi_dir)]))
                runtimes.append(FakeCri(restarted, runtime_dir).start())  # creates the socket again
                wait_for_strategies(kubelet, expected, timeout=2.0)
    finally:
        for runtime in runtimes:
            runtime.stop()


# ---- the decider alone, with a fake probe and synthetic events ------------------------------------------


class FakeProbe:
    def __init__(self, socket: Path, answer: api.RuntimeView) -> None:
        self.socket_paths = (socket,)
        self.answer = answer
        self.calls = 0

    def __call__(self) -> api.RuntimeView:
        self.calls += 1
        return self.answer


def test_decider_asks_again_only_for_its_runtime_socket(tmp_path: Path) -> None:
    from cdi_fuse.deviceplugin import state, strategies
    from cdi_fuse.node import watch

    inotify = watch.DirEvent  # events are plain data: the decider can be driven without inotify
    created = 0x100  # IN_CREATE
    probe = FakeProbe(tmp_path / "run" / "containerd.sock", view(tmp_path, cdi=False))
    plugin_state = state.PluginState(healthy=True, decision=api.Decision(frozenset(), "start"))
    decider_ = decider.StrategyDecider(
        strategies.parse_strategy("auto"), QUALIFIED, plugin_state=plugin_state, spec_dirs=(tmp_path,), probe=probe
    )
    decider_.decide(ask_runtime=True)
    assert probe.calls == 1 and plugin_state.decision.strategies == {"device-spec"}
    assert (tmp_path / "run", False) in decider_.watches()
    decider_.on_event(inotify(tmp_path / "run", "containerd.sock.ttrpc", created))
    decider_.on_event(inotify(tmp_path / "other", "containerd.sock", created))
    assert probe.calls == 1
    probe.answer = view(tmp_path, cdi=True)
    decider_.on_event(inotify(tmp_path / "run", "containerd.sock", created))
    assert probe.calls == 2
    assert plugin_state.decision.strategies == {"device-spec"}  # CDI on, but no spec in tmp_path
    assert "is not in" in plugin_state.decision.reason


def test_decision_reader_reads_only_what_can_concern_the_device(
    char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    """The plugin's own spec is recognised by its bytes, a file not naming the vendor provides nothing the
    decision asks about, and only a file that does is read as the runtimes read it (which loads pydantic)."""
    own = write_fuse_spec(char_device, proc_filesystems, tmp_path / "cdi")
    other_vendor = tmp_path / "cdi" / "nvidia.yaml"
    other_vendor.write_text("cdiVersion: 0.6.0\nkind: nvidia.com/gpu\ndevices: []\n")  # invalid: never parsed
    reads: list[Path] = []
    real_full_reader = decider.full_reader

    def counting_full_read(path: Path, library: object = None) -> list[str]:
        reads.append(path)
        return real_full_reader(path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decider, "full_reader", counting_full_read)
        reader = decider.DecisionReader(QUALIFIED, own=lambda: own.read_text())
        assert reader(own) == [QUALIFIED]
        assert reader(other_vendor) == []
        assert reads == []
        copy = tmp_path / "cdi" / "copy.json"
        copy.write_text(
            generate.render(
                generate.GenerateOptions(device_path=char_device, proc_filesystems=proc_filesystems, fmt="json")
            ).content
        )
        assert reader(copy) == [QUALIFIED]  # same device, other bytes: read in full
        assert reads == [copy]
        registry_decision = decider.decide_auto(
            None, NOT_ASKED, QUALIFIED, fallback_spec_dirs=[tmp_path / "cdi"], read=reader
        )
        assert registry_decision.strategies == {"device-spec"} and "defined twice" in registry_decision.reason


# ---- the runtime's own CDI library (issue 10) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("runtime", "version", "warned"),
    [
        # Debian's containerd 2.1.9 bundles library 1.0.1: it cannot load a cdiVersion 1.1.0 spec.
        pytest.param("containerd 2.1.9+unknown", "1.1.0", True, id="too-new-for-containerd-2.1"),
        pytest.param("containerd 2.1.9+unknown", "1.0.0", False, id="loads"),
        pytest.param("containerd v2.2.1", "1.1.0", False, id="containerd-2.2.1-loads-1.1.0"),
        pytest.param("mystery 1.0", "1.1.0", False, id="unknown-runtime-not-judged"),
    ],
)
def test_decider_warns_once_when_the_runtime_library_cannot_load_the_spec(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, runtime: str, version: str, warned: bool
) -> None:
    from cdi_fuse.deviceplugin import state, strategies

    spec = tmp_path / "cdi-fuse.io-fuse.yaml"
    spec.write_text(f"cdiVersion: {version}\nkind: cdi-fuse.io/fuse\ndevices:\n- name: fuse\n  containerEdits:\n"
                    "    deviceNodes:\n    - path: /dev/fuse\n")  # fmt: skip
    answer = View(runtime, cdi_enabled=True, cdi_spec_dirs=(str(tmp_path),), reason="enableCDI")
    plugin_state = state.PluginState(healthy=True, decision=api.Decision(frozenset(), "start"))
    decider_ = decider.StrategyDecider(
        strategies.parse_strategy("auto"),
        QUALIFIED,
        plugin_state=plugin_state,
        spec_dirs=(tmp_path,),
        probe=FakeProbe(tmp_path / "containerd.sock", answer),
    )
    for _ in range(3):
        decider_.decide(ask_runtime=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    if warned:
        assert warnings == [
            f"containerd 2.1.9+unknown (CDI library 1.0.1) cannot load {spec} (invalid version '1.1.0': CDI library "
            f"1.0 knows versions up to 1.0.0): a container asking for {QUALIFIED} fails with 'unresolvable CDI "
            "devices'; write the spec with --spec-version 1.0.0 or lower"
        ]
    else:
        assert warnings == []


def test_the_runtime_library_check_needs_no_pydantic() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cdi_fuse.cdi.compat, cdi_fuse.cdi.decode\n"
        "print(sorted(m for m in ('pydantic', 'jsonschema') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_a_spec_the_runtimes_library_cannot_load_does_not_resolve_for_it(
    char_device: Path, proc_filesystems: Path, tmp_path: Path
) -> None:
    """Regression: containerd 2.1 bundles CDI library 1.0.1, which refuses cdiVersion 1.1.0; auto judged the spec
    dirs with the newest library, sent the CDI name alone, and the container failed ("unresolvable CDI devices")."""
    options = generate.GenerateOptions(
        device_path=char_device, spec_dir=tmp_path / "cdi", proc_filesystems=proc_filesystems, spec_version="1.1.0"
    )
    generate.generate(options)
    containerd_2_1 = View("containerd 2.1.9", cdi_enabled=True, cdi_spec_dirs=(str(tmp_path / "cdi"),), reason="")
    containerd_2_2_1 = View("containerd 2.2.1", cdi_enabled=True, cdi_spec_dirs=(str(tmp_path / "cdi"),), reason="")

    refused = decider.decide_auto(containerd_2_1, None, QUALIFIED, read=decider.reader_for(containerd_2_1))
    loaded = decider.decide_auto(containerd_2_2_1, None, QUALIFIED, read=decider.reader_for(containerd_2_2_1))

    assert refused.strategies == {"device-spec"}
    assert f"{QUALIFIED} is not in" in refused.reason
    assert loaded.strategies == {"cdi"}
    # the plugin's lean reader judges the same way
    lean = decider.DecisionReader(QUALIFIED, own=lambda: None, library=decider.runtime_library(containerd_2_1))
    assert decider.decide_auto(containerd_2_1, None, QUALIFIED, read=lean).strategies == {"device-spec"}
