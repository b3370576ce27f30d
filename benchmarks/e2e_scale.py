"""Scale run (issue 8): how many stations one server process holds, booted and heartbeating, and how fast
10,000 of them come back after a restart (reconnect storm).

Usage (from the repository root, dev venv)::

    python benchmarks/e2e_scale.py                          # os3p, 1,000 → 19,900 stations, storm at 10,000
    python benchmarks/e2e_scale.py --impl peer --steps 1000,5000,10000 --storm-at 0
    python benchmarks/e2e_scale.py --quick                  # tiny, a few seconds (smoke run)

Procedure, on one server process (``e2e_server.py``):

1. steps of N stations (default 1,000 → 5,000 → 10,000 → 15,000 → 19,000 → 19,900: this machine allows
   20,000 open files per process, and the server needs a few for itself).  At each step the load generator
   (``--workers`` processes, each on its own 127.0.0.x source address) opens the missing connections, each
   booting with a BootNotification (bounded concurrency per worker, retries until ``--open-timeout``);
2. 2 s with no traffic: the server's idle CPU (keepalive timers and the like);
3. a window of ``--window`` seconds in which every station heartbeats every ``--interval`` seconds from a
   random phase (paced, one call in flight per station: N / interval calls/s): latency p50/p99/max, calls
   answered, server CPU (% of one core and µs per call), server RSS; then a full garbage collection in the
   server (SIGUSR1): how long it stalls the loop with N stations;
4. at ``--storm-at`` stations, the reconnect storm: the load generator is armed (every connection lost
   reconnects at once, retrying every ~0.25 s, and boots again), the server is stopped with SIGTERM (it closes
   every connection with 1001), a new server process is started on the same port, and the time from its
   start until every station has booted again is measured.  Stations retry with exponential back-off and
   full jitter (0.25 s doubling up to 5 s: ``--retry-delay``, ``--retry-cap``), as a fleet's would (issue 5),
   only faster.  ``--stop kill`` crashes the server (SIGKILL) instead; then one more heartbeat window on
   the new server.  The later steps continue on that server.

Every figure goes to stdout as a table, to ``--json`` if given, and memory and latency against connections
are plotted to ``--png`` (default ``benchmarks/e2e_scale.png``).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

from e2e_common import Server, loadavg, machine
from loadgen import LoadGen, proc_cpu_seconds, proc_hwm_kib, proc_rss_kib


def _server_nofile(pid: int) -> str:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return " ".join(line.split()[3:5])
    return "?"


def heartbeat_window(server: Server, lg: LoadGen, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Idle CPU, then a paced heartbeat window over every station; the server's figures."""
    cpu_a = proc_cpu_seconds(server.pid)
    time.sleep(args.idle)
    cpu_b = proc_cpu_seconds(server.pid)
    rss_idle = proc_rss_kib(server.pid)
    load0 = loadavg()
    _start, m0, stop = lg.start_run(
        "heartbeat", mode="paced", seconds=args.window, interval=args.interval, drain=args.interval + 10
    )
    time.sleep(max(0.0, m0 - time.monotonic()))
    cpu0 = proc_cpu_seconds(server.pid)
    time.sleep(max(0.0, stop - time.monotonic()))
    cpu1 = proc_cpu_seconds(server.pid)
    res = lg.finish_run(args.window)
    gc_objects, gc_ms = server.gc_report()
    res.update(
        connections=n,
        gc_objects=gc_objects,
        gc_ms=gc_ms,
        idle_cpu_pct=(cpu_b - cpu_a) / args.idle * 100,
        cpu_pct=(cpu1 - cpu0) / args.window * 100,
        cpu_us_per_call=(cpu1 - cpu0) / res["calls"] * 1e6 if res["calls"] else float("nan"),
        rss_mib=rss_idle / 1024,
        rss_after_mib=proc_rss_kib(server.pid) / 1024,
        hwm_mib=proc_hwm_kib(server.pid) / 1024,
        load=max(load0, loadavg()),
    )
    return res


def storm(server: Server, lg: LoadGen, n: int, args: argparse.Namespace) -> tuple[Server, dict[str, Any]]:
    """Stop the server with ``n`` stations connected, restart it, wait until all have booted again."""
    lg.start_storm(timeout=args.storm_timeout, retry_delay=args.retry_delay, retry_cap=args.retry_cap)
    time.sleep(0.2)  # the arm command reaches every worker before the first close
    port = server.port
    t_stop = time.monotonic()
    if args.stop == "kill":
        server.proc.kill()  # a crash: no closing handshake, the stations see the TCP connection drop
    shutdown_s = server.stop(timeout=120)
    spawned = time.monotonic()
    new = Server(args.impl, port=port)
    res = lg.finish_storm()
    res.update(
        connections=n,
        shutdown_s=shutdown_s,
        server_start_s=new.ready - spawned,
        storm_s=res["last"] - spawned,
        storm_from_ready_s=res["last"] - new.ready,
        stop_to_all_booted_s=res["last"] - t_stop,
        rss_mib=proc_rss_kib(new.pid) / 1024,
        cpu_s=proc_cpu_seconds(new.pid),
        load=loadavg(),
    )
    return new, res


def plot(steps: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [s["connections"] for s in steps]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(xs, [s["rss_mib"] for s in steps], "o-", label="server RSS (idle)")
    ax1.plot(xs, [s["hwm_mib"] for s in steps], "s--", label="server peak RSS")
    ax1.set_xlabel("connected stations")
    ax1.set_ylabel("MiB")
    ax1.set_title("Server memory")
    ax1b = ax1.twinx()
    ax1b.plot(xs, [s["kib_per_conn"] for s in steps], "^:", color="tab:green", label="KiB per station")
    ax1b.set_ylabel("KiB per station", color="tab:green")
    ax1b.set_ylim(bottom=0)
    lines = ax1.get_legend_handles_labels()[0] + ax1b.get_legend_handles_labels()[0]
    labels = ax1.get_legend_handles_labels()[1] + ax1b.get_legend_handles_labels()[1]
    ax1.legend(lines, labels, loc="upper left", fontsize=8)
    ax1.grid(True, alpha=0.3)
    for key, style in (("p50_ms", "o-"), ("p99_ms", "s-"), ("max_ms", "^--")):
        ax2.plot(xs, [s[key] for s in steps], style, label=key.replace("_ms", ""))
    ax2.set_yscale("log")
    ax2.set_xlabel("connected stations")
    ax2.set_ylabel("Heartbeat latency, ms (log)")
    ax2.set_title("Heartbeat latency (each station every interval)")
    ax2.legend(fontsize=8)
    ax2.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--impl", default="os3p", help="e2e_server.py implementation")
    parser.add_argument("--steps", default="1000,5000,10000,15000,19000,19900")
    parser.add_argument("--storm-at", type=int, default=10000, help="0: no reconnect storm")
    parser.add_argument("--workers", type=int, default=4, help="load-generator processes (one source each)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between a station's heartbeats")
    parser.add_argument("--window", type=float, default=10.0, help="measured heartbeat window per step")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds of no traffic (idle CPU)")
    parser.add_argument("--open-timeout", type=float, default=180.0)
    parser.add_argument("--concurrency", type=int, default=256, help="handshakes in progress per worker")
    parser.add_argument("--storm-timeout", type=float, default=180.0)
    parser.add_argument("--retry-delay", type=float, default=0.25, help="first reconnect back-off (s)")
    parser.add_argument("--retry-cap", type=float, default=5.0, help="largest reconnect back-off (s)")
    parser.add_argument(
        "--stop", choices=("term", "kill"), default="term", help="stop the server gracefully or crash it"
    )
    parser.add_argument("--png", default="benchmarks/e2e_scale.png")
    parser.add_argument("--json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.storm_at, args.workers = "20,60", 60, 2
        args.interval, args.window, args.idle = 0.5, 0.5, 0.2
    steps_wanted = [int(s) for s in args.steps.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    per_worker = -(-max(steps_wanted) // args.workers)
    info = machine()
    print(
        f"# e2e_scale: impl={args.impl}, {info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"{info['date_utc']}; load average {loadavg():.2f}; ulimit -n here {soft}/{hard}, "
        f"{args.workers} load-generator processes × ≤ {per_worker} connections",
        flush=True,
    )
    if per_worker + 64 > hard:
        print(f"too many connections per worker for ulimit -n {hard}: use more --workers", file=sys.stderr)
        return 2
    sources = [f"127.0.0.{i + 1}" for i in range(args.workers)]
    results: list[dict[str, Any]] = []
    storm_res: dict[str, Any] | None = None
    after_storm: dict[str, Any] | None = None
    server = Server(args.impl)
    limit_note = ""
    try:
        print(f"# server pid {server.pid}, open files limit {_server_nofile(server.pid)}", flush=True)
        rss_base = proc_rss_kib(server.pid)
        with LoadGen(args.workers, sources=sources, prefix="SCALE") as lg:
            current = 0
            for n in steps_wanted:
                t0 = time.monotonic()
                opened = lg.open(
                    n - current,
                    host=server.host,
                    port=server.port,
                    timeout=args.open_timeout,
                    concurrency=args.concurrency,
                )
                current += opened["booted"]
                print(
                    f"step {n}: opened {opened['booted']}/{n - current + opened['booted']} in "
                    f"{time.monotonic() - t0:.1f} s (failed attempts {opened['failures']}, "
                    f"errnos {opened['errnos']}, connect+boot p50 {opened['connect_p50_ms']:.0f} ms "
                    f"max {opened['connect_max_ms']:.0f} ms)",
                    flush=True,
                )
                r = heartbeat_window(server, lg, current, args)
                r["open_s"] = opened["elapsed"]
                r["open_failures"] = opened["failures"]
                r["kib_per_conn"] = (r["rss_mib"] * 1024 - rss_base) / current if current else 0.0
                prev = results[-1] if results else None
                if prev is not None and current > prev["connections"]:
                    r["kib_marginal"] = (
                        (r["rss_mib"] - prev["rss_mib"]) * 1024 / (current - prev["connections"])
                    )
                else:
                    r["kib_marginal"] = float("nan")
                results.append(r)
                print(
                    f"  {current} stations: {r['calls']} heartbeats answered ({r['calls_per_s']:.0f}/s), "
                    f"errors {r['errors']}, unanswered {r['unanswered']}, lost {r['lost']}; latency p50 "
                    f"{r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms max {r['max_ms']:.1f} ms; server CPU "
                    f"{r['cpu_pct']:.0f}% ({r['cpu_us_per_call']:.0f} µs/call), "
                    f"idle {r['idle_cpu_pct']:.1f}%; "
                    f"RSS {r['rss_mib']:.0f} MiB ({r['kib_per_conn']:.1f} KiB/station), peak "
                    f"{r['hwm_mib']:.0f} MiB; full GC {r['gc_ms']:.0f} ms over {r['gc_objects']:,} objects; "
                    f"load {r['load']:.1f}",
                    flush=True,
                )
                if current < n:
                    limit_note = f"stopped at {current} stations: {n - current} of step {n} did not connect"
                    print(f"  {limit_note}", flush=True)
                    break
                if args.storm_at and current == args.storm_at:
                    server, storm_res = storm(server, lg, current, args)
                    sr = storm_res
                    print(
                        f"  reconnect storm of {current}: {sr['rebooted']}/{sr['wanted']} booted "
                        f"again {sr['storm_s']:.1f} s after the restart ({sr['storm_from_ready_s']:.1f}"
                        f" s after it listened; server stop {sr['shutdown_s']:.1f} s, start "
                        f"{sr['server_start_s']:.1f} s); failed attempts {sr['failures']} "
                        f"{sr['errnos']}; per-attempt connect+boot p50 "
                        f"{sr['attempt_p50_ms']:.0f} ms max {sr['attempt_max_ms']:.0f} ms",
                        flush=True,
                    )
                    after_storm = heartbeat_window(server, lg, current, args)
                    print(
                        f"  after the storm: {after_storm['calls']} heartbeats answered, errors "
                        f"{after_storm['errors']}, unanswered {after_storm['unanswered']}; p50 "
                        f"{after_storm['p50_ms']:.1f} ms p99 {after_storm['p99_ms']:.1f} ms max "
                        f"{after_storm['max_ms']:.1f} ms; RSS {after_storm['rss_mib']:.0f} MiB",
                        flush=True,
                    )
            lg.close_all()
    finally:
        server.stop(timeout=60)
    print()
    print(
        f"## e2e_scale {args.impl}: paced Heartbeat every {args.interval:g} s per station, "
        f"{args.window:g} s windows"
    )
    print()
    print(
        "| stations | open s | heartbeats/s | p50 ms | p99 ms | max ms | CPU % | CPU µs/call | idle CPU % "
        "| RSS MiB | KiB/station | KiB/added station | full GC ms | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['connections']:,} | {r['open_s']:.1f} | {r['calls_per_s']:,.0f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['cpu_pct']:.0f} | {r['cpu_us_per_call']:.0f} | "
            f"{r['idle_cpu_pct']:.1f} | {r['rss_mib']:.0f} | {r['kib_per_conn']:.1f} | "
            f"{r['kib_marginal']:.1f} | {r['gc_ms']:.0f} | "
            f"{r['load']:.1f} |"
        )
    if storm_res is not None:
        print()
        print(
            f"Reconnect storm of {storm_res['connections']:,}: all {storm_res['rebooted']:,} booted again "
            f"{storm_res['storm_s']:.1f} s after the restart (server stop {storm_res['shutdown_s']:.1f} s, "
            f"server start {storm_res['server_start_s']:.1f} s)"
        )
    if limit_note:
        print(limit_note)
    if args.png and results:
        title = (
            f"os3p e2e_scale ({args.impl}), {info['cpus']} CPUs, {info['date_utc']}, heartbeat every "
            f"{args.interval:g} s per station"
        )
        plot(results, args.png, title)
        print(f"plot: {args.png}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "args": vars(args),
                    "steps": results,
                    "storm": storm_res,
                    "after_storm": after_storm,
                    "limit": limit_note,
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
