"""Smoke test of ``scripts/bench_kernel.py``: tiny sizes, the JSON contract, no timings.

Absolute times depend on the machine, so nothing here asserts one: the test checks that
the benchmark runs on both backends, writes exactly the documented rows, and that every
ratio is the value over the baseline measured in the same run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_kernel.py"

UNITS = {
    "tell_throughput": "msgs/s",
    "ask_p50_us": "us",
    "ask_p99_us": "us",
    "spawn_us_per_actor": "us",
    "rss_bytes_per_actor": "bytes",
    "control_under_load_p99_us": "us",
    "restart_p50_us": "us",
    "restart_p99_us": "us",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, object]]]:
    out = tmp_path_factory.mktemp("bench") / "rows.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--backend", "both", "--seed", "7"]
    completed = subprocess.run(
        [*command, "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=100,
    )
    assert completed.returncode == 0, completed.stderr
    rows: list[dict[str, object]] = json.loads(out.read_text())
    return completed.stdout, rows


def test_prints_the_seed_and_a_table_per_backend(run: tuple[str, list[dict[str, object]]]) -> None:
    stdout, _ = run
    assert "seed: 7" in stdout
    assert "### Warden on asyncio" in stdout
    assert "### Warden on trio" in stdout
    assert "handled right after the message in progress" in stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_json_rows_name_every_metric_once_with_its_unit(
    run: tuple[str, list[dict[str, object]]], backend: str
) -> None:
    _, rows = run
    mine = [row for row in rows if row["system"] == "warden" and row["backend"] == backend]
    assert [row["metric"] for row in mine] == list(UNITS)
    for row in mine:
        assert set(row) == {"metric", "value", "unit", "baseline", "ratio", "system", "backend"}
        assert row["unit"] == UNITS[str(row["metric"])]


def test_ratio_is_value_over_the_baseline_of_the_same_run(
    run: tuple[str, list[dict[str, object]]],
) -> None:
    _, rows = run
    assert rows
    for row in rows:
        value, baseline, ratio = (float(str(row[key])) for key in ("value", "baseline", "ratio"))
        assert baseline > 0
        assert math.isclose(ratio, value / baseline, rel_tol=1e-9)


def test_peer_rows_carry_their_own_same_process_baseline(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--peers", "--json", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=100)
    assert completed.returncode == 0, completed.stderr
    rows: list[dict[str, object]] = json.loads(out.read_text())
    pykka_rows = [row for row in rows if row["system"] == "pykka"]
    # Neither peer has mailbox priorities or supervision: no control or restart figures.
    assert sorted(str(row["metric"]) for row in pykka_rows) == sorted(
        ["tell_throughput", "ask_p50_us", "ask_p99_us", "spawn_us_per_actor", "rss_bytes_per_actor"]
    )
    for row in pykka_rows:
        value, baseline, ratio = (float(str(row[key])) for key in ("value", "baseline", "ratio"))
        assert math.isclose(ratio, value / baseline, rel_tol=1e-9)
    assert "triotp" in completed.stdout  # measured, or the reason it was not
