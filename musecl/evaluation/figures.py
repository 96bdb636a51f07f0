"""Figures of the evaluation: R² bars with error bars, ablation bars, predicted vs. true, maps, folds, sensitivity.

Every function returns a matplotlib Figure and draws from stored tables only (results, predictions, folds, regions),
so notebook 07 regenerates all of them without training anything. matplotlib and geopandas are imported lazily.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID
from musecl.evaluation.tables import METRIC_LABELS, indicator_label
from musecl.storage import atomic_path

ROLE_HATCH = {"ours": "", "variant": "//", "baseline": "", "reference": ".."}
REFERENCE_GREYS = ("#7f7f7f", "#c7c7c7", "#4d4d4d", "#a5a5a5", "#262626")  # one per reference row, in registry order


def save_figure(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Save a figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _method_colors(methods: Sequence[str], roles: Mapping[str, str]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    # red is reserved for ours and greys for references (floors and ceilings, e.g. the pixel statistics and the Oracle:
    # one shade each, so the legend tells them apart); the others cycle through tab10 and its light tab20 shades
    tab10, tab20 = plt.get_cmap("tab10"), plt.get_cmap("tab20")
    palette = [tab10(i) for i in (0, 1, 2, 4, 5, 6, 8, 9)] + [tab20(i) for i in (1, 3, 5, 9, 11, 13, 17, 19)]
    colors, i = {}, 0
    references = [m for m in methods if roles.get(m) == "reference"]
    for m in methods:
        if roles.get(m) == "ours":
            colors[m] = "#d62728"
        elif roles.get(m) == "reference":
            colors[m] = REFERENCE_GREYS[references.index(m) % len(REFERENCE_GREYS)]
        else:
            colors[m] = palette[i % len(palette)]
            i += 1
    return colors


def metric_bars(
    summary: pd.DataFrame,
    roles: Mapping[str, str],
    protocol: str,
    regressor: str,
    metric: str = "r2",
    methods: Sequence[str] | None = None,
    indicators: Sequence[str] | None = None,
    title: str | None = None,
) -> Any:
    """Grouped bars: one group per indicator, one bar per method (mean, error bar = std over repeats × folds)."""
    import matplotlib.pyplot as plt

    part = summary[(summary["protocol"] == protocol) & (summary["regressor"] == regressor)]
    if part.empty:
        raise ValueError(f"no results for protocol '{protocol}' with regressor '{regressor}'")
    methods = [m for m in (methods or dict.fromkeys(part["method"])) if m in set(part["method"])]
    indicators = list(indicators or dict.fromkeys(part["indicator"]))
    cell = part.set_index(["method", "indicator"])
    colors = _method_colors(methods, roles)
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(indicators) * max(len(methods), 4) * 0.25), 4.2))
    x = np.arange(len(indicators))
    for j, m in enumerate(methods):
        means = [cell.loc[(m, i), f"{metric}_mean"] if (m, i) in cell.index else np.nan for i in indicators]
        stds = [cell.loc[(m, i), f"{metric}_std"] if (m, i) in cell.index else np.nan for i in indicators]
        ax.bar(x - 0.4 + width * (j + 0.5), means, width, yerr=np.nan_to_num(stds), capsize=2, label=m,
               color=colors[m], hatch=ROLE_HATCH.get(roles.get(m, "baseline"), ""), edgecolor="white", linewidth=0.3)
    ax.set_xticks(x, [indicator_label(i) for i in indicators])
    ax.set_ylabel(f"{METRIC_LABELS[metric]} (mean ± std over folds)")
    ax.axhline(0, color="black", linewidth=0.6)
    if metric == "r2":
        low = np.nanmin(part[f"{metric}_mean"] - part[f"{metric}_std"].fillna(0))
        ax.set_ylim(max(min(low, 0) - 0.05, -1.0), 1.0)
    ax.set_title(title or f"{METRIC_LABELS[metric]} per indicator ({protocol} protocol, {regressor})")
    ax.legend(ncol=2, fontsize=7, frameon=False, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def ablation_bars(
    summary: pd.DataFrame,
    roles: Mapping[str, str],
    methods: Sequence[str],
    protocol: str,
    regressor: str,
    metric: str = "r2",
) -> Any:
    """R² of the ablation set (ours and its variants, and the component baselines listed) per indicator."""
    present = [m for m in methods if m in set(summary["method"])]
    if not present:
        raise ValueError(f"none of the ablation methods {list(methods)} has results")
    return metric_bars(summary, roles, protocol, regressor, metric, present,
                       title=f"Ablations: {METRIC_LABELS[metric]} ({protocol} protocol, {regressor})")


def predicted_vs_true(
    predictions: pd.DataFrame,
    method: str,
    protocol: str,
    regressor: str,
    repeat: int = 0,
    indicators: Sequence[str] | None = None,
) -> Any:
    """One scatter per indicator of the test predictions of one repeat (every fold), with the diagonal and R²."""
    import matplotlib.pyplot as plt

    from musecl.evaluation.metrics import r2_score

    part = predictions[(predictions["method"] == method) & (predictions["protocol"] == protocol)
                       & (predictions["regressor"] == regressor) & (predictions["repeat"] == repeat)]
    if part.empty:
        raise ValueError(f"no predictions for {method} / {protocol} / {regressor} / repeat {repeat}")
    indicators = list(indicators or dict.fromkeys(part["indicator"]))
    cols = min(3, len(indicators))
    rows = int(np.ceil(len(indicators) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.1 * rows), squeeze=False)
    for ax, ind in zip(axes.flat, indicators):
        p = part[part["indicator"] == ind]
        ax.scatter(p["y_true"], p["y_pred"], s=7, alpha=0.6, color="#1f77b4", edgecolor="none")
        lo = float(min(p["y_true"].min(), p["y_pred"].min()))
        hi = float(max(p["y_true"].max(), p["y_pred"].max()))
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
        ax.set_title(f"{indicator_label(ind)}  (pooled R² = {r2_score(p['y_true'], p['y_pred']):.3f})", fontsize=9)
        ax.set_xlabel("true (log1p)", fontsize=8)
        ax.set_ylabel("predicted", fontsize=8)
    for ax in list(axes.flat)[len(indicators):]:
        ax.set_visible(False)
    fig.suptitle(f"{method}: predicted vs. true on the test regions ({protocol}, {regressor}, repeat {repeat})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def indicator_maps(
    regions: Any,
    predictions: pd.DataFrame,
    method: str,
    protocol: str,
    regressor: str,
    indicators: Sequence[str] | None = None,
    repeat: int = 0,
) -> Any:
    """Maps of true and predicted indicators and the residual; with a K-fold protocol every region is predicted once
    per repeat (out of fold). Regions without a test prediction in that repeat are drawn grey."""
    import matplotlib.pyplot as plt

    part = predictions[(predictions["method"] == method) & (predictions["protocol"] == protocol)
                       & (predictions["regressor"] == regressor) & (predictions["repeat"] == repeat)]
    if part.empty:
        raise ValueError(f"no predictions for {method} / {protocol} / {regressor} / repeat {repeat}")
    indicators = list(indicators or dict.fromkeys(part["indicator"]))
    gdf = regions[[REGION_ID, "geometry"]].copy()
    gdf[REGION_ID] = gdf[REGION_ID].astype(str)
    fig, axes = plt.subplots(len(indicators), 3, figsize=(10.5, 3.2 * len(indicators)), squeeze=False)
    for row, ind in zip(axes, indicators):
        p = part[part["indicator"] == ind].groupby(REGION_ID)[["y_true", "y_pred"]].mean()
        g = gdf.merge(p, left_on=REGION_ID, right_index=True, how="left")
        g["residual"] = g["y_pred"] - g["y_true"]
        vmin, vmax = np.nanmin(g[["y_true", "y_pred"]].to_numpy()), np.nanmax(g[["y_true", "y_pred"]].to_numpy())
        lim = np.nanmax(np.abs(g["residual"])) if g["residual"].notna().any() else 1.0
        for ax, col, kw in ((row[0], "y_true", dict(cmap="viridis", vmin=vmin, vmax=vmax)),
                            (row[1], "y_pred", dict(cmap="viridis", vmin=vmin, vmax=vmax)),
                            (row[2], "residual", dict(cmap="RdBu_r", vmin=-lim, vmax=lim))):
            g.plot(column=col, ax=ax, legend=True, missing_kwds={"color": "lightgrey"}, linewidth=0, **kw)
            ax.set_axis_off()
            ax.set_title(f"{indicator_label(ind)}: {col.replace('y_', '')}", fontsize=9)
    fig.suptitle(f"{method}: out-of-fold predictions ({protocol}, {regressor}, repeat {repeat})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / len(indicators)))
    return fig


def fold_map(regions: Any, folds_table: pd.DataFrame, protocols: Sequence[str], repeat: int = 0) -> Any:
    """Which test fold each region falls in, one panel per protocol (spatial folds come out as compact patches)."""
    import matplotlib.pyplot as plt

    gdf = regions[[REGION_ID, "geometry"]].copy()
    gdf[REGION_ID] = gdf[REGION_ID].astype(str)
    fig, axes = plt.subplots(1, len(protocols), figsize=(4.6 * len(protocols), 4.4), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        part = folds_table[(folds_table["protocol"] == protocol) & (folds_table["repeat"] == repeat)
                           & (folds_table["role"] == "test")]
        if part.empty:
            raise ValueError(f"no folds for protocol '{protocol}', repeat {repeat}")
        g = gdf.merge(part[[REGION_ID, "fold"]].astype({REGION_ID: str}), on=REGION_ID, how="left")
        g["fold"] = g["fold"].map(lambda f: f"fold {int(f)}" if pd.notna(f) else None)
        g.plot(column="fold", ax=ax, categorical=True, cmap="tab10", legend=True, linewidth=0.1, edgecolor="white",
               missing_kwds={"color": "lightgrey"}, legend_kwds={"fontsize": 7, "frameon": False})
        ax.set_axis_off()
        ax.set_title(f"{protocol}: test fold of each region (repeat {repeat})", fontsize=9)
    fig.tight_layout()
    return fig


# ---- sensitivity over embedding size and triplet margin --------------------------------------------------------------
SENSITIVITY_COLUMNS = ["parameter", "value", "method", "indicator", "protocol", "regressor", "repeat", "fold", "r2"]


def collect_sensitivity(runs: Mapping[tuple[str, float], pd.DataFrame]) -> pd.DataFrame:
    """One sensitivity table from several evaluation runs: `{(parameter, value): results table of that run}`.

    E.g. `{("embedding_dim", 64): results_64, ("embedding_dim", 128): results_128, ("margin", 1.0): ...}`, where each
    results table is the `results.parquet` of a pipeline run with that setting (`dvc exp run -S ...`).
    """
    parts = []
    for (parameter, value), results in runs.items():
        part = results.copy()
        part.insert(0, "value", value)
        part.insert(0, "parameter", parameter)
        parts.append(part)
    if not parts:
        raise ValueError("collect_sensitivity: no runs given")
    table = pd.concat(parts, ignore_index=True)
    missing = [c for c in SENSITIVITY_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"sensitivity runs lack columns {missing}")
    return table


def sensitivity_plot(
    table: pd.DataFrame, method: str, protocol: str, regressor: str, metric: str = "r2",
    parameters: Sequence[str] | None = None,
) -> Any:
    """One panel per parameter (embedding size, triplet margin): mean ± std of the metric per indicator vs. value."""
    import matplotlib.pyplot as plt

    missing = [c for c in SENSITIVITY_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"sensitivity table lacks columns {missing} (expected {SENSITIVITY_COLUMNS})")
    part = table[(table["method"] == method) & (table["protocol"] == protocol) & (table["regressor"] == regressor)]
    if part.empty:
        raise ValueError(f"sensitivity table has no rows for {method} / {protocol} / {regressor}")
    parameters = list(parameters or dict.fromkeys(part["parameter"]))
    fig, axes = plt.subplots(1, len(parameters), figsize=(4.2 * len(parameters), 3.4), squeeze=False)
    for ax, param in zip(axes[0], parameters):
        p = part[part["parameter"] == param]
        stats = p.groupby(["indicator", "value"], sort=True)[metric].agg(["mean", "std"]).reset_index()
        for ind, s in stats.groupby("indicator", sort=False):
            ax.errorbar(s["value"], s["mean"], yerr=s["std"].fillna(0), marker="o", capsize=2, label=indicator_label(ind))
        ax.set_xlabel(param)
        ax.set_ylabel(f"{METRIC_LABELS[metric]} (mean ± std)")
        values = np.sort(stats["value"].unique())
        if np.all(values > 0) and values.max() / values.min() >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(values)
        ax.set_xticklabels([f"{v:g}" for v in values])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # outside the lines
    fig.suptitle(f"Sensitivity of {method} ({protocol}, {regressor})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig
