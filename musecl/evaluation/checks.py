"""Checks that catch a broken ceiling or a blown-up fold (params.yaml `evaluation.checks`, docs/evaluation.md).

* :func:`ceiling_flags`: a representation whose mean R² exceeds the ceiling's (the ``Oracle`` reference row) beyond its
  uncertainty. The rule: over the folds both were scored on (same protocol, regressor, indicator, repeat and fold), the
  paired difference d = R²(representation) − R²(ceiling) has mean > ``ceiling_se`` standard errors (std(d, ddof=1) /
  sqrt(n)) and mean > 0. A flag means either the ceiling is badly fitted or the representation knows something the
  latents do not (for the POI and comment counts it may: they are counted from the POI table, with noise the latents
  do not carry; docs/synthetic_city.md). Only the row named by ``ceiling`` is a ceiling: the other reference rows
  (floors such as ``Pixel stats RS`` / ``SV``) are checked against it like any representation.
* :func:`fold_flags`: every fold whose R² is below ``min_fold_r2`` (default −1: worse than predicting the training
  mean by a full variance of the test targets), naming representation, indicator, protocol, regressor and fold.

:func:`check_notes` turns both into the one-line notes that notebook 06 prints and the tables of notebook 07 carry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

KEYS = ("protocol", "regressor", "indicator")


@dataclass(frozen=True)
class CheckSettings:
    """`evaluation.checks` in params.yaml."""

    ceiling: str | None = "Oracle"
    ceiling_se: float = 2.0
    min_fold_r2: float = -1.0

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "CheckSettings":
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"params.yaml evaluation.checks: unknown keys {unknown} "
                             f"(known: {sorted(cls.__dataclass_fields__)})")
        try:
            return cls(ceiling=cfg.get("ceiling", "Oracle"), ceiling_se=float(cfg.get("ceiling_se", 2.0)),
                       min_fold_r2=float(cfg.get("min_fold_r2", -1.0)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"params.yaml evaluation.checks: ceiling_se and min_fold_r2 must be numbers ({err})") from err


def ceiling_flags(results: pd.DataFrame, ceiling: str | None, n_se: float = 2.0) -> pd.DataFrame:
    """(method, protocol, regressor, indicator) whose mean R² beats the `ceiling` row's beyond `n_se` standard errors."""
    columns = [*KEYS, "method", "r2_mean", "ceiling_r2_mean", "mean_diff", "se", "n_folds"]
    if not ceiling or ceiling not in set(results["method"]):
        return pd.DataFrame(columns=columns)
    from musecl.evaluation.stats import align_pairs

    rows = []
    for method in [m for m in dict.fromkeys(results["method"]) if m != ceiling]:
        for key, both in results[results["method"].isin([method, ceiling])].groupby(list(KEYS), sort=False):
            mine, theirs = (both[both["method"] == m] for m in (method, ceiling))
            if mine.empty or theirs.empty:
                continue
            mine, theirs = align_pairs(mine, theirs, f"{method} and {ceiling} for {key}")  # seeds x folds
            part = pd.DataFrame({method: mine["r2"].to_numpy(), ceiling: theirs["r2"].to_numpy()})
            d = (part[method] - part[ceiling]).to_numpy()
            if len(d) < 2:
                continue
            se = float(np.std(d, ddof=1) / np.sqrt(len(d)))
            if d.mean() > 0 and d.mean() > n_se * se:
                rows.append({**dict(zip(KEYS, key)), "method": method, "r2_mean": float(part[method].mean()),
                             "ceiling_r2_mean": float(part[ceiling].mean()), "mean_diff": float(d.mean()), "se": se,
                             "n_folds": len(d)})
    return pd.DataFrame(rows, columns=columns)


def fold_flags(results: pd.DataFrame, min_r2: float = -1.0) -> pd.DataFrame:
    """Every fold with R² below `min_r2`: method, indicator, protocol, regressor, repeat, fold and its R²."""
    bad = results[results["r2"] < min_r2]
    seed = ["seed"] if "seed" in results.columns else []
    return bad[["method", *KEYS, *seed, "repeat", "fold", "r2"]].reset_index(drop=True)


def run_checks(results: pd.DataFrame, settings: CheckSettings) -> dict[str, pd.DataFrame]:
    """Both flag tables: {"ceiling": ceiling_flags, "folds": fold_flags}."""
    return {"ceiling": ceiling_flags(results, settings.ceiling, settings.ceiling_se),
            "folds": fold_flags(results, settings.min_fold_r2)}


def check_notes(flags: Mapping[str, pd.DataFrame], settings: CheckSettings, protocol: str | None = None,
                regressor: str | None = None) -> list[str]:
    """One line per ceiling flag and one per (representation, protocol, regressor) with blown-up folds (how many, on
    which indicators, the worst one named), restricted to one protocol and regressor if given; empty when nothing is
    flagged. `flags["folds"]` lists every such fold."""
    def part(frame: pd.DataFrame) -> pd.DataFrame:
        keep = pd.Series(True, index=frame.index)
        if protocol is not None:
            keep &= frame["protocol"] == protocol
        if regressor is not None:
            keep &= frame["regressor"] == regressor
        return frame[keep]

    notes = [
        f"Above the ceiling: {r.method} on {r.indicator} ({r.protocol}, {r.regressor}) R² {r.r2_mean:.3f} vs "
        f"{settings.ceiling} {r.ceiling_r2_mean:.3f} (mean paired difference {r.mean_diff:.3f} > {settings.ceiling_se:g} "
        f"SE {r.se:.3f} over {r.n_folds} folds)."
        for r in part(flags["ceiling"]).itertuples()
    ]
    folds = part(flags["folds"])
    for (method, protocol_, regressor_), group in folds.groupby(["method", "protocol", "regressor"], sort=False):
        worst = group.loc[group["r2"].idxmin()]
        indicators = ", ".join(dict.fromkeys(group["indicator"]))
        notes.append(
            f"Blown-up folds: {method} ({protocol_}, {regressor_}): {len(group)} fold(s) with R² < "
            f"{settings.min_fold_r2:g} on {indicators}; worst {worst['r2']:.2f} ({worst['indicator']}, repeat "
            f"{worst['repeat']}, fold {worst['fold']})."
        )
    return notes
