"""NodePrepare/NodeUnprepareResources over a real gRPC server on a unix socket."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cdi_fuse._proto import dra_pb2, dra_pb2_grpc
from cdi_fuse.dra import checkpoint, node_server, sockets
from tests.fakes.resource_api import FakeResourceApi

DRIVER = "fuse.cdi-fuse.io"
CDI = "cdi-fuse.io/fuse=fuse"


class Node:
    def __init__(self, root: Path) -> None:
        self.api = FakeResourceApi()
        self.problem: str | None = None
        self.published = frozenset({"fuse"})
        self.checkpoint_path = root / "prepared-claims.json"
        self.observed: list[tuple[str, str]] = []
        self.socket = sockets.ServedSocket(root / "dra.sock", self._add)
        self.preparer = self._preparer()

    def _preparer(self) -> node_server.ClaimPreparer:
        return node_server.ClaimPreparer(
            driver=DRIVER,
            pool="node-a",
            cdi_device_ids=[CDI],
            claims=self.api,
            prepared=checkpoint.Checkpoint(self.checkpoint_path),
            readiness=lambda: self.problem,
            published=lambda: self.published,
        )

    def _add(self, server: grpc.Server) -> None:
        service = node_server.DraNodeService(self.preparer, on_prepare=lambda u, e: self.observed.append((u, e)))
        dra_pb2_grpc.add_DRAPluginServicer_to_server(service, server)

    def restart(self) -> None:
        self.socket.stop()
        self.preparer = self._preparer()
        self.socket.serve()

    def claim(self, name: str, *, results: list[dict[str, str]] | None = None) -> dra_pb2.Claim:
        default = [{"request": "fuse", "driver": DRIVER, "pool": "node-a", "device": "fuse"}]
        uid = self.api.add_claim("ns", name, results=default if results is None else results)
        return dra_pb2.Claim(namespace="ns", name=name, uid=uid)

    def prepare(self, *claims: dra_pb2.Claim) -> dra_pb2.NodePrepareResourcesResponse:
        with grpc.insecure_channel(f"unix:{self.socket.path}") as channel:
            request = dra_pb2.NodePrepareResourcesRequest(claims=list(claims))
            return dra_pb2_grpc.DRAPluginStub(channel).NodePrepareResources(request, timeout=5)

    def unprepare(self, *claims: dra_pb2.Claim) -> dra_pb2.NodeUnprepareResourcesResponse:
        with grpc.insecure_channel(f"unix:{self.socket.path}") as channel:
            request = dra_pb2.NodeUnprepareResourcesRequest(claims=list(claims))
            return dra_pb2_grpc.DRAPluginStub(channel).NodeUnprepareResources(request, timeout=5)


@pytest.fixture
def node() -> Iterator[Node]:
    with tempfile.TemporaryDirectory(prefix="dra-") as root:  # short: unix socket paths are limited
        served = Node(Path(root))
        served.socket.serve()
        try:
            yield served
        finally:
            served.socket.stop()


def test_prepare_answers_the_cdi_device_of_the_node_spec(node: Node) -> None:
    claim = node.claim("a")
    response = node.prepare(claim)
    (device,) = response.claims[claim.uid].devices
    assert response.claims[claim.uid].error == ""
    assert list(device.request_names) == ["fuse"]
    assert (device.pool_name, device.device_name) == ("node-a", "fuse")
    assert list(device.cdi_device_ids) == [CDI]


def test_every_claim_is_answered_and_failures_stay_with_their_claim(node: Node) -> None:
    good = node.claim("good")
    unallocated = node.claim("unallocated")
    node.api.claims[("ns", "unallocated")]["status"] = {}
    elsewhere = node.claim(
        "elsewhere", results=[{"request": "r", "driver": DRIVER, "pool": "node-b", "device": "fuse"}]
    )
    unknown = node.claim("unknown", results=[{"request": "r", "driver": DRIVER, "pool": "node-a", "device": "fuse-7"}])
    missing = dra_pb2.Claim(namespace="ns", name="missing", uid="uid-missing")
    replaced = dra_pb2.Claim(namespace="ns", name="good", uid="uid-of-an-older-claim")
    response = node.prepare(good, unallocated, elsewhere, unknown, missing, replaced)
    errors = {uid: entry.error for uid, entry in response.claims.items()}
    assert set(errors) == {good.uid, unallocated.uid, elsewhere.uid, unknown.uid, missing.uid, replaced.uid}
    assert errors[good.uid] == ""
    assert "is not allocated" in errors[unallocated.uid]
    assert "pool 'node-b'" in errors[elsewhere.uid]
    assert "'fuse-7' is not published" in errors[unknown.uid]
    assert "not found" in errors[missing.uid]
    assert "deleted and created again" in errors[replaced.uid]


def test_devices_of_other_drivers_are_not_ours_to_answer(node: Node) -> None:
    claim = node.claim(
        "mixed",
        results=[
            {"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu-0"},
            {"request": "fuse", "driver": DRIVER, "pool": "node-a", "device": "fuse"},
        ],
    )
    (device,) = node.prepare(claim).claims[claim.uid].devices
    assert device.device_name == "fuse"


def test_device_not_ready_fails_the_claim_without_asking_the_api(node: Node) -> None:
    node.problem = "'/dev/fuse' does not exist"
    claim = node.claim("a")
    response = node.prepare(claim)
    assert "FUSE device not ready on this node: '/dev/fuse' does not exist" in response.claims[claim.uid].error
    assert node.api.claim_reads == 0


def test_prepare_is_idempotent_and_survives_a_driver_restart_without_the_api(node: Node) -> None:
    claim = node.claim("a")
    first = node.prepare(claim)
    node.restart()
    node.api.claims.clear()  # the API is no longer asked: the checkpoint answers
    again = node.prepare(claim)
    assert again == first
    assert node.api.claim_reads == 1


def test_unprepare_forgets_the_claim_and_is_idempotent(node: Node) -> None:
    claim = node.claim("a")
    node.prepare(claim)
    never_prepared = dra_pb2.Claim(namespace="ns", name="x", uid="uid-x")
    response = node.unprepare(claim, never_prepared)
    assert {uid: e.error for uid, e in response.claims.items()} == {claim.uid: "", "uid-x": ""}
    assert checkpoint.Checkpoint(node.checkpoint_path).uids() == frozenset()
    assert node.unprepare(claim).claims[claim.uid].error == ""


def test_checkpoint_write_failure_is_that_claims_error(node: Node) -> None:
    node.checkpoint_path.mkdir()
    (node.checkpoint_path / "x").write_text("")
    claim = node.claim("a")
    response = node.prepare(claim)
    assert "cannot write checkpoint" in response.claims[claim.uid].error
    assert node.observed == [(claim.uid, response.claims[claim.uid].error)]
