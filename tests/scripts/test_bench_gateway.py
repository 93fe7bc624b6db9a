"""A smoke run of ``scripts/bench_gateway.py``: small sizes, the output contract only.

It checks the rows the issue names (metric, unit, ratio = value / baseline of the same
run), never absolute times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_gateway.py"

UNITS = {
    "fanout_eps_5": "events/s",
    "append_to_sse_p50_ms_1": "ms",
    "append_to_sse_p99_ms_1": "ms",
    "append_to_sse_p50_ms_5": "ms",
    "append_to_sse_p99_ms_5": "ms",
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
        "--clients",
        "5",
        "--samples",
        "4",
        "--events",
        "12",
        "--seed",
        "3",
        "--json",
        str(out),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "seed: 3" in completed.stderr
    rows: list[dict[str, object]] = json.loads(out.read_text())
    assert [str(row["metric"]) for row in rows] == list(UNITS)
    for row in rows:
        assert row["unit"] == UNITS[str(row["metric"])]
        value, baseline, ratio = (float(str(row[key])) for key in ("value", "baseline", "ratio"))
        assert value > 0, row
        assert baseline > 0, row
        low = max(0.0, value - 5e-4) / (baseline + 5e-4) - 5e-4
        high = (value + 5e-4) / (baseline - 5e-4) + 5e-4
        assert low <= ratio <= high, row
    assert "| fanout_eps_5 |" in completed.stdout
