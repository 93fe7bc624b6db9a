"""The user documentation stays true: every ``python`` block in ``README.md`` and
``docs/*.md`` runs, and prints what it says it prints.

Conventions for the blocks (``docs/design/`` holds notes, not examples, and is not run):

- Each block is a complete program. It runs as a script in a fresh interpreter, in an
  empty working directory, with ``WARDEN_DSN`` set to a fresh, migrated database of the
  test server (a block that needs a database reads it from there, as a deployment
  would; the others ignore it).
- It must exit with status 0.
- Lines of the form ``# > text`` state what the block prints: when a block has any, its
  standard output must be exactly those lines, in order (``# >`` alone for an empty
  line). A block without them is only run. (``# >`` is the form ``ruff format`` keeps.)
- A block that cannot run on its own (a shell session shown as Python, a fragment of a
  larger program) starts with ``# docs: not run — <why>``; keep those rare, and say why.

The first ``bash`` block of the README is the setup CI relies on; it is checked too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT: Final = Path(__file__).resolve().parents[1]
README: Final = ROOT / "README.md"

#: Where the documentation's examples live (docs/design/ holds notes, not examples).
DOCUMENTS: Final = (README, *sorted((ROOT / "docs").glob("*.md")))

#: How a block opts out of running; the reason after the dash is mandatory.
NOT_RUN: Final = re.compile(r"# docs: not run\s*[—-]+\s*(?P<why>\S.*)")

_FENCE = re.compile(r"^```(?P<language>[\w-]*)\s*$")


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block of a document."""

    path: Path
    line: int
    language: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def expected(self) -> list[str] | None:
        """The ``# >`` lines, or ``None`` when the block states no output."""
        lines = [
            line.strip()
            for line in self.code.splitlines()
            if line.strip() == "# >" or line.strip().startswith("# > ")
        ]
        return [line[4:] for line in lines] if lines else None

    @property
    def not_run(self) -> str | None:
        """Why the block is not run, or ``None``."""
        first = self.code.lstrip().splitlines()[0] if self.code.strip() else ""
        match = NOT_RUN.fullmatch(first.strip())
        return match["why"] if match else None


def blocks(path: Path) -> Iterator[Block]:
    """The fenced code blocks of ``path``, in order."""
    language: str | None = None
    start = 0
    lines: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = _FENCE.match(line)
        if language is None:
            if fence is not None:
                language, start, lines = fence["language"], number, []
        elif line.strip() == "```":
            yield Block(path, start, language, "\n".join(lines) + "\n")
            language = None
        else:
            lines.append(line)


PYTHON_BLOCKS: Final = [
    block for path in DOCUMENTS for block in blocks(path) if block.language == "python"
]


def test_the_documents_have_examples_to_run() -> None:
    names = {block.path.name for block in PYTHON_BLOCKS}
    assert {"README.md", "kernel.md", "supervision.md"} <= names


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=lambda block: block.name)
def test_the_block_runs_and_prints_what_it_says(block: Block, dsn: str, tmp_path: Path) -> None:
    if block.not_run is not None:
        # Not run, on purpose; the test still holds the block to the convention.
        assert block.expected is None, f"{block.name}: a block that is not run states output"
        return
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    env = {**os.environ, "WARDEN_DSN": dsn}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, f"{block.name} failed:\n{result.stderr}"
    if block.expected is not None:
        assert result.stdout.splitlines() == block.expected, block.name


def test_an_opt_out_needs_a_reason() -> None:
    skipped = [block for block in PYTHON_BLOCKS if block.code.lstrip().startswith("# docs:")]
    assert all(block.not_run for block in skipped), [block.name for block in skipped]
    assert NOT_RUN.fullmatch("# docs: not run — a shell session") is not None
    assert NOT_RUN.fullmatch("# docs: not run") is None


def test_the_parser_reads_blocks_their_output_and_opt_outs(tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text(
        "text\n```python\nprint(1)\n# > 1\n```\n```bash\nls\n```\n"
        "```python\n# docs: not run — a fragment\nx\n```\n",
        encoding="utf-8",
    )
    found = list(blocks(document))
    assert [(block.line, block.language) for block in found] == [
        (2, "python"),
        (6, "bash"),
        (9, "python"),
    ]
    assert found[0].expected == ["1"]
    assert found[0].not_run is None
    assert found[2].not_run == "a fragment"


def test_the_readme_opens_with_the_two_setup_commands_ci_relies_on() -> None:
    first = next(block for block in blocks(README) if block.language == "bash")
    lines = [line for line in first.code.splitlines() if line.strip()]
    assert len(lines) == 2
    assert lines[0].endswith("warden demo")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = lines[1].split("&& ")[-1]
    assert test_command == ".venv/bin/python -m pytest"
    assert f"\n{test_command}\n" in ci
