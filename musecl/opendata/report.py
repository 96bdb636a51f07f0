"""What each reader kept and dropped, with counts: the build's answer to "where did my rows go?".

Every reader returns a :class:`ReaderReport`; :func:`musecl.opendata.build_bundle` collects them in a
:class:`BuildReport`, which the notebook shows as a table and the bundle keeps in `city.json` (key `build`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# Drop reasons used by several readers (readers may add their own, e.g. "no taxonomy match").
BAD_COORDINATES = "bad coordinates"  # missing, non-numeric, non-finite, out of range, or exactly (0, 0)
OUTSIDE = "outside the regions"  # a valid point whose H3 cell is not one of the city's (kept) regions
BAD_TIME = "bad time"  # a timestamp that does not parse
UNREADABLE = "unreadable image"  # the file is missing or cannot be decoded
DUPLICATE = "duplicate id"

# A reader that drops more than this share of its rows as outside the boundary adds a warning: usually lon/lat are
# swapped, the file is for another city, or the coordinates are projected rather than WGS84.
SUSPICIOUS_OUTSIDE_SHARE = 0.5


class BuildWarning(UserWarning):
    """Something in an input the build handled by a rule the user should know about (counted in the report)."""


class BuildError(ValueError):
    """An input of a city build is unusable; the message names the file, key, column or row and what was expected."""


@dataclass
class ReaderReport:
    """Counts of one reader: rows read, rows kept, and rows dropped per reason."""

    reader: str
    source: str
    read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    swap_tested: int = 0  # points outside the city tried with lon/lat exchanged (RegionAssigner.swap_test)
    swap_inside: int = 0  # ... of which fell inside the city

    def test_swap(self, assigner, lon, lat, outside) -> None:
        """Record how many outside points would fall inside with lon and lat exchanged (for check_outside_share)."""
        if self.swap_tested < 100_000:
            tested, inside = assigner.swap_test(lon, lat, outside)
            self.swap_tested += tested
            self.swap_inside += inside

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] += int(count)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def warn(self, text: str) -> None:
        """A note that also goes out as a Python warning (shown in a notebook and on the console while building)."""
        import warnings

        self.notes.append(f"warning: {text}")
        # Attributed to the reader, not to a line of musecl: shown as one line, without a source line under it.
        warnings.warn_explicit(f"{self.reader}: {text}", BuildWarning, filename=f"build ({Path(self.source).name})", lineno=0,
                               module="musecl.opendata")

    @property
    def n_dropped(self) -> int:
        return int(sum(self.dropped.values()))

    def check_outside_share(self, valid: int | None = None, outside: int | None = None) -> None:
        """Warn (as a note) when most valid points fell outside the city. Swapped lon/lat is named as the cause only
        when the reader tested it (`test_swap`) and most tested points fall inside once exchanged."""
        bad = self.dropped.get(BAD_COORDINATES, 0)
        valid = self.read - bad if valid is None else valid
        outside = self.dropped.get(OUTSIDE, 0) if outside is None else outside
        if self.swap_tested and self.swap_inside / self.swap_tested > SUSPICIOUS_OUTSIDE_SHARE and \
                (outside + bad) > SUSPICIOUS_OUTSIDE_SHARE * self.read:
            self.note(f"{outside + bad:,} of {self.read:,} points are outside the city or out of range, and "
                      f"{self.swap_inside / self.swap_tested:.0%} of the {self.swap_tested:,} tested fall inside with "
                      "lon and lat exchanged: the lon and lat columns look swapped")
            return
        if not (valid > 0 and outside / valid > SUSPICIOUS_OUTSIDE_SHARE):
            return
        head = f"{outside:,} of {valid:,} valid points ({outside / valid:.0%}) lie outside the city"
        self.note(f"{head}: is the file for another area, or its coordinates in another datum or CRS than "
                  "WGS84 (set the reader's `crs`, e.g. GCJ-02, BD-09 or an EPSG code)?")

    def require_kept(self, what: str, hint: str = "") -> None:
        """Fail when nothing survived: an input that yields nothing is unusable, not an empty table."""
        if self.kept == 0:
            reasons = ", ".join(f"{n:,} {r}" for r, n in self.dropped.most_common()) or "no rows"
            swapped = [n for n in self.notes if "look swapped" in n]
            hint += f" ({swapped[0]})" if swapped else ""
            raise BuildError(f"{self.source}: no {what} kept ({self.read:,} read; dropped: {reasons}){hint}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "reader": self.reader,
            "source": self.source,
            "read": int(self.read),
            "kept": int(self.kept),
            "dropped": {k: int(v) for k, v in sorted(self.dropped.items())},
            "notes": list(self.notes),
        }


@dataclass
class BuildReport:
    """Everything `build_bundle` did: the bundle's path, its size, and one ReaderReport per input."""

    city: str
    out_dir: Path
    h3_resolution: int
    n_regions: int = 0
    readers: list[ReaderReport] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, report: ReaderReport) -> ReaderReport:
        self.readers.append(report)
        return report

    def table(self) -> pd.DataFrame:
        """One row per reader: source file, rows read, kept, dropped, and the drop reasons with their counts."""
        rows = [{
            "reader": r.reader,
            "source": Path(r.source).name if "/" in r.source else r.source,
            "read": r.read,
            "kept": r.kept,
            "dropped": r.n_dropped,
            "reasons": "; ".join(f"{n:,} {reason}" for reason, n in r.dropped.most_common()),
        } for r in self.readers]
        return pd.DataFrame(rows).set_index("reader")

    @property
    def notes(self) -> list[str]:
        return [f"{r.reader}: {note}" for r in self.readers for note in r.notes]

    def summary(self) -> str:
        lines = [f"built '{self.city}' ({self.n_regions} regions, H3 resolution {self.h3_resolution}) at {self.out_dir}"
                 f" in {self.seconds:.1f} s"]
        for r in self.readers:
            dropped = ", ".join(f"{n:,} {reason}" for reason, n in r.dropped.most_common()) or "nothing"
            lines.append(f"  {r.reader:<22} read {r.read:>10,}  kept {r.kept:>10,}  dropped {dropped}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """The counts (no timings, so the same inputs give a byte-identical city.json); file paths under
        `relative_to` (the config's folder) are written relative to it, so the record does not depend on the machine."""
        readers = [r.to_dict() for r in self.readers]
        if relative_to is not None:
            prefix = str(Path(relative_to).resolve()) + "/"
            plain = str(Path(relative_to)) + "/"

            def rel(text: str) -> str:
                return text.replace(prefix, "").replace(plain, "")

            for r in readers:
                r["source"] = rel(r["source"])
                r["notes"] = [rel(n) for n in r["notes"]]
        return {
            "city": self.city,
            "h3_resolution": self.h3_resolution,
            "n_regions": self.n_regions,
            "readers": readers,
        }

    def __str__(self) -> str:
        return self.summary()
