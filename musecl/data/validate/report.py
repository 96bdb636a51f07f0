"""What a validation run found, and how it is shown: `ValidationReport`, `BundleValidationError`, Markdown helpers.

The report is a plain data holder; the checks (the other modules of :mod:`musecl.data.validate`) append errors,
warnings and dropped-row counts to it in the order they run, and this module only formats them (plain text for the
command line, Markdown for notebooks) or raises them as one `BundleValidationError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from musecl.data.bundle import BundleError


class BundleValidationError(BundleError):
    """Raised by `validate_bundle` when a bundle has errors; `report` holds everything that was found."""

    def __init__(self, report: "ValidationReport") -> None:
        self.report = report
        lines = "\n".join(f"  - {e}" for e in report.errors)
        super().__init__(f"city bundle {report.root} failed validation with {len(report.errors)} error(s):\n{lines}")


@dataclass
class ValidationReport:
    """What `validate_bundle` found: errors, warnings, rows dropped per (file, reason) and the cleaned tables."""

    root: Path
    bad_rows: str = "error"
    city: str | None = None
    h3_resolution: int | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped: dict[tuple[str, str], int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # rows read per file
    # Tables (schema.TABLES keys) changed by dropping rows or converting column types, as they should be written.
    tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def dropped_from(self, file: str) -> int:
        return sum(n for (f, _), n in self.dropped.items() if f == file)

    def raise_if_errors(self) -> None:
        if self.errors:
            raise BundleValidationError(self)

    def _headline(self) -> str:
        what = f"'{self.city}'" if self.city else "city bundle"
        res = f", H3 resolution {self.h3_resolution}" if self.h3_resolution is not None else ""
        n_dropped = sum(self.dropped.values())
        verdict = "VALID" if self.ok else "INVALID"
        return (f"{verdict}: {what} at {self.root}{res}: {len(self.errors)} error(s), {len(self.warnings)} warning(s), "
                f"{n_dropped} row(s) dropped (bad_rows={self.bad_rows!r}; rows count from 0)")

    def summary(self) -> str:
        """A plain-text report (what the command line prints)."""
        lines = [self._headline()]
        if self.rows:
            lines.append("rows: " + ", ".join(
                f"{file} {n}" + (f" (-{self.dropped_from(file)})" if self.dropped_from(file) else "")
                for file, n in self.rows.items()))
        if self.dropped:
            lines.append("dropped:")
            lines += [f"  {file}: {n} row(s), {reason}" for (file, reason), n in self.dropped.items()]
        if self.errors:
            lines.append("errors:")
            lines += [f"  - {e}" for e in self.errors]
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  - {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The report as Markdown (for a notebook's `display(Markdown(...))`)."""
        parts = [f"**{self._headline()}**"]
        if self.rows:
            parts.append(markdown_table(
                ["file", "rows read", "rows dropped", "rows kept"],
                [[f"`{f}`", n, self.dropped_from(f), n - self.dropped_from(f)] for f, n in self.rows.items()]))
        if self.dropped:
            parts.append(markdown_table(["file", "reason", "rows dropped"],
                                        [[f"`{f}`", r, n] for (f, r), n in self.dropped.items()]))
        for title, items in (("Errors", self.errors), ("Warnings", self.warnings)):
            if items:
                parts.append(f"{title}:\n\n" + "\n".join(f"- {md_escape(i)}" for i in items))
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.summary()


def md_escape(text: str) -> str:
    """`text` with the characters Markdown would read as table cells or emphasis escaped."""
    return text.replace("|", "\\|").replace("*", "\\*")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-style Markdown table; '|' inside cells is escaped."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)
