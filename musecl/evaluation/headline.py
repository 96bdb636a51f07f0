"""The headline numbers of a run: each method's mean R² over the indicators, and ours against the best baseline, the
ceiling and the floor, for one protocol and regressor (the robust one, `evaluation.figures.robust`).

`headline_metrics` is the small file DVC shows as *the* metrics of the pipeline (`reports/headline.json`,
`dvc metrics show` / `dvc exp show`); `mean_r2_table` is every method's row (`reports/mean_r2.csv`, a `dvc plots`
bar chart), since thirty methods do not fit on one terminal line. Both read the summary of
:func:`musecl.evaluation.stats.summarise`; nothing here fits or tests anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from musecl.evaluation.figures import ROW_GROUPS, bounds_of
from musecl.storage import write_json, write_text

TABLE_COLUMNS = ["method", "role", "group", "mean_r2", "n_indicators"]


def _part(summary: pd.DataFrame, protocol: str, regressor: str) -> pd.DataFrame:
    part = summary[(summary["protocol"] == protocol) & (summary["regressor"] == regressor)]
    if part.empty:
        raise ValueError(f"headline: no results for protocol '{protocol}' with regressor '{regressor}' "
                         f"(evaluation.figures.robust in params.yaml)")
    return part


def mean_r2_table(summary: pd.DataFrame, roles: Mapping[str, str], protocol: str, regressor: str) -> pd.DataFrame:
    """One row per method: its role, its group of the R² figure, and the mean over the indicators of its mean R²
    (over repeats × folds), grouped as the figure (references, baselines, ours, ablations), best first in a group."""
    part = _part(summary, protocol, regressor)
    wide = part.pivot(index="method", columns="indicator", values="r2_mean")
    table = pd.DataFrame({"method": wide.index, "mean_r2": wide.mean(axis=1).to_numpy(),
                          "n_indicators": wide.notna().sum(axis=1).to_numpy()})
    table["role"] = table["method"].map(lambda m: roles.get(m, "baseline"))
    headings = dict(ROW_GROUPS)
    table["group"] = table["role"].map(headings)
    rank = {role: i for i, (role, _) in enumerate(ROW_GROUPS)}
    table["_rank"] = table["role"].map(rank)
    table = table.sort_values(["_rank", "mean_r2"], ascending=[True, False], kind="stable")
    return table[TABLE_COLUMNS].reset_index(drop=True)


def headline_metrics(
    summary: pd.DataFrame,
    roles: Mapping[str, str],
    protocol: str,
    regressor: str,
    ceiling: str | None = None,
    floors: Sequence[str] | None = None,
    not_run: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A handful of numbers, each a mean R² over the indicators rounded to 4 decimals: `ours`, `best_baseline` (the
    baseline with the highest mean, named in `best_name`), `oracle` (the ceiling: `evaluation.checks.ceiling`, default
    the best reference row), `floor` (the best other reference row: the pixel statistics), `gap_best` and `gap_oracle`
    (ours minus each), and `rank`, ours' place among ours and the baselines ("1/16" = best). Missing rows give null.
    When ours is in `not_run` ({method: reason}: skipped in this city) its numbers are null and `rank` says
    "not run: <reason>"."""
    table = mean_r2_table(summary, roles, protocol, regressor)
    means = table.set_index("method")["mean_r2"]
    ours = [m for m in table["method"] if roles.get(m) == "ours"]
    skipped = [m for m, r in roles.items() if r == "ours" and m in (not_run or {})]
    if not ours and skipped:
        means[skipped[0]] = float("nan")
        ours = skipped
    if not ours:
        raise ValueError("headline: no evaluated representation has role 'ours' (evaluation.representations)")
    ours = ours[0]
    baselines = table[table["role"] == "baseline"]
    best = str(baselines.iloc[0]["method"]) if len(baselines) else None
    per_indicator = _part(summary, protocol, regressor).pivot(index="method", columns="indicator", values="r2_mean")
    ceiling, floors = bounds_of(per_indicator, roles, ceiling, floors)
    floor = max(floors, key=lambda m: means[m]) if floors else None

    def value(method: str | None) -> float | None:
        return round(float(means[method]), 4) if method is not None and np.isfinite(means[method]) else None

    def gap(other: str | None) -> float | None:
        a, b = value(ours), value(other)
        return round(a - b, 4) if a is not None and b is not None else None

    compared = table[table["role"].isin(["ours", "baseline"])].sort_values("mean_r2", ascending=False, kind="stable")
    rank = f"{list(compared['method']).index(ours) + 1}/{len(compared)}" if ours in set(compared["method"]) else (
        f"not run: {(not_run or {})[ours]}")
    # flat, short keys: `dvc metrics show` prints one column per key and must fit a terminal (< 120 characters)
    return {
        "ours": value(ours),
        "best_baseline": value(best),
        "best_name": best,
        "oracle": value(ceiling),
        "floor": value(floor),
        "gap_best": gap(best),
        "gap_oracle": gap(ceiling),
        "rank": rank,
    }


def headline_markdown(metrics: Mapping[str, Any], table: pd.DataFrame, ours: str, protocol: str,
                      regressor: str) -> str:
    """The headline as a short Markdown paragraph and the per-method table (for the notebook and the README)."""
    def num(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    m = metrics
    standing = (f"rank {m['rank']} among {ours} and the baselines" if not str(m["rank"]).startswith("not run")
                else str(m["rank"]))
    text = (f"Mean R² over the indicators ({protocol} protocol, {regressor}): **{ours} {num(m['ours'])}**, "
            f"{standing}; best baseline {m['best_name']} {num(m['best_baseline'])} "
            f"(gap {num(m['gap_best'])}); ceiling {num(m['oracle'])} (gap {num(m['gap_oracle'])}); best floor "
            f"{num(m['floor'])}.")
    rows = table.assign(mean_r2=table["mean_r2"].map(lambda v: f"{v:.3f}"))
    return text + "\n\n" + rows[["group", "method", "mean_r2", "n_indicators"]].to_markdown(index=False) + "\n"


def write_headline(metrics: Mapping[str, Any], table: pd.DataFrame, metrics_path: str | Path,
                   table_path: str | Path) -> tuple[Path, Path]:
    """Write the headline JSON (DVC metrics) and the per-method CSV (a DVC plot)."""
    write_json(dict(metrics), metrics_path)
    write_text(table.to_csv(index=False, float_format="%.4f"), table_path)
    return Path(metrics_path), Path(table_path)
