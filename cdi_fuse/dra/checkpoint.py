"""The claims this node has prepared, on disk, so that a restarted driver answers the kubelet the same way.

NodePrepareResources is called again after kubelet or driver restarts; the answer must not change while a
pod runs, and NodeUnprepareResources must succeed for a claim we no longer know (idempotent). The file is
JSON, replaced atomically by the project's one writer (cdi_fuse/files.py), mode 0600.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cdi_fuse import errors, files

__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "PreparedClaim", "PreparedDevice"]

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class PreparedDevice:
    request_names: tuple[str, ...]
    pool_name: str
    device_name: str
    cdi_device_ids: tuple[str, ...]


@dataclass(frozen=True)
class PreparedClaim:
    namespace: str
    name: str
    devices: tuple[PreparedDevice, ...]


def _claim_from(data: Any) -> PreparedClaim:
    return PreparedClaim(
        namespace=str(data["namespace"]),
        name=str(data["name"]),
        devices=tuple(
            PreparedDevice(
                request_names=tuple(str(r) for r in d["request_names"]),
                pool_name=str(d["pool_name"]),
                device_name=str(d["device_name"]),
                cdi_device_ids=tuple(str(c) for c in d["cdi_device_ids"]),
            )
            for d in data["devices"]
        ),
    )


class Checkpoint:
    """Prepared claims by UID, behind one lock; every change is on disk before it is visible."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._claims: dict[str, PreparedClaim] = self._load()

    def _load(self) -> dict[str, PreparedClaim]:
        try:
            raw = self.path.read_text("utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.error("cannot read checkpoint %s (%s); starting empty", self.path, exc.strerror)
            return {}
        try:
            data = json.loads(raw)
            if data.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            return {str(uid): _claim_from(claim) for uid, claim in data["claims"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Nothing on the node depends on it (the CDI spec is shared): claims are looked up again.
            log.error("ignoring unreadable checkpoint %s: %s", self.path, exc)
            return {}

    def get(self, uid: str) -> PreparedClaim | None:
        with self._lock:
            return self._claims.get(uid)

    def uids(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._claims)

    def put(self, uid: str, claim: PreparedClaim) -> None:
        with self._lock:
            if self._claims.get(uid) == claim:
                return
            updated = {**self._claims, uid: claim}
            self._write(updated)
            self._claims = updated

    def remove(self, uid: str) -> bool:
        """Forget a claim; False when it was not there (nothing written)."""
        with self._lock:
            if uid not in self._claims:
                return False
            updated = {k: v for k, v in self._claims.items() if k != uid}
            self._write(updated)
            self._claims = updated
            return True

    def _write(self, claims: dict[str, PreparedClaim]) -> None:
        document = {"version": CHECKPOINT_VERSION, "claims": {uid: asdict(c) for uid, c in sorted(claims.items())}}
        data = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _write_error(f"cannot create {str(self.path.parent)!r}: {exc.strerror}", path=self.path) from exc
        files.replace_file(self.path, data, error=_write_error, mode=0o600, what="checkpoint")


def _write_error(message: str, *, path: Path) -> errors.CdiFuseError:
    return errors.ClaimError(f"cannot write checkpoint {str(path)!r}: {message}")
