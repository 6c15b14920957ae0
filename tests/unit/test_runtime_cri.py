"""query_runtime / probe_runtime against a real gRPC fake runtime on unix sockets."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cdi_fuse import errors
from cdi_fuse.runtime import cri
from tests.fakes.fake_cri import (
    FakeCri,
    RuntimeAnswers,
    containerd_config,
    crio_config,
    make_stale_socket,
    serve_fake_cri,
    short_tmp_dir,
)

DEFAULT_DIRS = ("/etc/cdi", "/var/run/cdi")
RECORDED_CRIO = Path(__file__).parent.parent / "data" / "cri" / "crio-1.37.0-status.json"


@pytest.fixture
def short_dir() -> Iterator[Path]:
    directory = short_tmp_dir("cri-test-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


# ---- deciding whether CDI is on -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "enabled", "dirs", "reason", "reported"),
    [
        pytest.param(
            RuntimeAnswers("containerd", "v2.0.4", config=containerd_config(enable_cdi=True, spec_dirs=["/x/cdi"])),
            True,
            ("/x/cdi",),
            "enableCDI=true",
            True,
            id="containerd-2-cdi-on-custom-dirs",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "1.7.13", config=containerd_config(enable_cdi=True)),
            True,
            DEFAULT_DIRS,
            "enableCDI=true",
            True,
            id="containerd-1.7-cdi-on",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "v1.7.24", config=containerd_config(enable_cdi=False)),
            False,
            DEFAULT_DIRS,
            "enableCDI=false",
            True,
            id="containerd-1.7-cdi-off",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "v2.0.0", config=containerd_config(enable_cdi=False, spec_dirs=None)),
            False,
            DEFAULT_DIRS,
            "enableCDI=false",
            False,
            id="containerd-2-cdi-switched-off",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "v2.1.1", config=containerd_config(enable_cdi=None, spec_dirs=None)),
            True,
            DEFAULT_DIRS,
            ">= 2.0 enables cdi by default",
            False,
            id="containerd-2-key-missing",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "1.7.2", config=containerd_config(enable_cdi=None, spec_dirs=None)),
            False,
            DEFAULT_DIRS,
            "1.7 leaves cdi off",
            False,
            id="containerd-1.7-key-missing",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "1.6.20", config=None),
            False,
            DEFAULT_DIRS,
            "predates cdi",
            False,
            id="containerd-1.6-no-config",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "not-a-version", config=containerd_config(enable_cdi=None)),
            False,
            DEFAULT_DIRS,
            "unparseable version",
            True,
            id="containerd-odd-version",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.26.3", config=None),
            True,
            DEFAULT_DIRS,
            "cri-o < 1.33): assuming the defaults",
            False,
            id="crio-1.26-no-info",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.30.4", config={"sandboxImage": "registry.k8s.io/pause:3.9"}),
            True,
            DEFAULT_DIRS,
            "cri-o < 1.33): assuming the defaults",
            False,
            id="crio-1.30-sandbox-image-only",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.37.0", config=crio_config(["/opt/cdi", "/run/cdi"])),
            True,
            ("/opt/cdi", "/run/cdi"),
            "spec dirs from its status (crio.CDISpecDirs)",
            True,
            id="crio-1.37-custom-dirs",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.37.0", config=crio_config([])),
            True,
            (),
            "crio.CDISpecDirs",
            True,
            id="crio-empty-dirs-list",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.37.0", config=crio_config(None)),
            True,
            (),
            "crio.CDISpecDirs",
            True,
            id="crio-null-dirs-is-a-nil-slice",
        ),
        pytest.param(
            # containerd's key at the top level is not how CRI-O answers: it is ignored
            RuntimeAnswers("cri-o", "1.34.1", config={"sandboxImage": "p", "cdiSpecDirs": ["/opt/cdi"]}),
            True,
            DEFAULT_DIRS,
            "assuming the defaults",
            False,
            id="crio-containerd-key-ignored",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.28.1", info={"config": "[crio]\nroot = '/var/lib/containers'"}),
            True,
            DEFAULT_DIRS,
            "cri-o >= 1.24",
            False,
            id="crio-toml-info-tolerated",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.23.5"),
            False,
            DEFAULT_DIRS,
            "cri-o >= 1.24 needed",
            False,
            id="crio-1.23",
        ),
        pytest.param(
            RuntimeAnswers("frobnicator", "3.0"),
            False,
            DEFAULT_DIRS,
            "unknown runtime 'frobnicator'",
            False,
            id="unknown-runtime",
        ),
    ],
)
def test_query_runtime_decides_cdi(answers, enabled, dirs, reason, reported) -> None:
    with FakeCri(answers) as fake:
        info = cri.query_runtime(fake.endpoint, timeout=5)
    assert info == cri.RuntimeInfo(
        endpoint=fake.endpoint,
        runtime_name=answers.runtime_name,
        runtime_version=answers.runtime_version,
        runtime_api_version="v1",
        cdi_enabled=enabled,
        cdi_spec_dirs=dirs,
        reason=info.reason,
        cdi_spec_dirs_reported=reported,
    )
    assert reason in info.reason


def test_recorded_crio_1_37_status_gives_its_real_spec_dirs() -> None:
    """The Version and Status(verbose) answers of a real CRI-O 1.37.0 (tests/e2e/crio), replayed."""
    recorded = json.loads(RECORDED_CRIO.read_text())
    config = json.loads(recorded["status_info"]["config"])
    expected = tuple(config["crio"]["CDISpecDirs"])
    assert len(expected) == 2 and expected != DEFAULT_DIRS
    answers = RuntimeAnswers(
        recorded["version"]["runtime_name"], recorded["version"]["runtime_version"], info=recorded["status_info"]
    )
    with FakeCri(answers) as fake:
        info = cri.query_runtime(fake.endpoint, timeout=5)
    assert (info.runtime_name, info.runtime_version) == ("cri-o", "1.37.0")
    assert info.cdi_enabled is True
    assert info.cdi_spec_dirs == expected
    assert info.cdi_spec_dirs_reported is True
    assert (
        info.reason
        == "cri-o 1.37.0: cri-o >= 1.24 always resolves cdi devices; spec dirs from its status (crio.CDISpecDirs)"
    )


@pytest.mark.parametrize(
    "dirs",
    [pytest.param("/etc/cdi", id="string"), pytest.param([1, 2], id="numbers"), pytest.param({"a": 1}, id="object")],
)
def test_crio_garbage_spec_dirs(dirs) -> None:
    with (
        serve_fake_cri(runtime_name="cri-o", runtime_version="1.37.0", config=crio_config(dirs)) as endpoint,
        pytest.raises(errors.RuntimeQueryError, match=r"crio\.CDISpecDirs is not a list of paths") as caught,
    ):
        cri.query_runtime(endpoint, timeout=5)
    assert caught.value.endpoint == endpoint


def test_query_runtime_asks_version_then_verbose_status() -> None:
    with FakeCri(RuntimeAnswers(config=containerd_config())) as fake:
        cri.query_runtime(fake.endpoint, timeout=5)
        requests = fake.requests
    assert [method for method, _ in requests] == ["Version", "Status"]
    assert requests[0][1].version == "v1"
    assert requests[1][1].verbose is True


def test_query_runtime_accepts_a_plain_socket_path(short_dir) -> None:
    with serve_fake_cri(short_dir, config=containerd_config(enable_cdi=True)) as endpoint:
        path = endpoint.removeprefix("unix://")
        info = cri.query_runtime(path, timeout=5)
    assert info.endpoint == path
    assert info.cdi_enabled is True


def test_runtime_info_is_frozen() -> None:
    with serve_fake_cri(config=containerd_config()) as endpoint:
        info = cri.query_runtime(endpoint, timeout=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.cdi_enabled = False  # type: ignore[misc]


# ---- failures become RuntimeQueryError ----------------------------------------------------------------


def test_missing_socket(short_dir) -> None:
    endpoint = f"unix://{short_dir}/nothing.sock"
    with pytest.raises(errors.RuntimeQueryError) as caught:
        cri.query_runtime(endpoint, timeout=1)
    assert caught.value.endpoint == endpoint
    assert repr(f"{short_dir}/nothing.sock") in str(caught.value)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_regular_file_is_not_a_socket(short_dir) -> None:
    (short_dir / "file.sock").write_text("")
    with pytest.raises(errors.RuntimeQueryError, match="not a socket"):
        cri.query_runtime(str(short_dir / "file.sock"), timeout=1)


def test_stale_socket_nobody_listens(short_dir) -> None:
    stale = make_stale_socket(short_dir / "stale.sock")
    with pytest.raises(errors.RuntimeQueryError, match=r"\(unavailable\)") as caught:
        cri.query_runtime(f"unix://{stale}", timeout=2)
    assert isinstance(caught.value.__cause__, grpc.RpcError)
    assert not isinstance(caught.value, grpc.RpcError)


def test_slow_runtime_times_out() -> None:
    with (
        serve_fake_cri(config=containerd_config(), delay=30) as endpoint,
        pytest.raises(errors.RuntimeQueryError, match="timed out") as caught,
    ):
        cri.query_runtime(endpoint, timeout=0.3)
    cause = caught.value.__cause__
    assert isinstance(cause, grpc.Call)
    assert cause.code() is grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("config_text", "match"),
    [
        pytest.param("{not json", "is not json", id="garbage"),
        pytest.param("[1, 2]", "not a json object", id="json-array"),
        pytest.param(json.dumps({"enableCDI": "yes"}), "enableCDI is not a boolean", id="enable-cdi-string"),
        pytest.param(
            json.dumps({"enableCDI": True, "cdiSpecDirs": "/etc/cdi"}),
            "cdiSpecDirs is not a list",
            id="spec-dirs-string",
        ),
    ],
)
def test_containerd_garbage_config(config_text, match) -> None:
    with (
        serve_fake_cri(runtime_name="containerd", info={"config": config_text}) as endpoint,
        pytest.raises(errors.RuntimeQueryError, match=match) as caught,
    ):
        cri.query_runtime(endpoint, timeout=5)
    assert caught.value.endpoint == endpoint


def test_non_unix_endpoint_is_refused() -> None:
    with pytest.raises(errors.RuntimeQueryError, match="only unix sockets"):
        cri.query_runtime("tcp://127.0.0.1:1234", timeout=1)


# ---- probing several endpoints ------------------------------------------------------------------------


def test_probe_skips_missing_and_dead_sockets(short_dir) -> None:
    missing = f"unix://{short_dir}/missing.sock"
    stale = f"unix://{make_stale_socket(short_dir / 'stale.sock')}"
    with serve_fake_cri(runtime_name="cri-o", runtime_version="1.29.0") as good:
        info = cri.probe_runtime([missing, stale, good], timeout=2)
    assert info.endpoint == good
    assert info.runtime_name == "cri-o"
    assert info.cdi_enabled is True


def test_probe_returns_the_first_answer() -> None:
    with (
        serve_fake_cri(runtime_name="containerd", config=containerd_config(enable_cdi=False)) as first,
        serve_fake_cri(runtime_name="cri-o", runtime_version="1.29.0") as second,
    ):
        info = cri.probe_runtime([first, second], timeout=2)
    assert (info.endpoint, info.runtime_name, info.cdi_enabled) == (first, "containerd", False)


def test_probe_without_any_runtime(short_dir) -> None:
    missing = f"unix://{short_dir}/a.sock"
    stale = f"unix://{make_stale_socket(short_dir / 'b.sock')}"
    with pytest.raises(errors.RuntimeQueryError, match="no container runtime answered") as caught:
        cri.probe_runtime([missing, stale], timeout=1)
    assert caught.value.endpoint == f"{missing}, {stale}"
    assert "no socket at" in str(caught.value)
    assert "(unavailable)" in str(caught.value)
    assert isinstance(caught.value.__cause__, errors.RuntimeQueryError)


def test_probe_with_no_endpoints() -> None:
    with pytest.raises(errors.RuntimeQueryError, match="no endpoints given"):
        cri.probe_runtime([], timeout=1)


def test_importing_the_client_does_not_load_grpc() -> None:
    code = "import sys, cdi_fuse.runtime.cri; print('grpc' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
