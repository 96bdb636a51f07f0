"""What a stage does when the city lacks a modality it needs: write every declared output as *skipped*, say so in
the notebook, and stop running the stage's remaining cells.

A skipped output is the file or folder dvc.yaml declares, holding the reason instead of a result, so DVC finds its
outs and the readers downstream can say "not run: reason": an embedding table is a skipped table
(`musecl.embeddings.write_skipped`), a metrics JSON holds ``{"skipped": reason}``, a folder (checkpoints, caches,
figures) holds `SKIPPED.txt`, and a declared torch file holds ``{"skipped": reason}``. `check_skipped` is the stage's
final check for them.

`skip_rest_of_notebook` is for a notebook with nothing left to compute (e.g. 04 in a city without POIs): it prints the
reason and registers an IPython input transformer that turns every later cell into a no-op, except a cell whose first
line is `CHECKS_MARKER` (the notebook's final checks, which then check the skipped outputs).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

SKIPPED_FILE = "SKIPPED.txt"
CHECKS_MARKER = "# checks"  # first line of a notebook's final checks cell: run even when the stage is skipped


def write_skipped_outputs(paths: Iterable[str | Path], reason: str) -> list[Path]:
    """Write each declared output of a skipped stage (by its suffix: .parquet table, .json metrics, .pt torch file,
    else a folder with SKIPPED.txt); returns the paths written."""
    from musecl.embeddings import write_skipped
    from musecl.storage import save_torch, write_json, write_text

    written = []
    for path in map(Path, paths):
        if path.suffix == ".parquet":
            write_skipped(path, reason)
        elif path.suffix == ".json":
            write_json({"skipped": reason}, path)
        elif path.suffix == ".pt":
            save_torch({"skipped": reason}, path)
        else:
            path.mkdir(parents=True, exist_ok=True)
            write_text(reason + "\n", path / SKIPPED_FILE)
        written.append(path)
    return written


def skipped_output_reason(path: str | Path) -> str | None:
    """The reason a skipped output holds (`write_skipped_outputs`), None for a real output or a missing one."""
    from musecl.embeddings import skipped_reason

    path = Path(path)
    if path.suffix == ".parquet":
        return skipped_reason(path)
    if path.suffix == ".json" and path.is_file():
        data = json.loads(path.read_text())
        return data.get("skipped") if isinstance(data, dict) else None
    if path.suffix == ".pt" and path.is_file():
        from musecl.storage import load_torch

        data = load_torch(path)
        return data.get("skipped") if isinstance(data, dict) else None
    marker = path / SKIPPED_FILE
    return marker.read_text().strip() if marker.is_file() else None


def check_skipped(outputs: Mapping[str, tuple[list[Path], str]]) -> None:
    """Every skipped output exists and holds its reason; `outputs`: {what: (paths, reason)}. Raises naming the file."""
    for what, (paths, reason) in outputs.items():
        for path in paths:
            found = skipped_output_reason(path)
            if found != reason.strip():
                raise AssertionError(f"{what}: {path} should be a skipped output with reason {reason!r}, "
                                     f"found {found!r}")


def skip_table(skipped: Mapping[str, str], stage: str) -> pd.DataFrame:
    """The notebook's table of what the stage skipped and why (one row per skipped item)."""
    return pd.DataFrame({"stage": stage, "not run": list(skipped), "reason": list(skipped.values())}).set_index(
        "not run")


def announce(skipped: Mapping[str, str], stage: str) -> None:
    """Print one line per skipped item (what the executed notebook and the terminal show) and warn."""
    import warnings

    for what, reason in skipped.items():
        print(f"{stage}: {what} not run: {reason}")
        warnings.warn(f"{stage}: {what} not run: {reason}", stacklevel=2)


def skip_rest_of_notebook(stage: str, reason: str) -> None:
    """Print that the stage is skipped and make every later cell of this notebook a no-op, except its final checks
    (a cell starting with `CHECKS_MARKER`). Outside IPython (a plain script) only prints."""
    print(f"{stage}: skipped: {reason}. The cells below are not run, except the final checks.")
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the notebook runner
        return
    shell = get_ipython()
    if shell is None:
        return

    def transform(lines: list[str]) -> list[str]:
        if lines and lines[0].startswith(CHECKS_MARKER):
            return lines
        return [f"pass  # {stage} skipped: not run\n"]

    if not any(getattr(t, "__name__", "") == "musecl_skip" for t in shell.input_transformers_cleanup):
        transform.__name__ = "musecl_skip"
        shell.input_transformers_cleanup.append(transform)


def skip_without(bundle, modalities: Iterable[str], stage: str, outputs: Iterable[str | Path],
                 what: str = "the stage", any_of: bool = False) -> str | None:
    """When the city lacks one of `modalities` (`any_of`: lacks all of them): write `outputs` as skipped, print why,
    make the rest of the notebook a no-op (`skip_rest_of_notebook`) and return the reason; None otherwise."""
    from musecl.data.schema import MODALITY_NAMES, modality_files

    modalities = list(modalities)
    missing = [m for m in modalities if not bundle.has_modality(m)]
    if not missing or (any_of and len(missing) < len(modalities)):
        return None
    reason = "the city has no " + " and no ".join(f"{MODALITY_NAMES[m]} ({modality_files(m)} absent)" for m in missing)
    write_skipped_outputs(outputs, reason)
    skip_rest_of_notebook(stage, f"{what} needs {(' or ' if any_of else ' and ').join(modalities)}: {reason}")
    return reason


def skip_for_inputs(inputs: Mapping[str, str | Path], stage: str, outputs: Iterable[str | Path],
                    what: str = "the stage") -> str | None:
    """When an input embedding table of `inputs` ({name: path}) was skipped upstream: write `outputs` as skipped with
    a reason naming each skipped input and its own reason, make the rest of the notebook a no-op and return the
    reason; None when every input is a real table."""
    from musecl.embeddings import skipped_reason

    found = {name: skipped_reason(path) for name, path in inputs.items()}
    missing = {name: why for name, why in found.items() if why is not None}
    if not missing:
        return None
    reason = (f"{what} needs {', '.join(inputs)}; not run: "
              + "; ".join(f"{name} ({why})" for name, why in missing.items()))
    write_skipped_outputs(outputs, reason)
    skip_rest_of_notebook(stage, reason)
    return reason
