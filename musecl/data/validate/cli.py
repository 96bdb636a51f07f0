"""The command line, ``python -m musecl.data.validate PATH [--drop] [--no-images] [--markdown]``: validate a bundle
folder, print the report and exit with status 1 when it has errors (so scripts and CI can stop on a bad bundle), or
quietly with status 141 when the reader of its output stops early (``... | head``).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from musecl.data.validate.checker import validate_bundle

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader closed the pipe


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
    try:
        print(report.to_markdown() if args.markdown else report.summary())
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`... | head`): exit quietly, as `yes | head` does
        # Python flushes stdout again at exit; point it at devnull so that flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return 0 if report.ok else 1
