"""Wall time of every pipeline stage of the last `dvc repro`, read from the executed notebooks' papermill metadata.

    python benchmarks/pipeline_times.py [reports/notebooks]

Prints one row per executed notebook (start, duration, the slowest cell) and the total, as a Markdown table. The times
are those papermill recorded for the notebook's kernel; DVC's own hashing and the kernel start (a few seconds per
stage) come on top. Standard library only.
"""
from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path


def stage_times(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        meta = nb.get("metadata", {}).get("papermill", {})
        if not meta.get("start_time") or meta.get("duration") is None:
            continue
        cells = [(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0, i)
                 for i, c in enumerate(nb.get("cells", [])) if c.get("cell_type") == "code"]
        slowest = max(cells) if cells else (0.0, -1)
        rows.append({
            "notebook": path.stem,
            "start": datetime.fromisoformat(meta["start_time"]),
            "seconds": float(meta["duration"]),
            "slowest cell": f"#{slowest[1]} ({slowest[0]:.0f} s)",
        })
    return sorted(rows, key=lambda r: r["start"])


def main(argv: list[str]) -> None:
    folder = Path(argv[0]) if argv else Path("reports/notebooks")
    rows = stage_times(folder)
    if not rows:
        sys.exit(f"no executed notebooks with papermill timings in {folder}")
    print("| notebook | started (UTC) | wall | slowest cell |")
    print("|---|---|---:|---|")
    for r in rows:
        print(f"| {r['notebook']} | {r['start']:%Y-%m-%d %H:%M:%S} | {r['seconds'] / 60:.1f} min | {r['slowest cell']} |")
    total = sum(r["seconds"] for r in rows)
    span = (rows[-1]["start"] - rows[0]["start"]).total_seconds() + rows[-1]["seconds"]
    print(f"\nsum of notebook wall times: {total / 60:.1f} min; first start to last end: {span / 60:.1f} min "
          "(includes notebooks of earlier runs if some stages were up to date)")


if __name__ == "__main__":
    main(sys.argv[1:])
