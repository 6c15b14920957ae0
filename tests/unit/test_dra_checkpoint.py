"""Prepared claims on disk: survive a restart, tolerate a damaged file, never half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdi_fuse import errors
from cdi_fuse.dra import checkpoint

CLAIM = checkpoint.PreparedClaim(
    "ns",
    "claim-a",
    (checkpoint.PreparedDevice(("fuse",), "node-a", "fuse", ("cdi-fuse.io/fuse=fuse",)),),
)


def test_round_trip_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "driver" / "prepared-claims.json"
    first = checkpoint.Checkpoint(path)
    first.put("uid-1", CLAIM)
    assert checkpoint.Checkpoint(path).get("uid-1") == CLAIM
    assert json.loads(path.read_text())["version"] == checkpoint.CHECKPOINT_VERSION


def test_remove_is_idempotent_and_persisted(tmp_path: Path) -> None:
    path = tmp_path / "prepared-claims.json"
    cp = checkpoint.Checkpoint(path)
    cp.put("uid-1", CLAIM)
    assert cp.remove("uid-1") is True
    assert cp.remove("uid-1") is False
    assert checkpoint.Checkpoint(path).uids() == frozenset()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param('{"version": 99, "claims": {}}', id="unknown-version"),
        pytest.param('{"version": 1, "claims": {"u": {"namespace": "n"}}}', id="missing-fields"),
        pytest.param("[]", id="not-a-mapping"),
    ],
)
def test_damaged_file_starts_empty(tmp_path: Path, content: str, caplog) -> None:
    path = tmp_path / "prepared-claims.json"
    path.write_text(content)
    assert checkpoint.Checkpoint(path).uids() == frozenset()
    assert "ignoring unreadable checkpoint" in caplog.text


def test_failed_write_raises_claim_error_and_keeps_the_old_state(tmp_path: Path) -> None:
    """A directory in the checkpoint's place makes the rename fail (for root too); no temp file is left."""
    path = tmp_path / "prepared-claims.json"
    cp = checkpoint.Checkpoint(path)
    cp.put("uid-1", CLAIM)
    path.unlink()
    path.mkdir()
    (path / "keep").write_text("x")
    with pytest.raises(errors.ClaimError, match="cannot write checkpoint"):
        cp.put("uid-2", CLAIM)
    assert cp.uids() == {"uid-1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared-claims.json"]
