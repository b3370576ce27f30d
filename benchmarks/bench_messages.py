"""The benchmark messages shared by ``core_bench.py`` (in-process decode/validate) and ``loadgen.py``
(end-to-end load): the annex BootNotification and a MeterValues of 30 sampled values.  Plain data, no
imports of os3p, so importing it changes no first-use measurement."""

from __future__ import annotations

from typing import Any

# Annex §M6.1.2 example request.
BOOT_PAYLOAD: dict[str, Any] = {
    "vendor": "BrandX",
    "model": "SUBS-A1",
    "stationNumber": "987654321",
    "serialNumber": "AQ1234VB5678",
    "firmwareVersion": "1.1.0",
    "iccid": "83310415107943019317",
    "imsi": "080921439201835338",
}

# One meterValue of 30 sampledValues: a realistic quarter-hour reading of a substation.
MEASURANDS = [
    ("Voltage.L1N", "V"),
    ("Voltage.L2N", "V"),
    ("Voltage.L3N", "V"),
    ("Current.L1", "A"),
    ("Current.L2", "A"),
    ("Current.L3", "A"),
    ("Current.N", "A"),
    ("Current.Sum", "A"),
    ("PowerFactor.L1", None),
    ("PowerFactor.L2", None),
    ("PowerFactor.L3", None),
    ("PowerFactor.Sum", None),
    ("ActivePower.L1", "W"),
    ("ActivePower.L2", "W"),
    ("ActivePower.L3", "W"),
    ("ActivePower.Sum", "W"),
    ("ReactivePower.L1", "var"),
    ("ReactivePower.L2", "var"),
    ("ReactivePower.L3", "var"),
    ("ReactivePower.Sum", "var"),
    ("RealEnergyDelivered.Sum", "Wh"),
    ("ApparentEnergy.Sum", "VAh"),
    ("ReactiveEnergy.Sum", "varh"),
    ("THDv.L1N", "%"),
    ("THDv.L2N", "%"),
    ("THDv.L3N", "%"),
    ("Frequency", "Hz"),
    ("AmbientTemperature", "C"),
    ("OilTemperature", "C"),
    ("Energy.Active.Import.Register", "kWh"),
]
assert len(MEASURANDS) == 30


def sampled_value(i: int, measurand: str, unit: str | None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "value": f"{230.0 + i * 1.5:.1f}",
        "context": "Sample.Periodic",
        "measurand": measurand,
    }
    if unit is not None:
        value["unit"] = unit
    if measurand == "Energy.Active.Import.Register":
        value["location"] = "P1Meter"
    return value


#: One meterValue of 30 sampledValues (2.7 kB of JSON).
METER_PAYLOAD: dict[str, Any] = {
    "meterValue": [
        {
            "timestamp": "2026-11-26T09:15:00Z",
            "sampledValue": [sampled_value(i, m, u) for i, (m, u) in enumerate(MEASURANDS)],
        }
    ]
}
