"""Typed payload speed: structure (dict → object) and unstructure (object → dict).

Run:  python benchmarks/payloads_bench.py [--quick]

For each payload it prints the per-call time of schema validation (for scale: that is what every
message pays on the hot path), typed structuring and unstructuring, plus the one-off costs:
building the converter (imports cattrs) and generating the hooks of a class on first use.
Figures for the record go to benchmarks/RESULTS.md ("Typed payloads").
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

BOOT = {
    "vendor": "BrandX",
    "model": "SUBS-A1",
    "stationNumber": "987654321",
    "serialNumber": "AQ1234VB5678",
    "firmwareVersion": "1.1.0",
    "iccid": "83310415107943019317",
    "imsi": "080921439201835338",
}
_MEASURANDS = ["Voltage.L1N", "Voltage.L2N", "Voltage.L3N", "Current.L1", "Current.L2", "Current.L3"]
METER_VALUES_30 = {
    "meterValue": [
        {
            "timestamp": "2013-03-07T16:52:16Z",
            "sampledValue": [
                {
                    "value": f"{230 + i / 10:.1f}",
                    "measurand": _MEASURANDS[i % 6],
                    "unit": "V" if i % 6 < 3 else "A",
                    "context": "Sample.Periodic",
                    "location": "In",
                }
                for i in range(30)
            ],
        }
    ]
}
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("Heartbeat request", "Heartbeat", {}),
    ("BootNotification request (annex §M6.1.2)", "BootNotification", BOOT),
    ("MeterValues request, 1 meterValue x 30 sampledValues", "MeterValues", METER_VALUES_30),
]


def per_call(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Best-of-``repeat`` seconds per call (the minimum is the least disturbed by other load)."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7

    started = time.perf_counter()
    import os3p_core

    import_s = time.perf_counter() - started
    started = time.perf_counter()
    converter = os3p_core.PayloadConverter()
    build_s = time.perf_counter() - started
    print(f"python {sys.version.split()[0]}; import os3p_core {import_s * 1e3:.1f} ms (no cattrs)")
    print(f"PayloadConverter() first build (imports cattrs): {build_s * 1e3:.1f} ms")

    for title, action, payload in CASES:
        started = time.perf_counter()
        obj = converter.structure_request(action, payload)
        first_structure_s = time.perf_counter() - started
        started = time.perf_counter()
        converter.unstructure(obj)
        first_unstructure_s = time.perf_counter() - started
        assert converter.structure_request(action, converter.unstructure(obj)) == obj

        number = 200 if action == "MeterValues" else 5000
        if args.quick:
            number //= 10
        os3p_core.validate_request(action, payload)  # compile once
        validate = per_call(functools.partial(os3p_core.validate_request, action, payload), number, repeat)
        structure = per_call(functools.partial(converter.structure_request, action, payload), number, repeat)
        unstructure = per_call(functools.partial(converter.unstructure, obj), number, repeat)
        print(f"\n{title}")
        print(
            f"  first use (hook generation): structure {first_structure_s * 1e3:.2f} ms, "
            f"unstructure {first_unstructure_s * 1e3:.2f} ms"
        )
        print(f"  validate     {validate * 1e6:8.2f} µs/call")
        print(f"  structure    {structure * 1e6:8.2f} µs/call  ({structure / validate:.1f}x validate)")
        print(f"  unstructure  {unstructure * 1e6:8.2f} µs/call  ({unstructure / validate:.1f}x validate)")

    # Per-class cost of a generated hook, averaged over every payload class.
    fresh = os3p_core.PayloadConverter()
    times = []
    for action in os3p_core.Action:
        for cls in (os3p_core.request_class(action), os3p_core.response_class(action)):
            started = time.perf_counter()
            fresh.cattrs_converter.get_structure_hook(cls)
            fresh.cattrs_converter.get_unstructure_hook(cls)
            times.append(time.perf_counter() - started)
    print(
        f"\nhook generation, all 42 classes (structure + unstructure, nested classes included): "
        f"{sum(times) * 1e3:.1f} ms total, median {statistics.median(times) * 1e3:.2f} ms per class"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
