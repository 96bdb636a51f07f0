"""Figures of the evaluation: R² panels (one per indicator), ablation panels, predicted vs. true, maps, folds, sensitivity.

Every function returns a matplotlib Figure and draws from stored tables only (results, predictions, folds, regions),
so notebook 07 regenerates all of them without training anything. matplotlib and geopandas are imported lazily.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID
from musecl.evaluation.tables import METRIC_LABELS, indicator_label
from musecl.storage import atomic_path

# the rows of the R² panels, top to bottom: (role, heading); inside a group, best mean over the indicators first
ROW_GROUPS = (("reference", "References"), ("baseline", "Baselines"), ("ours", "Ours"), ("variant", "Ablations, variants"))
FONT = 8                # points: every text of the panels (legible at 6.75 in, a paper's full width)
PANEL_WIDTH = 6.75      # inches: the whole figure; it is shown at this width in a notebook and in a two-column paper
ROW_HEIGHT = 0.15       # inches per method row


def save_figure(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Save a figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight",
                    metadata={"Software": None} if path.suffix in ("", ".png") else None)
    plt.close(fig)
    return path


def panel_rows(means: pd.Series, roles: Mapping[str, str], higher_is_better: bool = True) -> list[tuple[str, list[str]]]:
    """The methods of the R² panels grouped as :data:`ROW_GROUPS`, each group best first by `means` (the mean of
    the metric over the indicators, indexed by method; ties keep the given order). Empty groups are left out."""
    order = means.sort_values(ascending=not higher_is_better, kind="stable").index
    out = []
    for role, heading in ROW_GROUPS:
        members = [m for m in order if roles.get(m, "baseline") == role]
        if members:
            out.append((heading, members))
    return out


def bounds_of(means: pd.DataFrame, roles: Mapping[str, str], ceiling: str | None, floors: Sequence[str] | None,
              higher_is_better: bool = True) -> tuple[str | None, list[str]]:
    """The ceiling row and the floor rows drawn as lines: `ceiling` (default: the reference row with the best mean)
    and `floors` (default: the other reference rows); rows without results are dropped."""
    references = [m for m in means.index if roles.get(m) == "reference"]
    if ceiling is None and references:
        overall = means.loc[references].mean(axis=1)
        ceiling = overall.idxmax() if higher_is_better else overall.idxmin()
    ceiling = ceiling if ceiling in means.index else None
    floors = [m for m in (references if floors is None else floors) if m in means.index and m != ceiling]
    return ceiling, floors


def metric_bars(
    summary: pd.DataFrame,
    roles: Mapping[str, str],
    protocol: str,
    regressor: str,
    metric: str = "r2",
    methods: Sequence[str] | None = None,
    indicators: Sequence[str] | None = None,
    title: str | None = None,
    ceiling: str | None = None,
    floors: Sequence[str] | None = None,
    r2_min: float = -1.0,
    not_run: Mapping[str, str] | None = None,
) -> Any:
    """One small panel per indicator, the methods as rows grouped as references / baselines / ours / ablations (each
    group best first), a bar per method (mean, whisker = std over repeats × folds) in its fixed colour
    (:func:`musecl.plots.method_colors`), the ceiling (e.g. the Oracle) and the best floor (e.g. the pixel statistics)
    as vertical lines across every row. An R² mean below `r2_min` is drawn to the axis limit, marked with a triangle
    and written out beside it, so no value is cut silently. Representations of `not_run` ({method: reason}: skipped
    in this city) are named under the panels, with the reason."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from musecl.evaluation.metrics import HIGHER_IS_BETTER
    from musecl.plots import method_colors

    part = summary[(summary["protocol"] == protocol) & (summary["regressor"] == regressor)]
    if part.empty:
        raise ValueError(f"no results for protocol '{protocol}' with regressor '{regressor}'")
    wanted = list(methods) if methods is not None else list(dict.fromkeys(part["method"]))
    part = part[part["method"].isin(wanted)]
    indicators = list(indicators or dict.fromkeys(part["indicator"]))
    means = part.pivot(index="method", columns="indicator", values=f"{metric}_mean").reindex(columns=indicators)
    stds = part.pivot(index="method", columns="indicator", values=f"{metric}_std").reindex_like(means).fillna(0.0)
    means = means.reindex([m for m in wanted if m in means.index])
    higher = HIGHER_IS_BETTER.get(metric, True)
    groups = panel_rows(means.mean(axis=1), roles, higher)
    ceiling, floors = bounds_of(means, roles, ceiling, floors, higher)
    colors = method_colors(list(means.index), roles)

    # rows top to bottom: a heading, then its methods; y grows downwards (inverted axis)
    y, labels, heads, rows = 0.0, [], [], {}
    for heading, members in groups:
        heads.append((y, heading))
        y += 1
        for m in members:
            rows[m] = y
            labels.append((y, m))
            y += 1
        y += 0.4
    low = float(np.nanmin((means - stds).to_numpy())) if means.notna().any().any() else 0.0
    high = float(np.nanmax((means + stds).to_numpy())) if means.notna().any().any() else 1.0
    if metric == "r2":
        lo, hi = max(min(low, 0.0) - 0.05, r2_min), 1.0
    else:
        lo, hi = 0.0, high * 1.05 if high > 0 else 1.0
    fig, axes = plt.subplots(1, len(indicators), sharey=True, squeeze=False, layout="constrained",
                             figsize=(PANEL_WIDTH, ROW_HEIGHT * y + 1.4))
    order = list(rows)
    ys = np.array([rows[m] for m in order])
    for ax, ind in zip(axes[0], indicators):
        mu = means.loc[order, ind].to_numpy(dtype=float)
        sd = stds.loc[order, ind].to_numpy(dtype=float)
        clipped = mu < lo
        shown = np.where(clipped, lo, mu)
        for m, yy, x, err in zip(order, ys, shown, np.where(clipped, 0.0, sd)):  # one labelled bar per method
            ax.barh(yy, x, height=0.72, color=colors[m], edgecolor="none", label=m, xerr=err,
                    error_kw={"elinewidth": 0.6, "ecolor": "#333333", "capsize": 0})
        for yy, value in zip(ys[clipped], mu[clipped]):
            ax.plot(lo, yy, marker="<", color="black", markersize=3.5, clip_on=False)
            ax.text(0.03 * (hi - lo), yy, f"{value:.1f}".replace("-", "\u2212"), va="center", ha="left",
                    fontsize=FONT, color="black")
        if ceiling is not None and np.isfinite(means.at[ceiling, ind]):
            ax.axvline(means.at[ceiling, ind], color="#252525", linestyle="--", linewidth=0.9)
        floor_values = means.loc[floors, ind].dropna() if floors else pd.Series(dtype=float)
        if len(floor_values):
            ax.axvline(floor_values.max() if higher else floor_values.min(), color="#737373", linestyle=":",
                       linewidth=1.1)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_locator(plt.MultipleLocator(1.0 if hi - lo > 1.2 else 0.5))
        ax.xaxis.set_major_formatter("{x:g}")
        ax.tick_params(labelsize=FONT, length=2, pad=1.5)
        ax.set_title(indicator_label(ind), fontsize=FONT + 1, fontweight="bold")
        ax.grid(axis="x", alpha=0.3, linewidth=0.5)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    first = axes[0][0]
    ticks = sorted(heads + labels)  # top to bottom
    first.set_yticks([t for t, _ in ticks], [text for _, text in ticks])
    for tick, (_, text) in zip(first.get_yticklabels(), ticks):
        if (_, text) in heads:
            tick.set_fontweight("bold")
            tick.set_fontstyle("italic")
        elif roles.get(text) == "ours":
            tick.set_fontweight("bold")
            tick.set_color(colors[text])
    first.tick_params(axis="y", length=0, labelsize=FONT)
    first.set_ylim(y - 0.2, -0.8)
    codes = "; ".join(f"{indicator_label(i)} {i.replace('_', ' ')}" for i in indicators if indicator_label(i) != i)
    axis_text = f"{METRIC_LABELS[metric]} (bar: mean, whisker: ± std over (training seeds ×) repeats × folds)" + (f"\n{codes}" if codes else "")
    if not_run:  # one line per reason, wrapped to the panels' width
        by_reason: dict[str, list[str]] = {}
        for m, why in not_run.items():
            by_reason.setdefault(why, []).append(m)
        axis_text += "".join("\n" + textwrap.fill(f"not run ({why}): {', '.join(ms)}", width=max(60, 20 * len(indicators)))
                             for why, ms in by_reason.items())
    fig.suptitle(title or f"{METRIC_LABELS[metric]} per indicator: {protocol} protocol, {regressor}",
                 fontsize=FONT + 1, fontweight="bold")
    handles = []
    if ceiling is not None:
        handles.append(Line2D([], [], color="#252525", linestyle="--", linewidth=0.9, label=f"ceiling: {ceiling}"))
    if floors:
        handles.append(Line2D([], [], color="#737373", linestyle=":", linewidth=1.1,
                              label=f"floor: best of {', '.join(floors)}"))
    if (means < lo).any().any():
        handles.append(Line2D([], [], color="black", marker="<", linestyle="none", markersize=3.5,
                              label=f"mean below {lo:g}: bar cut at the axis, mean written beside it"))
    # the legend below the panels carries the axis description and the indicator key as its title
    fig.legend(handles=handles, loc="outside lower center", ncol=max(min(len(handles), 2), 1), fontsize=FONT,
               frameon=False, handlelength=1.8, columnspacing=1.2, title=axis_text, title_fontsize=FONT)
    fig.get_layout_engine().set(w_pad=0.02, wspace=0.09)
    return fig


def ablation_bars(
    summary: pd.DataFrame,
    roles: Mapping[str, str],
    methods: Sequence[str],
    protocol: str,
    regressor: str,
    metric: str = "r2",
    not_run: Mapping[str, str] | None = None,
) -> Any:
    """R² of the ablation set (ours and its variants, and the component baselines listed) per indicator; those of
    `not_run` ({method: reason}) are named under the panels."""
    present = [m for m in methods if m in set(summary["method"])]
    if not present:
        raise ValueError(f"none of the ablation methods {list(methods)} has results")
    return metric_bars(summary, roles, protocol, regressor, metric, present,
                       title=f"Ablations: {METRIC_LABELS[metric]} ({protocol} protocol, {regressor})",
                       not_run=not_run)


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
                       & (predictions["regressor"] == regressor) & (predictions["repeat"] == repeat)
                       & (predictions["seed"] == 0 if "seed" in predictions.columns else True)]
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
                       & (predictions["regressor"] == regressor) & (predictions["repeat"] == repeat)
                       & (predictions["seed"] == 0 if "seed" in predictions.columns else True)]
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
