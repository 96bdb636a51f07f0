"""The command line, ``python -m musecl.data.validate PATH [--drop] [--no-images] [--markdown]``: validate a bundle
folder, print the report and exit with status 1 when it has errors (so scripts and CI can stop on a bad bundle).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from musecl.data.validate.checker import validate_bundle


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m musecl.data.validate",
        description="Check a city bundle folder against docs/data_format.md; exit status 1 when it has errors.")
    parser.add_argument("path", help="the city bundle folder")
    parser.add_argument("--drop", action="store_true",
                        help="drop bad rows (points outside the city, unreadable images, ...) and count them instead "
                             "of reporting them as errors")
    parser.add_argument("--no-images", action="store_true",
                        help="only check that image files exist; do not decode them")
    parser.add_argument("--markdown", action="store_true", help="print the report as Markdown")
    args = parser.parse_args(argv)
    report = validate_bundle(args.path, bad_rows="drop" if args.drop else "error", check_images=not args.no_images,
                             progress=sys.stderr.isatty(), raise_on_error=False)
    print(report.to_markdown() if args.markdown else report.summary())
    return 0 if report.ok else 1
