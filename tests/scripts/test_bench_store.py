"""A smoke run of ``scripts/bench_store.py``: small sizes, the output contract only.

It checks the rows users and CI read (names, units, ratio = value / baseline of the same
run, no stale-epoch rows), never absolute times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_store.py"

UNITS = {
    "raw_insert_eps": "events/s",
    "fenced_append_eps": "events/s",
    "group_commit_eps": "events/s",
    "notify_p50_ms": "ms",
    "notify_p99_ms": "ms",
    "notify_from_call_p50_ms": "ms",
    "notify_from_call_p99_ms": "ms",
}


def test_a_small_run_writes_the_issue_rows_with_same_run_ratios(
    server_dsn: str, tmp_path: Path
) -> None:
    out = tmp_path / "rows.json"
    command = [
        sys.executable,
        str(SCRIPT),
        "--dsn",
        server_dsn,
        "--scale",
        "0.02",
        "--writers",
        "4",
        "--json",
        str(out),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert completed.returncode == 0, completed.stderr
    rows: list[dict[str, object]] = json.loads(out.read_text())
    by_name = {str(row["metric"]): row for row in rows}
    assert [str(row["metric"]) for row in rows[: len(UNITS)]] == list(UNITS)
    for metric, unit in UNITS.items():
        row = by_name[metric]
        assert row["unit"] == unit
        value, baseline, ratio = (float(str(row[key])) for key in ("value", "baseline", "ratio"))
        # A wake-up may reach the listener before the appender itself resumes: 0 ms is a
        # real (lower-bound) latency, while a rate is always positive.
        assert value > 0 if unit == "events/s" else value >= 0, row
        assert baseline > 0, row
        # Every figure is rounded to 3 places: the ratio must fit the unrounded quotient.
        low = max(0.0, value - 5e-4) / (baseline + 5e-4) - 5e-4
        high = (value + 5e-4) / (baseline - 5e-4) + 5e-4
        assert low <= ratio <= high
    assert by_name["raw_insert_eps"]["ratio"] == 1.0
    # From the call starting is an upper bound: per sample it includes the lower bound.
    for q in ("p50", "p99"):
        upper, lower = by_name[f"notify_from_call_{q}_ms"], by_name[f"notify_{q}_ms"]
        assert float(str(upper["value"])) > 0
        assert float(str(upper["value"])) >= float(str(lower["value"]))
        assert float(str(upper["baseline"])) >= float(str(lower["baseline"]))
    assert float(str(by_name["stale_epoch_rows"]["value"])) == 0
    assert "writers4_notify_in_transaction_eps" in by_name
