"""Keep the README's results summary the committed run's: copy `reports/07_paper_figures/summary.md` (written by the
`figures` stage) into README.md between its two markers.

    python -m musecl.readme            # rewrite the block when it differs, say whether it did
    python -m musecl.readme --check    # exit 1 when the README's block is not the file's (tests/test_readme.py does this)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from musecl.config import repo_root
from musecl.storage import write_text

SUMMARY = Path("reports/07_paper_figures/summary.md")
BEGIN = "<!-- summary: reports/07_paper_figures/summary.md, copied by `python -m musecl.readme`; edit neither by hand -->"
END = "<!-- end of summary -->"


def _bounds(readme: str, where: str) -> tuple[int, int]:
    begin, end = readme.find(BEGIN), readme.find(END)
    if begin < 0 or end < 0 or end < begin or readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise ValueError(f"{where}: expected one line '{BEGIN}' followed by one line '{END}' (the summary's place)")
    return begin + len(BEGIN), end


def embedded(readme: str, where: str = "README.md") -> str:
    """The summary as the README holds it (between the markers, without the blank lines around it)."""
    begin, end = _bounds(readme, where)
    return readme[begin:end].strip("\n") + "\n"


def embed(readme: str, summary: str, where: str = "README.md") -> str:
    """`readme` with the block between the markers replaced by `summary`."""
    begin, end = _bounds(readme, where)
    return readme[:begin] + "\n\n" + summary.strip("\n") + "\n\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when the README is out of date")
    args = parser.parse_args(argv)
    root = repo_root()
    readme_path, summary_path = root / "README.md", root / SUMMARY
    if not summary_path.is_file():
        print(f"error: {SUMMARY} not found: run the pipeline's `figures` stage first (dvc repro figures)",
              file=sys.stderr)
        return 1
    readme, summary = readme_path.read_text(), summary_path.read_text()
    if embedded(readme) == summary.strip("\n") + "\n":
        print(f"README.md already holds {SUMMARY}")
        return 0
    if args.check:
        print(f"README.md's summary differs from {SUMMARY}: run `python -m musecl.readme`", file=sys.stderr)
        return 1
    write_text(embed(readme, summary), readme_path)
    print(f"README.md: summary replaced by {SUMMARY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
