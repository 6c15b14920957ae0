"""`doctor`'s DRA lines: is the driver serving its registration socket, did the kubelet register it, does the
API server serve resource.k8s.io/v1."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdi_fuse import doctor
from cdi_fuse._proto import pluginregistration_pb2 as pb
from cdi_fuse._proto import pluginregistration_pb2_grpc as pb_grpc
from cdi_fuse.dra import registrar, sockets, status

DRIVER = "fuse.cdi-fuse.io"


@pytest.fixture
def dirs() -> Iterator[tuple[Path, Path]]:
    with tempfile.TemporaryDirectory(prefix="doc-") as root:  # short: unix socket paths are limited
        yield Path(root) / "reg", Path(root) / "plugins"


def options(dirs: tuple[Path, Path], **overrides: object) -> doctor.DoctorOptions:
    values: dict[str, object] = {"dra_registry_dir": dirs[0], "dra_plugins_dir": dirs[1], "runtime_timeout": 1.0}
    values.update(overrides)
    return doctor.DoctorOptions(**values)  # type: ignore[arg-type]


def serve_registration(dirs: tuple[Path, Path]) -> sockets.ServedSocket:
    service = registrar.RegistrationService(driver=DRIVER, endpoint=str(dirs[1] / DRIVER / "dra.sock"))
    served = sockets.ServedSocket(
        dirs[0] / f"{DRIVER}-reg.sock", lambda s: pb_grpc.add_RegistrationServicer_to_server(service, s)
    )
    served.serve()
    return served


def test_no_driver_is_fine_and_says_how_to_get_one(dirs) -> None:
    check = doctor._dra_driver(options(dirs))
    assert check.status == "ok"
    assert "no DRA driver fuse.cdi-fuse.io on this node" in check.detail
    assert "overlays/dra" in check.hint


def test_serving_but_not_registered_yet_warns(dirs) -> None:
    served = serve_registration(dirs)
    try:
        check = doctor._dra_driver(options(dirs))
    finally:
        served.stop()
    assert check.status == "warn"
    assert "DRAPlugin fuse.cdi-fuse.io serves" in check.detail
    assert "v1.DRAPlugin" in check.detail
    assert "has not registered it" in check.detail


@pytest.mark.parametrize(
    ("registered", "error", "expected_status", "expected"),
    [
        pytest.param(True, "", "ok", "registered by the kubelet", id="registered"),
        pytest.param(
            False, "none of services supported", "warn", "refused it: none of services supported", id="refused"
        ),
    ],
)
def test_the_kubelets_answer_as_the_driver_recorded_it(dirs, registered, error, expected_status, expected) -> None:
    served = serve_registration(dirs)
    (dirs[1] / DRIVER).mkdir(parents=True)
    status.write_status(dirs[1] / DRIVER / status.STATUS_FILE, registered=registered, error=error)
    try:
        check = doctor._dra_driver(options(dirs))
    finally:
        served.stop()
    assert check.status == expected_status
    assert expected in check.detail


def test_a_stale_socket_warns(dirs) -> None:
    dirs[0].mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(dirs[0] / f"{DRIVER}-reg.sock"))
    listener.close()  # a socket file nobody listens on: what a killed driver leaves
    check = doctor._dra_driver(options(dirs))
    assert check.status == "warn"
    assert "does not answer GetInfo" in check.detail


def test_api_not_asked_without_a_kubeconfig(dirs, monkeypatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    check = doctor._dra_api(options(dirs))
    assert check is not None and check.status == "ok"
    assert check.detail == "not asked: no kubeconfig"


def test_api_with_an_unreadable_kubeconfig_warns(dirs, tmp_path) -> None:
    check = doctor._dra_api(options(dirs, kubeconfig=tmp_path / "missing"))
    assert check is not None and check.status == "warn"
    assert "cannot load the Kubernetes client configuration" in check.detail


def test_recorded_status_round_trip(tmp_path) -> None:
    path = tmp_path / status.STATUS_FILE
    assert status.read_status(path) is None
    status.write_status(path, registered=True, error="")
    recorded = status.read_status(path)
    assert recorded is not None and recorded.registered and recorded.error == ""
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == [status.STATUS_FILE]


def test_query_registration_is_what_the_kubelet_gets(dirs) -> None:
    served = serve_registration(dirs)
    try:
        info = status.query_registration(served.path)
    finally:
        served.stop()
    assert info == pb.PluginInfo(
        type="DRAPlugin", name=DRIVER, endpoint=str(dirs[1] / DRIVER / "dra.sock"), supported_versions=["v1.DRAPlugin"]
    )
