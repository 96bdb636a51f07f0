"""Run the numbered notebooks with papermill: `python -m musecl.notebooks 01_data_preparation`.

Every notebook has one cell tagged `parameters` with two names:

    params_file = "params.yaml"   # the parameters file
    overrides = {}                # a nested dict merged over it (tests use it for the `tiny` configuration)

DVC runs each stage through this module; the executed copy goes to `reports/notebooks/<name>.ipynb` (git-tracked,
so the repository page shows the tutorial with its outputs) and the source notebook in `notebooks/` stays clean.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from musecl.config import repo_root
from musecl.storage import atomic_path

NOTEBOOK_DIR = "notebooks"
EXECUTED_DIR = "reports/notebooks"
KERNEL_NAME = "python3"


def notebook_path(name: str, root: Path | None = None) -> Path:
    root = root or repo_root()
    path = root / NOTEBOOK_DIR / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if not path.is_file():
        available = sorted(p.stem for p in (root / NOTEBOOK_DIR).glob("*.ipynb"))
        raise FileNotFoundError(f"notebook {path} not found (available: {available})")
    return path


def run_notebook(
    name: str,
    params_file: str | Path = "params.yaml",
    overrides: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Execute `notebooks/<name>.ipynb` top to bottom with papermill; returns the executed notebook's path.

    The kernel is the `python3` kernel of the interpreter running this function (ipykernel's own kernelspec), so the
    notebook sees exactly this environment's packages; papermill's `NoSuchKernel` cannot arise from a missing
    user-level kernelspec.
    """
    import papermill as pm

    root = repo_root()
    source = notebook_path(name, root)
    output = Path(output) if output else root / EXECUTED_DIR / source.name
    env_python = str(Path(sys.executable).parent)
    os.environ["PATH"] = env_python + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    with atomic_path(output) as tmp:
        pm.execute_notebook(
            str(source),
            str(tmp),
            parameters={"params_file": str(params_file), "overrides": json.loads(json.dumps(overrides or {}))},
            kernel_name=KERNEL_NAME,
            cwd=str(root),
            progress_bar=progress,
            report_mode=False,
        )
    return output


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="notebook name, e.g. 01_data_preparation")
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    parser.add_argument("--overrides", default="{}", help="JSON dict merged over the parameters file")
    parser.add_argument("--output", default=None, help=f"executed notebook path (default: {EXECUTED_DIR}/NAME.ipynb)")
    args = parser.parse_args(argv)
    out = run_notebook(args.name, args.params, json.loads(args.overrides), args.output)
    print(f"executed notebook written to {out}")


if __name__ == "__main__":
    main()
