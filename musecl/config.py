"""Reading `params.yaml`: one section per stage, deep-merged with overrides (papermill passes them as a dict)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

PARAMS_FILE = "params.yaml"


def repo_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: cwd) that holds `dvc.yaml`; cwd if there is none.

    Notebooks run with the repository root as working directory under DVC, but from `notebooks/` when a person
    opens them in JupyterLab; both resolve the same relative paths through this.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file():
            return folder
    return here


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of `base` with `overrides` merged in: nested dicts merge key by key, everything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_params(params_file: str | Path = PARAMS_FILE, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load `params_file` (relative paths resolve against the repository root) and merge `overrides` over it.

    Relative paths in the `paths` section are made absolute against the repository root, so stages can run from any
    working directory.
    """
    path = Path(params_file)
    root = repo_root()
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise FileNotFoundError(f"params file {path} not found (expected the repository's params.yaml)")
    with path.open() as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(params).__name__}")
    params = deep_merge(params, overrides)
    base = path.parent
    params["paths"] = {
        key: str(value if Path(value).is_absolute() else (base / value).resolve())
        for key, value in (params.get("paths") or {}).items()
    }
    return params


def section(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    """`params[name]`, with an error that names the missing section."""
    if name not in params or not isinstance(params[name], Mapping):
        raise KeyError(f"params.yaml has no section '{name}' (sections present: {sorted(params)})")
    return dict(params[name])


def training_seed(params: Mapping[str, Any]) -> int:
    """The seed of every trained representation (encoders, Word2Vec, fusion, image-text models): `encoders.seed`, else
    the global `seed`. Setting it retrains the representations while the city, its pairs and its folds stay fixed;
    the `seeds` stage trains them again with `training_seed + k` (k = 1 .. `training_seeds.extra`)."""
    seed = (params.get("encoders") or {}).get("seed")
    return int(params["seed"] if seed is None else seed)


def embeddings_dir(params: Mapping[str, Any]) -> Path:
    """Where embedding tables are written and read: `paths.embeddings` when given (the `seeds` stage points it at
    `<work>/seeds/s<k>/embeddings`), else `<paths.work>/embeddings`."""
    paths = params["paths"]
    return Path(paths["embeddings"]) if paths.get("embeddings") else Path(paths["work"]) / "embeddings"
