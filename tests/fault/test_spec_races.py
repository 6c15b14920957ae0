"""Ten `cdi-fuse generate` processes rewrite one spec while a reader parses it: no reader ever sees a torn file.

Each writer process runs the real typer app 30 times in-process (tests/fault/spec_writer.py): a fresh process
per run costs ~0.2 s. 300 writes racing 3,000+ reads keep every writer overlapping the reader; the earlier
1,000 writes x 10,000 reads took 27 s and never found more.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from cdi_fuse import errors
from cdi_fuse.cdi import models, store
from cdi_fuse.node import generate

WRITERS = 10
RUNS_PER_WRITER = 30
READS = 3_000
DEADLINE = 60.0
WRITER_SCRIPT = Path(__file__).with_name("spec_writer.py")


def _permissions(spec: models.Spec) -> str:
    nodes = spec.devices[0].container_edits.device_nodes or []
    return nodes[0].permissions or "" if nodes else ""


def test_concurrent_generate_never_exposes_a_partial_spec(any_fuse_device: Path, spec_dir: Path) -> None:
    # The file exists before the race starts, so any failed read during it is a fault.
    spec_path = generate.generate(generate.GenerateOptions(device_path=any_fuse_device, spec_dir=spec_dir)).path
    assert spec_path is not None
    writers = [
        subprocess.Popen(
            [sys.executable, str(WRITER_SCRIPT), str(any_fuse_device), str(spec_dir), str(RUNS_PER_WRITER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WRITERS)
    ]
    seen: Counter[str] = Counter()
    bad: list[str] = []
    reads = 0
    try:
        for writer in writers:
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
        deadline = time.monotonic() + DEADLINE
        # At least READS reads, and keep reading until the last writer is done.
        while (reads < READS or any(w.poll() is None for w in writers)) and time.monotonic() < deadline:
            reads += 1
            try:
                seen[_permissions(store.read_spec(spec_path))] += 1
            except errors.SpecError as exc:
                bad.append(str(exc))
        outputs = [w.communicate(timeout=DEADLINE) for w in writers]
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()

    assert reads >= READS, f"only {reads} reads before the {DEADLINE}s deadline"
    assert bad == [], f"{len(bad)} torn or invalid reads out of {reads}, e.g. {bad[:3]}"
    for out, err in outputs:
        assert out.split()[-1] == "0", f"a writer had failing runs: {out!r} {err!r}"
    assert seen["rw"] > 0 and seen["rwm"] > 0, f"the reader saw only one version while writers ran: {seen}"
    assert _permissions(store.read_spec(spec_path)) in ("rw", "rwm")
    assert sorted(p.name for p in spec_dir.iterdir()) == [spec_path.name], "no temp file left behind"
    assert spec_path.stat().st_mode & 0o777 == 0o644
