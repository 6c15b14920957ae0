"""runtime.crio: the CRI-O drop-in, headed by what the running CRI-O (a fake one over a real socket) reads."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdi_fuse import errors
from cdi_fuse.cli import app
from cdi_fuse.runtime import cri, crio
from tests.fakes.fake_cri import RuntimeAnswers, containerd_config, crio_config, serve_fake_cri

RECORDED_CRIO = Path(__file__).parent.parent / "data" / "cri" / "crio-1.37.0-status.json"


def _info(
    dirs: tuple[str, ...], *, name: str = "cri-o", version: str = "1.37.0", reported: bool = True
) -> cri.RuntimeInfo:
    return cri.RuntimeInfo(
        endpoint="unix:///run/crio.sock",
        runtime_name=name,
        runtime_version=version,
        runtime_api_version="v1",
        cdi_enabled=True,
        cdi_spec_dirs=dirs,
        reason="",
        cdi_spec_dirs_reported=reported,
    )


@pytest.mark.parametrize(
    ("info", "wanted", "expected"),
    [
        pytest.param(
            _info(("/etc/cdi", "/var/run/cdi")),
            ["/etc/cdi", "/var/run/cdi"],
            "# cri-o 1.37.0 already reads CDI specs from /etc/cdi, /var/run/cdi: nothing to change",
            id="already-set",
        ),
        pytest.param(
            _info(("/etc/cdi/", "/var/run/./cdi")),
            ["/etc/cdi", "/var/run/cdi"],
            "# cri-o 1.37.0 already reads CDI specs from /etc/cdi/, /var/run/./cdi: nothing to change",
            id="same-dirs-spelled-differently",
        ),
        pytest.param(
            _info(("/opt/cdi",)),
            ["/etc/cdi", "/var/run/cdi"],
            "# cri-o 1.37.0 reads CDI specs from /opt/cdi now; install this drop-in and restart it",
            id="other-dirs",
        ),
        pytest.param(
            _info(("/var/run/cdi", "/etc/cdi")),
            ["/etc/cdi", "/var/run/cdi"],
            "# cri-o 1.37.0 reads CDI specs from /var/run/cdi, /etc/cdi now; install this drop-in and restart it",
            id="order-is-priority",
        ),
        pytest.param(
            _info(()),
            ["/etc/cdi"],
            "# cri-o 1.37.0 reads CDI specs from no dirs now; install this drop-in and restart it",
            id="no-dirs",
        ),
        pytest.param(
            _info(("/etc/cdi", "/var/run/cdi"), version="1.30.2", reported=False),
            ["/etc/cdi", "/var/run/cdi"],
            "# cri-o 1.30.2 does not report its cdi spec dirs (cri-o < 1.33); the defaults are assumed",
            id="old-crio",
        ),
        pytest.param(
            _info(("/etc/cdi",), name="containerd", version="v2.1.0"),
            ["/etc/cdi"],
            "# unix:///run/crio.sock is containerd v2.1.0, not cri-o: pass --runtime-endpoint with cri-o's socket",
            id="not-crio",
        ),
    ],
)
def test_describe_crio_dirs(info: cri.RuntimeInfo, wanted: list[str], expected: str) -> None:
    assert crio.describe_crio_dirs(info, None, wanted) == expected


def test_describe_crio_dirs_when_crio_cannot_be_asked() -> None:
    error = errors.RuntimeQueryError("no cri socket at '/x.sock'", endpoint="unix:///x.sock")
    line = crio.describe_crio_dirs(None, error, ["/etc/cdi"])
    assert line.startswith("# the running cri-o could not be asked (no cri socket at '/x.sock')")


def test_snippet_against_the_recorded_crio_1_37_answer() -> None:
    recorded = json.loads(RECORDED_CRIO.read_text())
    dirs = json.loads(recorded["status_info"]["config"])["crio"]["CDISpecDirs"]
    answers = RuntimeAnswers("cri-o", "1.37.0", info=recorded["status_info"])
    with serve_fake_cri(runtime_name=answers.runtime_name, runtime_version="1.37.0", info=answers.info) as endpoint:
        same = crio.crio_snippet(spec_dirs=dirs, runtime_endpoint=endpoint)
        other = crio.crio_snippet(spec_dirs=["/etc/cdi", "/var/run/cdi"], runtime_endpoint=endpoint)
    first, second, *_ = same.splitlines()
    assert first == "# /etc/crio/crio.conf.d/10-cdi.conf"
    assert second == f"# cri-o 1.37.0 already reads CDI specs from {', '.join(dirs)}: nothing to change"
    assert tomllib.loads(same) == {"crio": {"runtime": {"cdi_spec_dirs": dirs}}}
    assert f"reads CDI specs from {', '.join(dirs)} now; install this drop-in" in other.splitlines()[1]
    assert tomllib.loads(other) == {"crio": {"runtime": {"cdi_spec_dirs": ["/etc/cdi", "/var/run/cdi"]}}}


def test_cli_runtime_config_crio_asks_the_runtime_endpoint() -> None:
    config = crio_config(["/opt/cdi"])
    with serve_fake_cri(runtime_name="cri-o", runtime_version="1.37.0", config=config) as endpoint:
        result = CliRunner().invoke(
            app, ["runtime-config", "crio", "--runtime-endpoint", endpoint, "--spec-dir", "/opt/cdi"]
        )
    assert result.exit_code == 0, result.output
    assert "# cri-o 1.37.0 already reads CDI specs from /opt/cdi: nothing to change" in result.output
    assert tomllib.loads(result.output) == {"crio": {"runtime": {"cdi_spec_dirs": ["/opt/cdi"]}}}


def test_cli_runtime_config_crio_without_a_runtime_still_prints_the_drop_in() -> None:
    result = CliRunner().invoke(app, ["runtime-config", "crio", "--runtime-endpoint", "unix:///nonexistent/crio.sock"])
    assert result.exit_code == 0, result.output
    assert "could not be asked" in result.output
    assert tomllib.loads(result.output) == {"crio": {"runtime": {"cdi_spec_dirs": ["/etc/cdi", "/var/run/cdi"]}}}


def test_cli_runtime_config_crio_names_a_containerd_endpoint() -> None:
    with serve_fake_cri(runtime_name="containerd", runtime_version="v2.1.0", config=containerd_config()) as endpoint:
        result = CliRunner().invoke(app, ["runtime-config", "crio", "--runtime-endpoint", endpoint])
    assert result.exit_code == 0, result.output
    assert "not cri-o" in result.output
