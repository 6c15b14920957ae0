"""Benchmark of the real `cdi-fuse plugin` process against the fake kubelet; prints a table, writes JSON.

Everything runs on loopback unix sockets in a short temp dir and every loop is bounded; the script
stops by itself. `--quick` is a smoke run (small counts, 5 s idle) that a test can invoke.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fake kubelet lives in tests/, which is not installed

from cdi_fuse._proto import deviceplugin_pb2 as pb  # noqa: E402
from cdi_fuse._proto import deviceplugin_pb2_grpc as pb_grpc  # noqa: E402
from cdi_fuse.deviceplugin import endpoint  # noqa: E402
from tests.fakes import kubelet as fake  # noqa: E402

RESOURCE = "cdi-fuse.io/fuse"
CDI_FUSE = Path(sys.executable).parent / "cdi-fuse"
CLIENT = Path(__file__).resolve().parent / "alloc_client.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")
FUSE_MAJOR, FUSE_MINOR = 10, 229
THREADS = 16
WAIT = 20.0  # upper bound for any single wait on the plugin


@dataclass(frozen=True)
class Sizes:
    sequential: int
    concurrent_per_client: int
    churn: int
    churn_clients: int
    starts: int
    restarts: int
    generate_runs: int
    scale_count: int
    scale_sequential: int
    double_restarts: int


FULL = Sizes(2_000, 500, 100_000, 4, 5, 100, 10, 10_000, 2_000, 50)
QUICK = Sizes(300, 20, 4_000, 2, 2, 10, 3, 10_000, 300, 5)
QUIET_S = 0.5  # after a double restart, how long no further Register may come


@dataclass(frozen=True)
class Target:
    text: str
    ok: Callable[[float], bool]


@dataclass
class Row:
    name: str
    value: float | int | str
    unit: str
    target: Target | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.target is None or isinstance(self.value, str):
            return ""
        return "pass" if self.target.ok(float(self.value)) else "FAIL"


class TimedKubelet(fake.FakeKubelet):
    """The fake kubelet, plus when each Register arrived and when kubelet.sock was last served."""

    def __init__(self, plugin_dir: Path) -> None:
        super().__init__(plugin_dir)
        self.register_times: list[float] = []
        self.served_at = 0.0

    def register(self, request: pb.RegisterRequest, context: grpc.ServicerContext, generation: int) -> pb.Empty:
        self.register_times.append(time.perf_counter())
        return super().register(request, context, generation)

    def start(self) -> None:
        super().start()
        self.served_at = time.perf_counter()


# --- process helpers ---


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_cpu_seconds(pid: int) -> float:
    # Fields after the ")" closing comm: utime and stime are the 14th and 15th of the whole line.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_run_ns(pid: int) -> dict[str, tuple[str, int]]:
    """Per thread: (name, ns on CPU) from /proc/<pid>/task/*/schedstat, finer than stat's clock ticks."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            name = "main thread" if tid == str(pid) else Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            found[tid] = (name, int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0]))
    return found


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def fuse_device(workdir: Path) -> Path:
    """/dev/fuse when it is a char device, else (as root) a 10:229 node made in the temp dir."""
    real = Path("/dev/fuse")
    with contextlib.suppress(OSError):
        if stat.S_ISCHR(os.stat(real).st_mode):
            return real
    made = workdir / "fuse"
    os.mknod(made, stat.S_IFCHR | 0o666, os.makedev(FUSE_MAJOR, FUSE_MINOR))
    return made


class Bench:
    def __init__(self, sizes: Sizes, idle_seconds: float) -> None:
        self.sizes = sizes
        self.idle_seconds = idle_seconds
        self.workdir = Path(tempfile.mkdtemp(prefix="cdifb-", dir="/tmp"))
        self.plugin_dir = self.workdir / "k"
        self.spec_dir = self.workdir / "s"
        self.plugin_dir.mkdir()
        self.device = fuse_device(self.workdir)
        self.socket = self.plugin_dir / endpoint.socket_name(RESOURCE)
        self.rows: list[Row] = []
        self.raw: dict[str, Any] = {}

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def add(self, row: Row, raw: Any = None) -> None:
        self.rows.append(row)
        self.raw[row.name] = {"value": row.value, "unit": row.unit}
        if row.target is not None:
            self.raw[row.name]["target"] = row.target.text
            self.raw[row.name]["verdict"] = row.verdict
        if row.note:
            self.raw[row.name]["note"] = row.note
        if raw is not None:
            self.raw[row.name]["detail"] = raw
        print(f"  {row.name}: {row.value} {row.unit} {row.note}".rstrip(), file=sys.stderr, flush=True)

    # --- the plugin under test ---

    def plugin_args(self, count: int) -> list[str]:
        return [
            str(CDI_FUSE),
            "plugin",
            "--device-plugin-dir",
            str(self.plugin_dir),
            "--strategy",
            "cdi,cdi-annotations",
            "--spec-dir",
            str(self.spec_dir),
            "--device-path",
            str(self.device),
            "--count",
            str(count),
            "--log-level",
            "WARNING",
        ]

    @contextlib.contextmanager
    def plugin(self, count: int = 110) -> Iterator[subprocess.Popen[bytes]]:
        process = subprocess.Popen(self.plugin_args(count), stdin=subprocess.DEVNULL)
        try:
            yield process
        finally:
            stop_plugin(process)

    # --- measurements ---

    def allocate_latency(self, channel: grpc.Channel, count: int, calls: int) -> list[float]:
        allocate = pb_grpc.DevicePluginStub(channel).Allocate
        rng = random.Random(1)
        requests = [
            pb.AllocateRequest(
                container_requests=[pb.ContainerAllocateRequest(devices_ids=[f"fuse-{rng.randrange(count)}"])]
            )
            for _ in range(calls)
        ]
        for request in requests[:200]:  # warm-up: connection, caches, code paths
            allocate(request, timeout=WAIT)
        latencies = []
        for request in requests:
            start = time.perf_counter_ns()
            allocate(request, timeout=WAIT)
            latencies.append((time.perf_counter_ns() - start) / 1000)
        return latencies

    def options_latency(self, channel: grpc.Channel, calls: int) -> list[float]:
        options = pb_grpc.DevicePluginStub(channel).GetDevicePluginOptions
        empty = pb.Empty()
        for _ in range(200):
            options(empty, timeout=WAIT)
        latencies = []
        for _ in range(calls):
            start = time.perf_counter_ns()
            options(empty, timeout=WAIT)
            latencies.append((time.perf_counter_ns() - start) / 1000)
        return latencies

    def allocate_threads(self, channel: grpc.Channel, per_thread: int, pid: int) -> dict[str, float]:
        allocate = pb_grpc.DevicePluginStub(channel).Allocate
        request = pb.AllocateRequest(container_requests=[pb.ContainerAllocateRequest(devices_ids=["fuse-0"])])
        barrier = threading.Barrier(THREADS + 1)
        failures: list[BaseException] = []

        def work() -> None:
            try:
                barrier.wait(timeout=WAIT)
                for _ in range(per_thread):
                    allocate(request, timeout=WAIT)
            except BaseException as exc:  # reported below; a thread must not die silently
                failures.append(exc)

        threads = [threading.Thread(target=work, daemon=True) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        plugin_cpu, client_cpu = proc_cpu_seconds(pid), time.process_time()
        barrier.wait(timeout=WAIT)
        start = time.perf_counter()
        for thread in threads:
            thread.join(timeout=600)
        wall = time.perf_counter() - start
        if failures:
            raise RuntimeError(f"allocate thread failed: {failures[0]!r}")
        return {
            "calls_per_s": THREADS * per_thread / wall,
            "client_cpu_share": (time.process_time() - client_cpu) / wall,
            "plugin_cpu_share": (proc_cpu_seconds(pid) - plugin_cpu) / wall,
        }

    def allocate_processes(self, clients: int, per_client: int, pid: int) -> dict[str, float]:
        procs = [
            subprocess.Popen(
                [sys.executable, str(CLIENT), str(self.socket), str(per_client), "110"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(clients)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError("benchmark client did not start")
            plugin_cpu = proc_cpu_seconds(pid)
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            reports = []
            for proc in procs:
                out, _ = proc.communicate(timeout=900)
                reports.append(json.loads(out.splitlines()[-1]))
            plugin_cpu = proc_cpu_seconds(pid) - plugin_cpu
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        wall = max(r["end"] for r in reports) - min(r["start"] for r in reports)
        calls = sum(r["calls"] for r in reports)
        return {
            "calls": calls,
            "errors": sum(r["errors"] for r in reports),
            "wall_s": wall,
            "calls_per_s": calls / wall,
            "client_cpu_share": sum(r["cpu"] for r in reports) / wall,
            "plugin_cpu_share": plugin_cpu / wall,
        }

    def run_main_plugin(self) -> None:
        s = self.sizes
        kubelet = TimedKubelet(self.plugin_dir)
        kubelet.start()
        try:
            with self.plugin() as process:
                kubelet.wait_for_registrations(1, timeout=WAIT)
                kubelet.wait_for_plugin(RESOURCE, timeout=WAIT).wait_for_list(lambda r: True, timeout=WAIT)
                rss_start = proc_rss_kib(process.pid)
                with grpc.insecure_channel(f"unix:{self.socket}") as channel:
                    grpc.channel_ready_future(channel).result(timeout=WAIT)
                    lat = self.allocate_latency(channel, 110, s.sequential)
                    self.add_latency("Allocate", lat, s.sequential)
                    floor = self.options_latency(channel, s.sequential)
                    self.add(
                        Row(
                            "GetDevicePluginOptions p50",
                            round(percentile(floor, 0.5)),
                            "µs",
                            note="a near-empty RPC: the Python gRPC round trip Allocate cannot beat",
                        ),
                        {"p99_us": percentile(floor, 0.99)},
                    )
                    threads = self.allocate_threads(channel, s.concurrent_per_client, process.pid)
                self.add(
                    Row(
                        f"Allocate throughput, {THREADS} client threads",
                        round(threads["calls_per_s"]),
                        "calls/s",
                        note=f"client CPU {threads['client_cpu_share']:.0%} of a core, "
                        f"plugin CPU {threads['plugin_cpu_share']:.0%}",
                    ),
                    threads,
                )
                procs = self.allocate_processes(THREADS, s.concurrent_per_client, process.pid)
                self.add(
                    Row(
                        f"Allocate throughput, {THREADS} client processes",
                        round(procs["calls_per_s"]),
                        "calls/s",
                        note=f"clients' CPU {procs['client_cpu_share']:.0%} of a core, "
                        f"plugin CPU {procs['plugin_cpu_share']:.0%}",
                    ),
                    procs,
                )
                # In two halves: growth in the second half (allocator and pools warm) is what a leak shows.
                half = s.churn // s.churn_clients // 2
                first_half = self.allocate_processes(s.churn_clients, half, process.pid)
                rss_half = proc_rss_kib(process.pid)
                second_half = self.allocate_processes(s.churn_clients, half, process.pid)
                rss_after = proc_rss_kib(process.pid)
                churn = {"calls": first_half["calls"] + second_half["calls"]}
                if first_half["errors"] or second_half["errors"]:
                    raise RuntimeError("Allocate errors during the churn")
                self.add(Row("plugin RSS after start", round(rss_start / 1024, 1), "MiB", _RSS))
                self.add(
                    Row(
                        f"plugin RSS after {churn['calls']:,} more Allocates",
                        round(rss_after / 1024, 1),
                        "MiB",
                        _RSS,
                        note=f"growth {rss_after - rss_start:+d} KiB, "
                        f"{rss_after - rss_half:+d} KiB in the second {second_half['calls']:,}",
                    ),
                    {
                        "growth_kib": rss_after - rss_start,
                        "second_half_growth_kib": rss_after - rss_half,
                        "churn": [first_half, second_half],
                    },
                )
                self.measure_idle(process.pid)
                self.measure_restarts(kubelet)
                self.measure_double_restarts(kubelet)
        finally:
            kubelet.stop()

    def add_latency(self, what: str, lat: list[float], calls: int, suffix: str = "") -> None:
        detail = {"calls": calls, "mean_us": statistics.fmean(lat), "max_us": max(lat)}
        self.add(Row(f"{what} p50{suffix}", round(percentile(lat, 0.5)), "µs", _P50, note=f"{calls:,} calls"), detail)
        self.add(Row(f"{what} p99{suffix}", round(percentile(lat, 0.99)), "µs", _P99))

    def measure_idle(self, pid: int) -> None:
        before, threads_before = proc_cpu_seconds(pid), thread_run_ns(pid)
        time.sleep(self.idle_seconds)
        used, threads_after = proc_cpu_seconds(pid) - before, thread_run_ns(pid)
        by_thread: dict[str, float] = {}
        for tid, (name, ns) in threads_after.items():
            spent = ns - threads_before.get(tid, (name, 0))[1]
            by_thread[name] = by_thread.get(name, 0.0) + spent / 1e9
        precise = sum(by_thread.values())
        per_minute = used * 60 / self.idle_seconds
        self.add(
            Row(
                "idle CPU",
                round(per_minute, 3),
                "s/min",
                _IDLE,
                note=f"{used:.2f} s in {self.idle_seconds:g} s (ticks of {1 / CLK_TCK:g} s); "
                f"schedstat: {precise * 60 / self.idle_seconds:.3f} s/min",
            ),
            {
                "cpu_s": used,
                "seconds": self.idle_seconds,
                "schedstat_s": precise,
                "schedstat_by_thread_s": {k: round(v, 4) for k, v in sorted(by_thread.items())},
            },
        )

    def measure_restarts(self, kubelet: TimedKubelet) -> None:
        latencies, misses, early = [], 0, 0
        for _ in range(self.sizes.restarts):
            seen = len(kubelet.requests)
            kubelet.restart()
            try:
                kubelet.wait_for_registrations(seen + 1, timeout=5.0)
                # Like the kubelet: the plugin is in use again once ListAndWatch delivered a list.
                kubelet.wait_for_plugin(RESOURCE, timeout=WAIT).wait_for_list(lambda r: True, timeout=WAIT)
            except AssertionError:
                misses += 1
                continue
            delta = kubelet.register_times[seen] - kubelet.served_at
            early += delta < 0
            latencies.append(max(0.0, delta) * 1000)
        extra = len(kubelet.requests) - 1 - (self.sizes.restarts - misses)
        stats: dict[str, float] = {
            "restarts": self.sizes.restarts,
            "misses": misses,
            "registered_before_start_returned": early,
            "extra_registrations": extra,
        }
        if latencies:
            stats.update(p99_ms=percentile(latencies, 0.99), max_ms=max(latencies))
            self.add(
                Row(
                    "kubelet restart -> re-Register, median",
                    round(statistics.median(latencies), 2),
                    "ms",
                    _REREG,
                    note=f"{self.sizes.restarts} restarts",
                ),
                stats,
            )
            self.add(Row("kubelet restart -> re-Register, p99", round(percentile(latencies, 0.99), 2), "ms"))
            self.add(Row("kubelet restart -> re-Register, max", round(max(latencies), 2), "ms"))
        self.add(Row("kubelet restart -> re-Register, misses", misses, "", _ZERO, note="no Register within 5 s"))

    def measure_double_restarts(self, kubelet: TimedKubelet) -> None:
        """Back-to-back restarts (a crash-looping kubelet): the plugin must converge, not storm."""
        rounds = self.sizes.double_restarts
        live, total, quiet_extra, misses = [], [], 0, 0
        for _ in range(rounds):
            before = len(kubelet.requests)
            kubelet.restarts_in_a_row(2)
            try:
                deadline = time.monotonic() + 5
                while kubelet.registrations_with_current(RESOURCE) < 1:
                    if time.monotonic() > deadline:
                        raise AssertionError("no registration with the final kubelet")
                    time.sleep(0.001)
                kubelet.wait_for_plugin(RESOURCE, timeout=WAIT).wait_for_list(lambda r: True, timeout=WAIT)
            except AssertionError:
                misses += 1
                continue
            settled = len(kubelet.requests)
            time.sleep(QUIET_S)
            quiet_extra += len(kubelet.requests) - settled
            live.append(kubelet.registrations_with_current(RESOURCE))
            total.append(len(kubelet.requests) - before)
        self.add(
            Row(
                "double restart -> live Registers with the final kubelet",
                max(live) if live else 0,
                "per round",
                _ONE,
                note=f"{rounds} rounds; min {min(live, default=0)}; misses {misses}",
            ),
            {"live_per_round": live, "total_per_round": total, "misses": misses},
        )
        self.add(
            Row(
                "double restart -> all Registers (any kubelet)",
                round(statistics.mean(total), 2) if total else 0,
                "per round",
                note=f"max {max(total, default=0)}; includes Registers with the short-lived middle kubelet",
            )
        )
        self.add(Row(f"double restart -> Registers in the {QUIET_S:g} s after", quiet_extra, "", _ZERO, note="a storm"))

    def measure_starts(self) -> None:
        kubelet = TimedKubelet(self.plugin_dir)
        kubelet.start()
        times = []
        try:
            for _ in range(self.sizes.starts):
                seen = len(kubelet.requests)
                start = time.perf_counter()
                with self.plugin():
                    kubelet.wait_for_registrations(seen + 1, timeout=WAIT)
                    times.append((kubelet.register_times[seen] - start) * 1000)
        finally:
            kubelet.stop()
        self.add(
            Row("start -> Register, median", round(statistics.median(times)), "ms", note=f"{len(times)} starts"),
            {"ms": times},
        )

    def measure_generate(self) -> None:
        out = self.workdir / "gen"
        base = [str(CDI_FUSE), "generate", "--spec-dir", str(out), "--device-path", str(self.device)]
        for label, args in (("generate", base), ("generate --check", [*base, "--check"])):
            times = []
            for _ in range(self.sizes.generate_runs):
                start = time.perf_counter()
                subprocess.run(args, check=True, capture_output=True, timeout=60)
                times.append((time.perf_counter() - start) * 1000)
            self.add(
                Row(
                    f"`cdi-fuse {label}` wall, median", round(statistics.median(times)), "ms", note=f"{len(times)} runs"
                ),
                {"ms": times},
            )

    def measure_scale(self) -> None:
        count = self.sizes.scale_count
        kubelet = TimedKubelet(self.plugin_dir)
        kubelet.start()
        try:
            start = time.perf_counter()
            with self.plugin(count):
                kubelet.wait_for_registrations(1, timeout=WAIT)
                first = kubelet.wait_for_plugin(RESOURCE, timeout=WAIT).wait_for_list(lambda r: True, timeout=WAIT)
                listed = time.perf_counter()
                self.add(Row(f"ListAndWatch list size, --count {count:,}", first.ByteSize(), "bytes"))
                self.add(
                    Row(
                        f"start -> first list, --count {count:,}",
                        round((listed - start) * 1000),
                        "ms",
                        note=f"Register -> list {(listed - kubelet.register_times[0]) * 1000:.0f} ms",
                    )
                )
                with grpc.insecure_channel(f"unix:{self.socket}") as channel:
                    grpc.channel_ready_future(channel).result(timeout=WAIT)
                    lat = self.allocate_latency(channel, count, self.sizes.scale_sequential)
                self.add_latency("Allocate", lat, self.sizes.scale_sequential, f", --count {count:,}")
        finally:
            kubelet.stop()


def stop_plugin(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_P50 = Target("≤ 400 µs", lambda v: v <= 400)
_P99 = Target("≤ 1000 µs", lambda v: v <= 1000)
_REREG = Target("≤ 5 ms", lambda v: v <= 5)
_RSS = Target("≤ 25 MiB", lambda v: v <= 25)
_IDLE = Target("< 0.05 s/min", lambda v: v < 0.05)
_ZERO = Target("0", lambda v: v == 0)
_ONE = Target("1", lambda v: v == 1)


def print_table(rows: Sequence[Row]) -> None:
    header = ("measurement", "value", "target", "verdict", "note")
    cells = [
        (r.name, f"{r.value} {r.unit}".strip(), r.target.text if r.target else "", r.verdict, r.note) for r in rows
    ]
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(4)]
    for line in [header, (*("-" * w for w in widths), ""), *cells]:
        print("  ".join(str(c).ljust(w) for c, w in zip(line[:4], widths, strict=True)) + "  " + line[4])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts, 5 s idle")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle CPU window [default: 60, quick: 5]")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results.json")
    args = parser.parse_args(argv)
    if not CDI_FUSE.exists():
        parser.error(f"{CDI_FUSE} not found: install the project into this venv first (make venv)")
    sizes = QUICK if args.quick else FULL
    idle = args.idle_seconds if args.idle_seconds is not None else 5.0 if args.quick else 60.0
    bench = Bench(sizes, idle)
    started = time.perf_counter()
    try:
        bench.measure_starts()
        bench.run_main_plugin()
        bench.measure_generate()
        bench.measure_scale()
    finally:
        bench.close()
    print_table(bench.rows)
    failed = [r.name for r in bench.rows if r.verdict == "FAIL"]
    result = {
        "quick": args.quick,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "seconds": round(time.perf_counter() - started, 1),
        "failed_targets": failed,
        "measurements": bench.raw,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\n{len(failed)} target(s) missed; results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
