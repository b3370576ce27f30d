"""Console and metrics endpoints under load (issue 15): ``os3p-central serve`` carrying an
``os3p-sim fleet`` of N stations (separate processes), then R sequential requests to each console and
metrics endpoint; prints p50/p99/max.

    python benchmarks/console_bench.py --stations 2000 --requests 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stations", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--ramp", type=float, default=200.0)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tmp = Path(tempfile.mkdtemp(prefix="os3p-console-bench-"))
    ws_port, api_port = 19220 + os.getpid() % 500, 19820 + os.getpid() % 500
    central = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "os3p_trio.central.cli",
            "serve",
            "--db",
            str(tmp / "cs.sqlite"),
            "--open-registration",
            "--auth",
            "none",
            "--port",
            str(ws_port),
            "--api-port",
            str(api_port),
            "--synchronous",
            "NORMAL",
            "--heartbeat-interval",
            "60",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    fleet = None
    try:
        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        fleet = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "os3p_sim.cli",
                "fleet",
                "--url",
                f"ws://127.0.0.1:{ws_port}/OS3P",
                "--count",
                str(args.stations),
                "--ramp",
                str(args.ramp),
                "--meter-interval",
                "60",
                "--time-scale",
                "10",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + args.stations / args.ramp * 4 + 60
            while time.monotonic() < deadline:
                connected = client.get("/api/fleet").json()["stations"]["connected"]
                if connected >= args.stations:
                    break
                time.sleep(1)
            time.sleep(5)
            fleet_state = client.get("/api/fleet").json()
            print(f"# {fleet_state['stations']} load {os.getloadavg()[0]:.2f}")
            paths = [
                "/",
                "/api/fleet",
                "/metrics",
                "/stations?q=SIM-001",
                "/stations?state=connected",
                "/stations/SIM-00042",
                "/api/stations/SIM-00042/messages",
                "/healthz",
                "/readyz",
            ]
            print("| endpoint | p50 ms | p99 ms | max ms |")
            print("| --- | --- | --- | --- |")
            for path in paths:
                times = []
                for _ in range(args.requests):
                    started = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                times.sort()
                p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
                print(f"| `{path}` | {statistics.median(times):.1f} | {p99:.1f} | {times[-1]:.1f} |")
            print(
                "# stations connected at the end: "
                f"{client.get('/api/fleet').json()['stations']['connected']}, "
                f"load {os.getloadavg()[0]:.2f}"
            )
    finally:
        for proc in (fleet, central):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
