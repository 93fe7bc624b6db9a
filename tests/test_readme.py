"""The README must stay true: its quick start runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str, language: str) -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no {language} block under {heading!r}"
    return match.group(1)


def test_the_quick_start_runs_and_prints_what_its_comments_say() -> None:
    code = _block("Quick start", "python")
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    printed = [line for line in result.stdout.splitlines() if line.strip().isdigit()]
    assert printed == ["5", "4"]


def test_the_readme_opens_with_the_two_setup_commands_ci_relies_on() -> None:
    commands = README.read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", commands, re.DOTALL)
    assert first_block is not None
    lines = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2
    assert lines[0].endswith("warden demo")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    test_command = lines[1].split("&& ")[-1]
    assert test_command == ".venv/bin/python -m pytest"
    assert f"\n{test_command}\n" in ci
