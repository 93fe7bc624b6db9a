"""Result rows: each figure next to the baseline measured in the same run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["Row", "markdown_table", "write_json"]


@dataclass(frozen=True, slots=True)
class Row:
    """One figure. ``ratio`` is ``value / baseline`` (``None`` without a baseline)."""

    metric: str
    value: float
    unit: str
    baseline: float | None
    system: str = "warden"
    backend: str = "asyncio"

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.value / self.baseline

    def as_json(self, digits: int | None = None) -> dict[str, object]:
        """The row as ``{"metric", "value", "unit", "baseline", "ratio", "system",
        "backend"}``, figures rounded to ``digits`` places if given."""

        def rounded(figure: float | None) -> float | None:
            return figure if figure is None or digits is None else round(figure, digits)

        return {
            "metric": self.metric,
            "value": rounded(self.value),
            "unit": self.unit,
            "baseline": rounded(self.baseline),
            "ratio": rounded(self.ratio),
            "system": self.system,
            "backend": self.backend,
        }


def write_json(path: Path, rows: Sequence[Row], digits: int | None = None) -> None:
    path.write_text(json.dumps([row.as_json(digits) for row in rows], indent=2) + "\n")


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}"


def markdown_table(
    rows: Sequence[Row],
    *,
    value: str = "value",
    baseline: str = "baseline",
    notes: dict[str, str] | None = None,
) -> str:
    """A Markdown table of ``rows``: metric, unit, value, baseline, ratio and a note
    per metric (a target and whether it was met, say)."""
    lines = [
        f"| metric | unit | {value} | {baseline} | ratio | note |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        base = "" if row.baseline is None else _figure(row.baseline)
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
        note = (notes or {}).get(row.metric, "")
        lines.append(
            f"| {row.metric} | {row.unit} | {_figure(row.value)} | {base} | {ratio} | {note} |"
        )
    return "\n".join(lines)
