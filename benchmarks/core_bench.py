"""Benchmark of os3p_core's data layer: decode + validate (+ structure), against the ocpp package's path.

Run from the repository root (the figures in ``benchmarks/RESULTS.md`` come from the full run)::

    python benchmarks/core_bench.py            # full run, ~30 s
    python benchmarks/core_bench.py --quick    # tiny sizes: a CI smoke test (~2 s), figures not meaningful

Three messages, each a CALL as it arrives off the WebSocket:

- a Heartbeat CALL (``{}`` payload),
- the spec's BootNotification (annex §M6.1.2 example),
- a MeterValues with one meterValue of 30 sampledValues.

For each, in one run:

1. **validate**: the payload dict (already decoded) against its request schema —
   ``os3p_core.validate_request`` (fastjsonschema, compiled once) versus the ``ocpp`` package's way
   (ocpp 2.1 ``ocpp/messages.py``: a ``jsonschema.Draft4Validator`` built once per schema, cached
   in a dict by name, ``validator.validate(payload)``), given *our* schema so both check the same
   rules.  ocpp builds its validator without a format checker, so it checks no ``date-time``
   formats, and we do: the comparison favours ocpp.
2. **decode + validate**: text -> frame -> validated payload.  Ours: ``os3p_core._frames.parse``
   (the connection's hot path) then ``validate_request``.  ocpp: ``ocpp.messages.unpack`` then its
   cached validator, as ``ocpp.messages._validate_payload`` does synchronously (ocpp's default even
   runs it in a thread-pool executor, which is slower still).
3. **decode + validate + structure**: plus the typed object.  Ours: ``os3p_core._converter
   .structure_request`` (attrs classes via cattrs).  ocpp: ``ocpp.charge_point.camel_to_snake_case``,
   what ocpp does before calling a handler (it builds no typed object for requests).

Each figure is the best of several repeats (µs per message, and messages per second), and the
ratio ocpp / ours.  Before that, the script reports the import time of ``os3p_core`` (fresh
interpreters) and the first-use (compile) time of each of the 42 schemas.

Goals (issue 2): validation >= 15x faster than the ocpp path on BootNotification and MeterValues;
decode + validate of a Heartbeat CALL <= 10 µs.  The script prints whether they are met and exits
non-zero if not (unless ``--quick``, whose sizes are too small to judge).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

import os3p_core  # noqa: E402
from os3p_core import Action, validate_request  # noqa: E402

# --- the messages ------------------------------------------------------------------------------------

HEARTBEAT_CALL = '[2,"19223201","Heartbeat",{}]'

from bench_messages import BOOT_PAYLOAD, METER_PAYLOAD  # noqa: E402  (benchmarks/ is sys.path[0])

MESSAGES: list[tuple[str, str, dict[str, Any]]] = [
    ("Heartbeat", "Heartbeat", {}),
    ("BootNotification (annex §M6.1.2)", "BootNotification", BOOT_PAYLOAD),
    ("MeterValues (1 x 30 sampledValues)", "MeterValues", METER_PAYLOAD),
]


def _call_text(action: str, payload: dict[str, Any]) -> str:
    return json.dumps([2, "19223201", action, payload], separators=(",", ":"))


# --- timing ------------------------------------------------------------------------------------------


def _best_us(loop: Callable[[int], float], seconds: float, repeat: int) -> float:
    """Best (lowest) µs per operation over ``repeat`` runs of about ``seconds`` each."""
    estimate = loop(10) / 10  # also the warm-up (compiles, caches)
    number = max(10, int(seconds / max(estimate, 1e-9)))
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            times.append(loop(number))
        finally:
            gc.enable()
    return min(times) / number * 1e6


# Each loop is written out, not wrapped in a lambda per operation, so the figure is the work itself.


def _ours_validate(action: str, payload: dict[str, Any]) -> Callable[[int], float]:
    def loop(n: int) -> float:
        validate = validate_request
        t0 = time.perf_counter()
        for _ in range(n):
            validate(action, payload)
        return time.perf_counter() - t0

    return loop


def _ours_decode_validate(text: str) -> Callable[[int], float]:
    from os3p_core._frames import parse

    def loop(n: int) -> float:
        validate = validate_request
        t0 = time.perf_counter()
        for _ in range(n):
            msg = parse(text)
            validate(msg[2], msg[3])  # type: ignore[index]
        return time.perf_counter() - t0

    return loop


def _ours_decode_validate_structure(text: str) -> Callable[[int], float]:
    from os3p_core._converter import structure_request
    from os3p_core._frames import parse

    def loop(n: int) -> float:
        validate = validate_request
        structure = structure_request
        t0 = time.perf_counter()
        for _ in range(n):
            msg = parse(text)
            validate(msg[2], msg[3])  # type: ignore[index]
            structure(msg[2], msg[3])  # type: ignore[index]
        return time.perf_counter() - t0

    return loop


# The ocpp path, replicated from ocpp 2.1 ocpp/messages.py (get_validator + _validate_payload).
_ocpp_validators: dict[str, Any] = {}


def _ocpp_get_validator(message_type_id: int, action: str) -> Any:
    from jsonschema import Draft4Validator

    schema_name = action + ("Response" if message_type_id == 3 else "Request")
    cache_key = schema_name + "_os3p"
    if cache_key in _ocpp_validators:
        return _ocpp_validators[cache_key]
    validator = Draft4Validator(os3p_core.load_schema(action, schema_name[len(action) :]))
    _ocpp_validators[cache_key] = validator
    return validator


def _ocpp_validate_payload(message: Any) -> None:
    validator = _ocpp_get_validator(message.message_type_id, message.action)
    validator.validate(message.payload)  # ocpp maps SchemaValidationError to its errors; none raised here


def _ocpp_validate(action: str, payload: dict[str, Any]) -> Callable[[int], float]:
    from ocpp.messages import Call

    message = Call("19223201", action, payload)

    def loop(n: int) -> float:
        validate = _ocpp_validate_payload
        t0 = time.perf_counter()
        for _ in range(n):
            validate(message)
        return time.perf_counter() - t0

    return loop


def _ocpp_decode_validate(text: str) -> Callable[[int], float]:
    from ocpp.messages import unpack

    def loop(n: int) -> float:
        validate = _ocpp_validate_payload
        t0 = time.perf_counter()
        for _ in range(n):
            validate(unpack(text))
        return time.perf_counter() - t0

    return loop


def _ocpp_decode_validate_structure(text: str) -> Callable[[int], float]:
    from ocpp.charge_point import camel_to_snake_case
    from ocpp.messages import unpack

    def loop(n: int) -> float:
        validate = _ocpp_validate_payload
        t0 = time.perf_counter()
        for _ in range(n):
            message = unpack(text)
            validate(message)
            camel_to_snake_case(message.payload)
        return time.perf_counter() - t0

    return loop


# --- import and compile times ------------------------------------------------------------------------


def import_time_ms(runs: int) -> tuple[float, float]:
    """(min, median) ms to ``import os3p_core`` in a fresh interpreter (python startup excluded)."""
    code = "import time; t = time.perf_counter(); import os3p_core; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60, env=env
        )
        samples.append(float(out.stdout) * 1e3)
    return min(samples), statistics.median(samples)


def compile_times_ms() -> tuple[float, dict[str, float]]:
    """(ms to import fastjsonschema, {schema: ms of its first validation, i.e. compile + one run}).

    Must run before anything in this process validated.
    """
    from os3p_core import SchemaViolation, validate_response

    t = time.perf_counter()
    import fastjsonschema  # noqa: F401  (what the first validation would import)

    fjs_ms = (time.perf_counter() - t) * 1e3
    times: dict[str, float] = {}
    for action in Action:
        for kind, validate in (("Request", validate_request), ("Response", validate_response)):
            t = time.perf_counter()
            with contextlib.suppress(SchemaViolation):  # {} is invalid for many; compiling is the point
                validate(action.value, {})
            times[f"{action.value}{kind}"] = (time.perf_counter() - t) * 1e3
    return fjs_ms, times


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a CI smoke test")
    parser.add_argument("--seconds", type=float, default=None, help="time per repeat (default 0.2)")
    parser.add_argument("--repeat", type=int, default=None, help="repeats, best taken (default 5)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (0.005 if args.quick else 0.2)
    repeat = args.repeat or (2 if args.quick else 5)

    print(f"os3p core_bench  python {platform.python_version()}  {platform.machine()}  cpus={os.cpu_count()}")
    note = "  (--quick: figures not meaningful)" if args.quick else ""
    print(f"best of {repeat} repeats of ~{seconds} s each{note}")

    fjs_ms, compile_ms = compile_times_ms()  # first: nothing has validated yet
    imp_min, imp_med = import_time_ms(2 if args.quick else 7)
    print()
    print(f"import os3p_core (fresh interpreter): min {imp_min:.1f} ms, median {imp_med:.1f} ms")
    print(f"first validation imports fastjsonschema: {fjs_ms:.1f} ms (once per process)")
    values = sorted(compile_ms.values())
    slowest = max(compile_ms, key=compile_ms.__getitem__)
    print(
        f"first use (compile + 1 validation) per schema, 42 schemas: min {values[0]:.2f} ms, "
        f"median {statistics.median(values):.2f} ms, max {values[-1]:.2f} ms ({slowest}), "
        f"total {sum(values):.0f} ms"
    )
    names = list(compile_ms)  # Action order, Request then Response
    for i in range(0, len(names), 2):
        print("    " + "   ".join(f"{name:<43} {compile_ms[name]:5.2f} ms" for name in names[i : i + 2]))

    rows: list[tuple[str, str, float, float]] = []
    for label, action, payload in MESSAGES:
        text = _call_text(action, payload)
        measured = [
            ("validate", _ours_validate(action, payload), _ocpp_validate(action, payload)),
            ("decode + validate", _ours_decode_validate(text), _ocpp_decode_validate(text)),
            ("decode + validate + structure", _ours_decode_validate_structure(text),
             _ocpp_decode_validate_structure(text)),
        ]  # fmt: skip
        for stage, ours, theirs in measured:
            ours_us = _best_us(ours, seconds, repeat)
            ocpp_us = _best_us(theirs, seconds, repeat)
            rows.append((label, stage, ours_us, ocpp_us))

    print()
    header = ("message", "stage", "os3p µs", "os3p msg/s", "ocpp µs", "ocpp msg/s", "ratio")
    print("{:<36} {:<30} {:>9} {:>11} {:>9} {:>11} {:>7}".format(*header))
    for label, stage, ours_us, ocpp_us in rows:
        print(
            f"{label:<36} {stage:<30} {ours_us:9.2f} {1e6 / ours_us:11,.0f} {ocpp_us:9.2f} "
            f"{1e6 / ocpp_us:11,.0f} {ocpp_us / ours_us:6.1f}x"
        )

    def figure(label_prefix: str, stage: str) -> tuple[float, float]:
        for label, st, ours_us, ocpp_us in rows:
            if label.startswith(label_prefix) and st == stage:
                return ours_us, ocpp_us
        raise KeyError(label_prefix)

    goals = []
    for prefix in ("BootNotification", "MeterValues"):
        ours_us, ocpp_us = figure(prefix, "validate")
        goals.append((f"validation of {prefix} >= 15x faster than ocpp", ocpp_us / ours_us >= 15,
                      f"{ocpp_us / ours_us:.1f}x"))  # fmt: skip
    hb_us, _ = figure("Heartbeat", "decode + validate")
    goals.append(("decode + validate of a Heartbeat CALL <= 10 µs", hb_us <= 10, f"{hb_us:.2f} µs"))
    print()
    for name, ok, value in goals:
        print(f"goal: {name}: {value} -> {'met' if ok else 'NOT MET'}")
    if args.quick:
        return 0
    return 0 if all(ok for _, ok, _ in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
