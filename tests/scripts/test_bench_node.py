"""A smoke run of ``scripts/bench_node.py``: small sizes, the output contract only.

It checks the rows users and CI read (names, units, ratio = value / baseline of the same
run), never absolute times.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_node.py"

UNITS = {
    "group_commit_eps": "events/s",
    "node_eps": "events/s",
    "frame_to_first_event_p50_ms": "ms",
    "frame_to_first_event_p99_ms": "ms",
    "rss_bytes_per_run": "bytes",
    "run_restart_p50_ms": "ms",
    "run_restart_p99_ms": "ms",
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
        "--runs",
        "6",
        "--restarts",
        "2",
        "--window",
        "0.3",
        "--scale",
        "0.02",
        "--cluster",
        "--json",
        str(out),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=400)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows: list[dict[str, object]] = json.loads(out.read_text())
    by_name = {str(row["metric"]): row for row in rows if row["backend"] == "asyncio"}
    assert [str(row["metric"]) for row in rows[: len(UNITS)]] == list(UNITS)
    for metric, unit in UNITS.items():
        row = by_name[metric]
        assert row["unit"] == unit
        if unit != "bytes":  # RSS may not move for six runs; rates and latencies do
            assert float(str(row["value"])) > 0, row
        if row["baseline"] is None:
            continue
        value, baseline, ratio = (float(str(row[key])) for key in ("value", "baseline", "ratio"))
        assert baseline > 0, row
        low = max(0.0, value - 5e-4) / (baseline + 5e-4) - 5e-4
        high = (value + 5e-4) / (baseline - 5e-4) + 5e-4
        assert low <= ratio <= high
    assert by_name["node_eps"]["baseline"] == by_name["group_commit_eps"]["value"]
    for mode in ("in_transaction", "after_commit"):
        assert float(str(by_name[f"cluster3_notify_{mode}_eps"]["value"])) > 0
        assert f"cluster3_notify_{mode}_frame_p99_ms" in by_name
    # uvloop is installed with the dev tools: the same figures on uvloop.
    uvloop = [str(row["metric"]) for row in rows if row["backend"] == "uvloop"]
    assert uvloop == list(UNITS)
