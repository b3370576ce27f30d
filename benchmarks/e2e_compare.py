"""End-to-end comparison (issues 8 and 17): os3p vs the ``ocpp`` package on ``websockets`` (peer) vs Node's
``ocpp-rpc`` (node, the strongest peer) vs bare trio + wsproto (floor), each server in its own process, driven
by the same lean load generator (``loadgen.py``).  ``node`` is in the default set when ``node`` is on PATH;
without it the run says so and goes on without it.

Usage (from the repository root, dev venv)::

    python benchmarks/e2e_compare.py                 # full: 3 repetitions, ~6 minutes
    python benchmarks/e2e_compare.py --quick         # a few seconds, tiny sizes (CI smoke run)
    python benchmarks/e2e_compare.py --reps 5 --seconds 8 --impls os3p,peer,floor,central --json out.json

Scenarios, every one run on every server in turn (interleaved: rep → scenario → server, so drift in the
machine's load hits all alike), each on a freshly started server process (``--quick``: one server per
implementation for all scenarios):

- ``hb1``, ``hb100``, ``hb1000``: Heartbeat with 1, 100, 1,000 connections, closed loop (each connection
  sends its next call when the answer arrives; one call in flight per connection, PROTOCOL-DECISIONS §4);
- ``mv100``: MeterValues with one meterValue of 30 sampledValues (2.7 kB), 100 connections, closed loop;
- ``idle2000``: memory per idle connection: server RSS before and after opening 2,000 more booted
  connections, divided by 2,000.

Every connection boots first (BootNotification).  Each throughput run has a warm-up (not counted) then the
measured window.  Reported per server: calls/s, latency p50/p99/max, server CPU µs per call (user+sys of the
server process from ``/proc/<pid>/stat`` over the measured window / calls answered in it), server peak RSS
(``VmHWM``).  Ratios os3p/peer and os3p/floor are computed per repetition (same run), then the median and
range over repetitions are shown.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from typing import Any

import attrs
from e2e_common import Server, loadavg, machine, sleep_until
from loadgen import LoadGen, proc_cpu_seconds, proc_hwm_kib, proc_rss_kib


@attrs.frozen
class Scenario:
    name: str
    title: str
    kind: str  # "heartbeat", "meter" or "idle"
    connections: int


FULL = (
    Scenario("hb1", "Heartbeat, 1 connection", "heartbeat", 1),
    Scenario("hb100", "Heartbeat, 100 connections", "heartbeat", 100),
    Scenario("hb1000", "Heartbeat, 1,000 connections", "heartbeat", 1000),
    Scenario("mv100", "MeterValues(30), 100 connections", "meter", 100),
    Scenario("idle2000", "Idle connections, 2,000", "idle", 2000),
)

QUICK = (
    Scenario("hb1", "Heartbeat, 1 connection", "heartbeat", 1),
    Scenario("hb100", "Heartbeat, 8 connections (quick)", "heartbeat", 8),
    Scenario("hb1000", "Heartbeat, 16 connections (quick)", "heartbeat", 16),
    Scenario("mv100", "MeterValues(30), 8 connections (quick)", "meter", 8),
    Scenario("idle2000", "Idle connections, 50 (quick)", "idle", 50),
)


def measure_throughput(server: Server, scen: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    workers = 1 if scen.connections < 4 else args.workers
    with LoadGen(workers, prefix=f"{scen.name}-{int(time.time() * 1000) % 100000}-") as lg:
        opened = lg.open(scen.connections, host=server.host, port=server.port, timeout=args.open_timeout)
        if opened["booted"] < scen.connections:
            raise RuntimeError(
                f"{server.impl}/{scen.name}: only {opened['booted']} connections booted: {opened}"
            )
        load0 = loadavg()
        _start, m0, stop = lg.start_run(scen.kind, mode="closed", seconds=args.seconds, warmup=args.warmup)
        sleep_until(m0)
        cpu0 = proc_cpu_seconds(server.pid)
        lg0 = sum(proc_cpu_seconds(p.pid) for p in lg.procs)
        sleep_until(stop)
        cpu1 = proc_cpu_seconds(server.pid)
        lg1 = sum(proc_cpu_seconds(p.pid) for p in lg.procs)
        res = lg.finish_run(args.seconds)
        res["cpu_us_per_call"] = (cpu1 - cpu0) / res["calls"] * 1e6 if res["calls"] else float("nan")
        # The load generator's own cost per call: the same whatever the server, or the comparison is unfair.
        res["loadgen_us_per_call"] = (lg1 - lg0) / res["calls"] * 1e6 if res["calls"] else float("nan")
        res["server_cpu_pct"] = (cpu1 - cpu0) / args.seconds * 100
        res["peak_rss_mib"] = proc_hwm_kib(server.pid) / 1024
        res["load"] = max(load0, loadavg())
        lg.close_all()
    return res


def measure_idle(server: Server, scen: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    with LoadGen(args.workers, prefix=f"{scen.name}-{int(time.time() * 1000) % 100000}-") as lg:
        # Warm up: first uses (schemas compiled, code paths run) must not count as per-connection memory.
        lg.open(10, host=server.host, port=server.port, timeout=args.open_timeout)
        lg.start_run("heartbeat", mode="closed", seconds=args.seconds)
        lg.finish_run(args.seconds)
        time.sleep(args.settle / 2)
        rss0 = proc_rss_kib(server.pid)
        opened = lg.open(scen.connections, host=server.host, port=server.port, timeout=args.open_timeout)
        if opened["booted"] < scen.connections:
            raise RuntimeError(
                f"{server.impl}/{scen.name}: only {opened['booted']} connections booted: {opened}"
            )
        time.sleep(args.settle)
        rss1 = proc_rss_kib(server.pid)
        res: dict[str, Any] = {
            "kib_per_conn": (rss1 - rss0) / scen.connections,
            "rss_mib": rss1 / 1024,
            "open_s": opened["elapsed"],
            "connect_p50_ms": opened["connect_p50_ms"],
            "load": loadavg(),
        }
        lg.close_all()
    return res


METRICS: dict[str, list[tuple[str, str, str]]] = {
    # key, label, format
    "throughput": [
        ("calls_per_s", "calls/s", "{:,.0f}"),
        ("p50_ms", "latency p50 ms", "{:.2f}"),
        ("p99_ms", "latency p99 ms", "{:.2f}"),
        ("max_ms", "latency max ms", "{:.1f}"),
        ("cpu_us_per_call", "server CPU µs/call", "{:.0f}"),
        ("peak_rss_mib", "server peak RSS MiB", "{:.1f}"),
        ("loadgen_us_per_call", "load generator CPU µs/call", "{:.0f}"),
    ],
    "idle": [
        ("kib_per_conn", "KiB per idle connection", "{:.1f}"),
        ("rss_mib", "server RSS MiB", "{:.1f}"),
    ],
}


def _fmt(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def _ratio(a: list[float], b: list[float]) -> str:
    pairs = [x / y for x, y in zip(a, b, strict=False) if y]
    if not pairs:
        return "-"
    med = statistics.median(pairs)
    if len(pairs) == 1:
        return f"{med:.2f}×"
    return f"{med:.2f}× ({min(pairs):.2f}–{max(pairs):.2f})"


def _ratio_pairs(impls: list[str]) -> list[tuple[str, str]]:
    """Ratio columns: os3p against every other server, and the service (central) against node."""
    pairs = [("os3p", i) for i in impls if i != "os3p" and "os3p" in impls]
    if "central" in impls and "node" in impls:
        pairs.append(("central", "node"))
    return pairs


def print_table(
    results: dict[str, dict[str, list[dict[str, Any]]]], scenarios: tuple[Scenario, ...], impls: list[str]
) -> None:
    pairs = _ratio_pairs(impls)
    cols = impls + [f"{a}/{b}" for a, b in pairs]
    header = ["scenario", "metric", *cols]
    rows: list[list[str]] = []
    for scen in scenarios:
        group = "idle" if scen.kind == "idle" else "throughput"
        first = True
        for key, label, fmt in METRICS[group]:
            vals = {i: [r[key] for r in results[scen.name][i]] for i in impls}
            row = [scen.title if first else "", label]
            first = False
            row += [_fmt(vals[i], fmt) for i in impls]
            row += [_ratio(vals[a], vals[b]) for a, b in pairs]
            rows.append(row)
        errs = {
            i: sum(
                r.get("errors", 0) + r.get("unanswered", 0) + r.get("lost", 0) for r in results[scen.name][i]
            )
            for i in impls
        }
        if any(errs.values()):
            rows.append(
                ["", "errors/unanswered/lost", *[str(errs[i]) for i in impls]]
                + [""] * (len(cols) - len(impls))
            )
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def goals(results: dict[str, dict[str, list[dict[str, Any]]]], impls: list[str]) -> list[str]:
    """The issue 8 and 17 goals, evaluated per repetition (median of the per-rep ratios); a goal whose
    servers were not in the run is left out."""

    def ratios(scen: str, key: str, other: str, ours: str = "os3p") -> list[float]:
        if scen not in results or ours not in impls or other not in impls:
            return []
        a = [r[key] for r in results[scen][ours]]
        b = [r[key] for r in results[scen][other]]
        return [x / y for x, y in zip(a, b, strict=False) if y]

    out = []
    cpu = "cpu_us_per_call"
    checks = [
        ("Heartbeat calls/s, 100 connections ≥ 2× peer", ratios("hb100", "calls_per_s", "peer"), 2.0, True),
        (
            "Heartbeat calls/s, 1,000 connections ≥ 2× peer",
            ratios("hb1000", "calls_per_s", "peer"),
            2.0,
            True,
        ),
        ("MeterValues(30) calls/s ≥ 5× peer", ratios("mv100", "calls_per_s", "peer"), 5.0, True),
        (
            "server CPU per Heartbeat (100 conns) ≤ 1.3× floor",
            ratios("hb100", "cpu_us_per_call", "floor"),
            1.3,
            False,
        ),
        (
            "server CPU per Heartbeat (1,000 conns) ≤ 1.3× floor",
            ratios("hb1000", "cpu_us_per_call", "floor"),
            1.3,
            False,
        ),
        # Issue 17: against the strongest peer, server CPU per call at 100 connections.
        ("os3p server CPU per Heartbeat ≤ 1.5× node", ratios("hb100", cpu, "node"), 1.5, False),
        ("os3p server CPU per MeterValues(30) ≤ 2.5× node", ratios("mv100", cpu, "node"), 2.5, False),
        ("central CPU per Heartbeat ≤ 2.0× node", ratios("hb100", cpu, "node", "central"), 2.0, False),
        ("central CPU per MeterValues(30) ≤ 3.0× node", ratios("mv100", cpu, "node", "central"), 3.0, False),
    ]
    for label, vals, target, higher in checks:
        if not vals:
            continue
        med = statistics.median(vals)
        ok = med >= target if higher else med <= target
        out.append(
            f"{'MET   ' if ok else 'MISSED'} {label}: {med:.2f}× (reps {min(vals):.2f}–{max(vals):.2f})"
        )
    idle = results.get("idle2000", {}).get("os3p", [])
    kib = [r["kib_per_conn"] for r in idle]
    if kib:
        med = statistics.median(kib)
        out.append(
            f"{'MET   ' if med <= 12 else 'MISSED'} memory per idle connection ≤ 12 KiB: {med:.1f} KiB "
            f"(reps {min(kib):.1f}–{max(kib):.1f})"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (CI smoke run)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before the window (not counted)")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument(
        "--impls",
        default="os3p,peer,node,floor",
        help="comma-separated: os3p,peer,node,floor,central,peer-sync",
    )
    parser.add_argument(
        "--scenarios", default="", help="comma-separated subset of hb1,hb100,hb1000,mv100,idle2000"
    )
    parser.add_argument("--open-timeout", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before reading the idle RSS")
    parser.add_argument("--json", help="write every raw figure to this file")
    args = parser.parse_args(argv)
    scenarios: tuple[Scenario, ...] = QUICK if args.quick else FULL
    if args.quick:
        args.reps, args.seconds, args.warmup, args.workers, args.settle = 1, 0.15, 0.05, 1, 0.2
    if args.scenarios:
        wanted = set(args.scenarios.split(","))
        scenarios = tuple(s for s in scenarios if s.name in wanted)
    impls = args.impls.split(",")
    if "node" in impls and shutil.which("node") is None:
        print("# node is not on PATH: the ocpp-rpc peer (--impls node) is skipped in this run", flush=True)
        impls.remove("node")
    info = machine()
    print(
        f"# e2e_compare: {info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"{info['date_utc']}, load average {loadavg():.2f}; reps={args.reps} "
        f"window={args.seconds:g}s warmup={args.warmup:g}s workers={args.workers}",
        flush=True,
    )
    results: dict[str, dict[str, list[dict[str, Any]]]] = {s.name: {i: [] for i in impls} for s in scenarios}
    t_start = time.monotonic()
    loads: list[float] = []
    shared: dict[str, Server] = {}
    try:
        if args.quick:
            for impl in impls:
                shared[impl] = Server(impl)
        for rep in range(args.reps):
            for scen in scenarios:
                for impl in impls:
                    server = shared.get(impl) or Server(impl)
                    try:
                        if scen.kind == "idle":
                            r = measure_idle(server, scen, args)
                        else:
                            r = measure_throughput(server, scen, args)
                    finally:
                        if impl not in shared:
                            server.stop()
                    loads.append(r["load"])
                    results[scen.name][impl].append(r)
                    shown = {k: round(v, 2) for k, v in r.items() if isinstance(v, float | int)}
                    print(f"rep {rep + 1} {scen.name:8s} {impl:8s} {shown}", flush=True)
    finally:
        for s in shared.values():
            s.stop()
    print()
    print(
        f"## e2e_compare results: median (min–max) of {args.reps} rep(s); "
        f"{time.monotonic() - t_start:.0f} s; load average {min(loads):.2f}–{max(loads):.2f}"
    )
    print()
    print_table(results, scenarios, impls)
    if not args.quick:
        print()
        for line in goals(results, impls):
            print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
