"""`bench/run.py --quick` runs end to end, the real plugin beside the floor plugin, and writes every figure
(targets not judged: a smoke run on a shared machine proves the bench works, not the figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"

SIDE_BY_SIDE = (
    "start -> Register, median",
    "RSS after start, median",
    "imports (-X importtime), top-level total, median",
    "Allocate p50",
    "Allocate p99",
    "Allocate throughput, 2 client processes",
    "RSS after 2,000 Allocates",
    "idle CPU",
    "RSS at --count 1,000, every ID allocated",
    "RSS growth --count 110 -> 1,000",
    "ListAndWatch list size, --count 1,000",
    "start -> first list, --count 1,000",
)
PLUGIN_ONLY = (
    "kubelet restart -> re-Register, median",
    "double restart -> live Registers with the final kubelet",
    "double restart -> Registers in the 0.5 s after",
    "`cdi-fuse generate` wall, median",
    "`cdi-fuse generate --check` wall, median",
)


def test_quick_bench_runs_both_plugins_and_writes_every_measurement(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--idle-seconds", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    measurements = json.loads(out.read_text())["measurements"]
    for name in SIDE_BY_SIDE:
        assert name in measurements, f"no {name!r} in {sorted(measurements)}"
        assert measurements[name]["floor"] is not None, f"{name!r} has no floor figure"
    for name in PLUGIN_ONLY:
        assert name in measurements, f"no {name!r} in {sorted(measurements)}"
    assert measurements["kubelet restart -> re-Register, misses"]["value"] == 0
    listed = measurements["ListAndWatch list size, --count 1,000"]
    assert listed["value"] == listed["floor"] > 1_000 * 15, "both plugins list the same 1,000 IDs"
    assert measurements["Allocate p50"]["ratio"] > 0
    assert "measurement" in result.stdout and "floor" in result.stdout and "verdict" in result.stdout
