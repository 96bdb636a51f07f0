"""What the evaluation did not run, and why: skipped representations, protocols a small city cannot support, and
fold scores that are undefined. Nothing here is silent: each case is a warning naming what and why, and a note the
tables print ("not run: <reason>" cells and captions).

* A representation whose input table its stage skipped (:func:`musecl.embeddings.write_skipped`, e.g. POI text in a
  city without POIs), or a combination with such a part, is not evaluated; the registry's status table marks it
  ``available = False`` with ``missing = "not run: <reason>"`` (:data:`NOT_RUN`), which :func:`not_run_of` reads back.
* :func:`feasible_settings` drops a protocol that the city's regions cannot split (fewer regions than folds, fewer
  H3 parent cells than spatial folds: a scattered city has no neighbours to keep together) and warns, naming the
  protocol, k and the regions per fold; :func:`small_fold_warnings` warns when test folds are small.
* :func:`undefined_scores` lists every fold whose R², RMSE or MAE is undefined (R² needs two test regions with
  different values), naming method, indicator, protocol, regressor, seed, repeat and fold; :func:`undefined_note` is
  the caption note of a table whose means leave them out.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID

NOT_RUN = "not run: "  # prefix of the status table's `missing` text for a skipped representation
MIN_TEST_REGIONS = 5  # fewer test regions per fold than this: R² is noisy or undefined (a warning, not an error)
SCORE_COLUMNS = ("r2", "rmse", "mae")


def not_run_text(reason: str) -> str:
    """The cell text of a representation that was not run: "not run: <reason>"."""
    return f"{NOT_RUN}{reason}"


def not_run_of(status: pd.DataFrame) -> dict[str, str]:
    """{method: reason} of the representations the status table marks as not run (skipped inputs), in its order."""
    if status is None or status.empty or "missing" not in status.columns:
        return {}
    text = status["missing"].astype(str)
    rows = status[~status["available"].astype(bool) & text.str.startswith(NOT_RUN)]
    return {str(m): str(t)[len(NOT_RUN):] for m, t in zip(rows["method"], rows["missing"])}


def warn_not_run(not_run: Mapping[str, str], stacklevel: int = 1) -> None:
    """A warning per skipped representation, naming it and the reason (`stacklevel` as in :func:`warnings.warn`)."""
    for method, reason in not_run.items():
        warnings.warn(f"representation '{method}' is not evaluated: {not_run_text(reason)}", stacklevel=stacklevel)


# ---- protocols a small or scattered city cannot support ---------------------------------------------------------------
def protocol_problem(spec: Any, n_regions: int, region_resolution: int | None = None,
                     region_ids: Sequence[str] | None = None) -> str | None:
    """Why the regions cannot be split by `spec` (a :class:`musecl.evaluation.splits.SplitSpec`), or None."""
    if spec.kind == "holdout":
        n_test = math.ceil(spec.test_fraction * n_regions)
        n_val = math.ceil(spec.val_fraction * (n_regions - n_test))
        if n_regions - n_test - n_val < 1:
            return f"protocol '{spec.name}': a holdout split of {n_regions} regions leaves no training region"
        return None
    if n_regions < spec.k:
        return (f"protocol '{spec.name}': k = {spec.k} folds need at least {spec.k} regions, the city has "
                f"{n_regions}")
    if spec.kind == "spatial" and region_ids is not None:
        from musecl.data.regions import parent_cells

        parent = spec.parent_resolution
        if parent is None and region_resolution is not None:
            parent = region_resolution - 1
        if parent is None:
            return None
        n_parents = int(np.unique(parent_cells(np.asarray(region_ids, dtype=object), parent)).size)
        if n_parents < spec.k:
            return (f"protocol '{spec.name}': spatial k = {spec.k} folds need at least {spec.k} H3 parent cells "
                    f"(resolution {parent}) holding the {n_regions} regions, the city has {n_parents}: too few "
                    "neighbouring regions to keep together")
    return None


def feasible_settings(settings: Any, region_ids: Sequence[str], region_resolution: int | None = None
                      ) -> tuple[Any, dict[str, str]]:
    """`settings` (:class:`musecl.evaluation.protocol.EvaluationSettings`) without the protocols the regions cannot
    be split by, and {protocol: why} for those (each also a warning). Unchanged when every protocol fits."""
    dropped = {}
    for p in settings.protocols:
        problem = protocol_problem(p.split, len(region_ids), region_resolution, region_ids)
        if problem:
            dropped[p.name] = problem
            warnings.warn(f"{problem}; the protocol is skipped", stacklevel=1)
    if not dropped:
        return settings, {}
    kept = tuple(p for p in settings.protocols if p.name not in dropped)
    if not kept:
        raise ValueError("no evaluation protocol can split this city's regions: " + "; ".join(dropped.values()))
    return replace(settings, protocols=kept), dropped


def small_fold_warnings(folds_table: pd.DataFrame, minimum: int = MIN_TEST_REGIONS) -> list[str]:
    """A warning per protocol whose smallest test fold has fewer than `minimum` regions (R² on so few is noisy, and
    undefined when they share one value), naming the protocol, its folds and the test regions per fold."""
    test = folds_table[folds_table["role"] == "test"]
    sizes = test.groupby(["protocol", "repeat", "fold"], sort=False).size()
    out = []
    for protocol, part in sizes.groupby(level="protocol", sort=False):
        if part.min() < minimum:
            k = int(part.groupby(level="repeat").size().max())
            n = int(folds_table.loc[folds_table["protocol"] == protocol, REGION_ID].nunique())
            sizes_text = f"{part.min()}" if part.min() == part.max() else f"{part.min()}-{part.max()}"
            split = (f"{n} regions in k = {k} folds leave {sizes_text} test regions per fold" if k > 1 else
                     f"a holdout split of {n} regions leaves {sizes_text} test regions")
            out.append(f"protocol '{protocol}': {split} (fewer than {minimum}): its scores are noisy and R² is "
                       "undefined on a fold whose test regions share one value; a city this small supports fewer folds")
    for text in out:
        warnings.warn(text, stacklevel=1)
    return out


# ---- undefined fold scores ----------------------------------------------------------------------------------------------
def undefined_scores(results: pd.DataFrame, columns: Sequence[str] = SCORE_COLUMNS) -> pd.DataFrame:
    """Every score row with an undefined R², RMSE or MAE: method, indicator, protocol, regressor, seed, repeat, fold,
    n_test and which metrics are undefined (empty when every score is defined)."""
    keys = [c for c in ("method", "indicator", "protocol", "regressor", "seed", "repeat", "fold", "n_test")
            if c in results.columns]
    bad = results[list(columns)].isna()
    rows = results.loc[bad.any(axis=1), keys].copy()
    rows["undefined"] = [", ".join(c for c in columns if flag[c]) for _, flag in bad[bad.any(axis=1)].iterrows()]
    return rows.reset_index(drop=True)


def warn_undefined(results: pd.DataFrame) -> pd.DataFrame:
    """:func:`undefined_scores`, each row also a warning naming the indicator, protocol, regressor, repeat and fold
    (one warning per indicator, protocol, repeat and fold, listing the methods); those folds are left out of the
    means, the paired tests and the tables, whose captions count them (:func:`undefined_note`)."""
    bad = undefined_scores(results)
    keys = [c for c in ("indicator", "protocol", "regressor", "seed", "repeat", "fold") if c in bad.columns]
    for key, part in bad.groupby(keys, sort=False):
        where = ", ".join(f"{k} {v!r}" if isinstance(v, str) else f"{k} {v}" for k, v in zip(keys, key))
        methods = list(dict.fromkeys(part["method"]))
        n_test = int(part["n_test"].iloc[0]) if "n_test" in part.columns else None
        warnings.warn(f"{part['undefined'].iloc[0]} undefined for {where}"
                      + (f" ({n_test} test regions)" if n_test is not None else "")
                      + f", methods {', '.join(methods[:5])}{' ...' if len(methods) > 5 else ''}: the fold is left "
                      "out of the means and tests", stacklevel=1)
    return bad


def undefined_note(results: pd.DataFrame, protocol: str, regressor: str) -> list[str]:
    """The caption note of one protocol/regressor's tables: how many fold scores were undefined and left out."""
    part = results[(results["protocol"] == protocol) & (results["regressor"] == regressor)]
    bad = undefined_scores(part)
    if bad.empty:
        return []
    folds = bad[["repeat", "fold"]].drop_duplicates()
    where = ", ".join(f"repeat {r} fold {f}" for r, f in folds.itertuples(index=False))
    return [f"{len(bad)} of {len(part)} fold scores undefined (too few or identical test values: {where}; "
            f"indicators {', '.join(dict.fromkeys(bad['indicator']))}), left out of the means and tests"]
