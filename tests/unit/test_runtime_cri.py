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
    make_stale_socket,
    serve_fake_cri,
    short_tmp_dir,
)

DEFAULT_DIRS = ("/etc/cdi", "/var/run/cdi")


@pytest.fixture
def short_dir() -> Iterator[Path]:
    directory = short_tmp_dir("cri-test-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


# ---- deciding whether CDI is on -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answers", "enabled", "dirs", "reason"),
    [
        pytest.param(
            RuntimeAnswers("containerd", "v2.0.4", config=containerd_config(enable_cdi=True, spec_dirs=["/x/cdi"])),
            True,
            ("/x/cdi",),
            "enableCDI=true",
            id="containerd-2-cdi-on-custom-dirs",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "1.7.13", config=containerd_config(enable_cdi=True)),
            True,
            DEFAULT_DIRS,
            "enableCDI=true",
            id="containerd-1.7-cdi-on",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "v1.7.24", config=containerd_config(enable_cdi=False)),
            False,
            DEFAULT_DIRS,
            "enableCDI=false",
            id="containerd-1.7-cdi-off",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "v2.0.0", config=containerd_config(enable_cdi=False, spec_dirs=None)),
            False,
            DEFAULT_DIRS,
            "enableCDI=false",
            id="containerd-2-cdi-switched-off",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "v2.1.1", config=containerd_config(enable_cdi=None, spec_dirs=None)),
            True,
            DEFAULT_DIRS,
            ">= 2.0 enables cdi by default",
            id="containerd-2-key-missing",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "1.7.2", config=containerd_config(enable_cdi=None, spec_dirs=None)),
            False,
            DEFAULT_DIRS,
            "1.7 leaves cdi off",
            id="containerd-1.7-key-missing",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "1.6.20", config=None),
            False,
            DEFAULT_DIRS,
            "predates cdi",
            id="containerd-1.6-no-config",
        ),
        pytest.param(
            RuntimeAnswers("containerd", "not-a-version", config=containerd_config(enable_cdi=None)),
            False,
            DEFAULT_DIRS,
            "unparseable version",
            id="containerd-odd-version",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.28.1", config=None),
            True,
            DEFAULT_DIRS,
            "cri-o >= 1.24",
            id="crio-1.28",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.24.0", config={"cdiSpecDirs": ["/opt/cdi"]}),
            True,
            ("/opt/cdi",),
            "cri-o >= 1.24",
            id="crio-dirs-from-info",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.28.1", info={"config": "[crio]\nroot = '/var/lib/containers'"}),
            True,
            DEFAULT_DIRS,
            "cri-o >= 1.24",
            id="crio-toml-info-tolerated",
        ),
        pytest.param(
            RuntimeAnswers("cri-o", "1.23.5"),
            False,
            DEFAULT_DIRS,
            "cri-o >= 1.24 needed",
            id="crio-1.23",
        ),
        pytest.param(
            RuntimeAnswers("frobnicator", "3.0"),
            False,
            DEFAULT_DIRS,
            "unknown runtime 'frobnicator'",
            id="unknown-runtime",
        ),
    ],
)
def test_query_runtime_decides_cdi(answers, enabled, dirs, reason) -> None:
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
    )
    assert reason in info.reason


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
