"""NodePrepareResources / NodeUnprepareResources: every claim answered, failures per claim.

A claim is prepared by looking up its allocation (the kubelet only sends namespace, name and UID),
checking that each device allocated from this driver is one this node publishes, and answering with the
CDI device name of the node's spec, which every device of the pool shares. The answer goes into the
checkpoint first, so repeated calls (kubelet or driver restarts) get the same answer without the API.
Unprepare forgets the claim; a claim never prepared here is already unprepared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import grpc

from cdi_fuse import errors
from cdi_fuse._proto import dra_pb2 as pb
from cdi_fuse._proto import dra_pb2_grpc as pb_grpc
from cdi_fuse.dra import api, checkpoint

__all__ = ["ClaimPreparer", "DraNodeService"]

log = logging.getLogger(__name__)

Readiness = Callable[[], str | None]  # None when the device and its spec are ready, else why not
PublishedDevices = Callable[[], frozenset[str]]


class ClaimPreparer:
    """Prepare and unprepare single claims; the gRPC service maps whole requests onto it."""

    def __init__(
        self,
        *,
        driver: str,
        pool: str,
        cdi_device_ids: Sequence[str],
        claims: api.ClaimReader,
        prepared: checkpoint.Checkpoint,
        readiness: Readiness,
        published: PublishedDevices,
    ) -> None:
        self.driver = driver
        self.pool = pool
        self.cdi_device_ids = tuple(cdi_device_ids)
        self._claims = claims
        self._prepared = prepared
        self._readiness = readiness
        self._published = published

    def prepare(self, claim: api.ClaimRef) -> checkpoint.PreparedClaim:
        known = self._prepared.get(claim.uid)
        if known is not None:
            return known
        problem = self._readiness()
        if problem is not None:
            raise errors.ClaimError(f"FUSE device not ready on this node: {problem}", claim=claim.uid)
        results = [r for r in self._claims.allocated_devices(claim) if r.driver == self.driver]
        published = self._published()
        devices = []
        for result in results:
            if result.pool != self.pool:
                raise errors.ClaimError(
                    f"device {result.device!r} was allocated from pool {result.pool!r}, "
                    f"this node serves pool {self.pool!r}",
                    claim=claim.uid,
                )
            if result.device not in published:
                raise errors.ClaimError(
                    f"device {result.device!r} is not published by this node "
                    f"(published: {', '.join(sorted(published)) or 'none yet'})",
                    claim=claim.uid,
                )
            devices.append(
                checkpoint.PreparedDevice(
                    request_names=(result.request,),
                    pool_name=result.pool,
                    device_name=result.device,
                    cdi_device_ids=self.cdi_device_ids,
                )
            )
        prepared = checkpoint.PreparedClaim(claim.namespace, claim.name, tuple(devices))
        self._prepared.put(claim.uid, prepared)
        log.info("prepared claim %s: %s", claim, ", ".join(d.device_name for d in devices) or "no devices of ours")
        return prepared

    def unprepare(self, claim: api.ClaimRef) -> None:
        if self._prepared.remove(claim.uid):
            log.info("unprepared claim %s", claim)


def _ref(claim: pb.Claim) -> api.ClaimRef:
    return api.ClaimRef(namespace=claim.namespace, name=claim.name, uid=claim.uid)


def _device(device: checkpoint.PreparedDevice) -> pb.Device:
    return pb.Device(
        request_names=list(device.request_names),
        pool_name=device.pool_name,
        device_name=device.device_name,
        cdi_device_ids=list(device.cdi_device_ids),
    )


class DraNodeService(pb_grpc.DRAPluginServicer):
    """The DRAPlugin v1 service. Observers see (claim uid, error or "") after each claim, for logs and tests."""

    def __init__(
        self,
        preparer: ClaimPreparer,
        *,
        on_prepare: Callable[[str, str], None] | None = None,
        on_unprepare: Callable[[str, str], None] | None = None,
    ) -> None:
        self._preparer = preparer
        self._on_prepare = on_prepare
        self._on_unprepare = on_unprepare

    def NodePrepareResources(
        self, request: pb.NodePrepareResourcesRequest, context: grpc.ServicerContext
    ) -> pb.NodePrepareResourcesResponse:
        response = pb.NodePrepareResourcesResponse()
        for claim in request.claims:
            entry = response.claims[claim.uid]
            try:
                prepared = self._preparer.prepare(_ref(claim))
            except errors.CdiFuseError as exc:
                log.error("cannot prepare claim %s: %s", _ref(claim), exc)
                entry.error = str(exc)
            except Exception as exc:  # one claim's surprise must not cost the others their answer
                log.exception("unexpected error preparing claim %s", _ref(claim))
                entry.error = f"internal error: {exc}"
            else:
                entry.devices.extend(_device(d) for d in prepared.devices)
            if self._on_prepare is not None:
                self._on_prepare(claim.uid, entry.error)
        return response

    def NodeUnprepareResources(
        self, request: pb.NodeUnprepareResourcesRequest, context: grpc.ServicerContext
    ) -> pb.NodeUnprepareResourcesResponse:
        response = pb.NodeUnprepareResourcesResponse()
        for claim in request.claims:
            entry = response.claims[claim.uid]
            try:
                self._preparer.unprepare(_ref(claim))
            except errors.CdiFuseError as exc:
                log.error("cannot unprepare claim %s: %s", _ref(claim), exc)
                entry.error = str(exc)
            except Exception as exc:
                log.exception("unexpected error unpreparing claim %s", _ref(claim))
                entry.error = f"internal error: {exc}"
            if self._on_unprepare is not None:
                self._on_unprepare(claim.uid, entry.error)
        return response
