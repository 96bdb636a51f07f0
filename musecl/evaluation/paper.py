"""Regenerate every table and figure of the evaluation from stored results (notebook 07): nothing is trained here.

Roles (ours / baseline / variant / reference) and paper names come from the stored representation status of the run,
so the tables always describe what was actually evaluated; a representation that was not run (skipped in this city,
:mod:`musecl.evaluation.skipped`) gets a "not run: <reason>" row (column, cell), and when ours was not run the Impr. and
p-value rows are left out with a note saying so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from musecl.evaluation.checks import CheckSettings, check_notes, run_checks
from musecl.evaluation.regressors import REGRESSOR_DESCRIPTIONS
from musecl.evaluation.skipped import not_run_of, undefined_note
from musecl.evaluation.stats import compare_to_best_baseline, summarise
from musecl.evaluation.tables import Table, frame_table, paper_comparison, rank_agreement, table1, table2


def roles_of(status: pd.DataFrame) -> dict[str, str]:
    """Role of every evaluated representation."""
    return dict(zip(status.loc[status["available"], "method"], status.loc[status["available"], "role"]))


def registry_roles(status: pd.DataFrame) -> dict[str, str]:
    """Role of every registered representation, evaluated or not run (for "ours was not run" statements)."""
    return dict(zip(status["method"], status["role"]))


def ours_name(status: pd.DataFrame) -> str | None:
    """The registered representation with role 'ours' (evaluated or not), or None."""
    return next((m for m, r in registry_roles(status).items() if r == "ours"), None)


def paper_names_of(status: pd.DataFrame) -> dict[str, str]:
    part = status[status["available"] & (status["paper_name"].astype(str) != "")]
    return dict(zip(part["method"], part["paper_name"]))


def ours_and_baselines(status: pd.DataFrame) -> tuple[str, list[str]]:
    roles = roles_of(status)
    ours = [m for m, r in roles.items() if r == "ours"]
    if not ours:
        raise ValueError("no evaluated representation has role 'ours' (evaluation.representations in params.yaml)")
    return ours[0], [m for m, r in roles.items() if r == "baseline"]


def significance(results: pd.DataFrame, status: pd.DataFrame) -> pd.DataFrame:
    """Ours vs the best baseline for every protocol, regressor, indicator and metric (see stats.py)."""
    ours, baselines = ours_and_baselines(status)
    if not baselines:
        raise ValueError("no evaluated representation has role 'baseline': nothing to compare against")
    return compare_to_best_baseline(results, ours, baselines)


def paper_tables(
    results: pd.DataFrame,
    status: pd.DataFrame,
    reference: pd.DataFrame,
    city: str,
    headline: Mapping[str, str],
    checks: Mapping[str, Any] | None = None,
    city_label: str = "synthetic",
) -> dict[str, Table]:
    """Table 1 and Table 2 layouts for every protocol × regressor, the significance table, and the paper-vs-ours
    comparison (with the rank agreement) for the `headline` protocol and regressor. Tables 1-2 carry the flags of
    `checks` (params.yaml evaluation.checks, musecl/evaluation/checks.py) for their protocol and regressor as notes,
    and their captions say what the regressor is (:data:`REGRESSOR_DESCRIPTIONS`: the paper's own tables are the
    `mlp` column of the `paper` protocol). `city_label` names our city in the comparison with the paper ("synthetic"
    for the synthetic city, a real city's name). Representations not run (:func:`not_run_of`) get a "not run" row,
    and folds with undefined scores a note (:func:`musecl.evaluation.skipped.undefined_note`)."""
    check_settings = CheckSettings.from_config(checks)
    flags = run_checks(results, check_settings)
    summary = summarise(results)
    not_run = not_run_of(status)
    comparison, no_comparison = _comparison_or_why(results, status, not_run)
    roles = roles_of(status)
    tables: dict[str, Table] = {}
    combos = results[["protocol", "regressor"]].drop_duplicates().itertuples(index=False)
    for protocol, regressor in combos:  # representations not run: a last row (Table 1) or column (Table 2) each
        suffix = f"{protocol}_{regressor}"
        over = _over(results, protocol, regressor)
        what = f"{protocol} protocol, {regressor}: {regressor_description(protocol, regressor)}; mean ± std over {over}"
        tables[f"table1_{suffix}"] = table1(
            summary, comparison, roles, protocol, regressor, not_run=not_run,
            caption=f"Table 1 layout, {city} ({what}). Bold: best non-reference value. Impr.: relative gain over the "
                    "best baseline (the paper's formula); p: paired tests against that baseline over the same folds.")
        tables[f"table2_{suffix}"] = table2(
            summary, comparison, roles, protocol, regressor, city, not_run=not_run,
            caption=f"Table 2 layout, {city} ({protocol} protocol, {regressor}: "
                    f"{regressor_description(protocol, regressor)}; means over {over}). Impr. and "
                    "p (corrected resampled t-test) against the best baseline of each row.")
        for kind in ("table1", "table2"):
            tables[f"{kind}_{suffix}"].notes = (check_notes(flags, check_settings, protocol, regressor)
                                                + undefined_note(results, protocol, regressor) + no_comparison)
    sig = comparison.copy()
    tables["significance"] = frame_table(
        sig[["protocol", "regressor", "indicator", "metric", "ours_mean", "best_baseline", "best_mean", "improvement",
             "n_pairs", "p_ttest", "p_corrected_ttest", "p_wilcoxon"]],
        caption="Ours against the best baseline per protocol, regressor, indicator and metric (paired over folds).")
    tables["significance"].notes = no_comparison
    paper_names = dict(zip(status["method"], status["paper_name"].astype(str)))
    cmp_table, cmp_frame = paper_comparison(summary, reference, paper_names_of(status), headline["protocol"],
                                            headline["regressor"], city_label=city_label,
                                            not_run={paper_names[m]: why for m, why in not_run.items()
                                                     if paper_names.get(m)})
    tables["paper_vs_ours"] = cmp_table
    tables["rank_agreement"] = frame_table(
        rank_agreement(cmp_frame),
        caption="Spearman correlation between the paper's method ranking (per city) and ours (methods in common; "
                "NaN with fewer than 3).")
    return tables


SIGNIFICANCE_COLUMNS = ["protocol", "regressor", "indicator", "metric", "ours", "ours_mean", "best_baseline", "best_mean",
                        "improvement", "n_pairs", "mean_diff", "p_ttest", "p_wilcoxon", "p_corrected_ttest"]


def _comparison_or_why(results: pd.DataFrame, status: pd.DataFrame, not_run: Mapping[str, str]
                       ) -> tuple[pd.DataFrame, list[str]]:
    """Ours against the best baseline (:func:`significance`), or an empty table and the note saying why not: ours
    or every baseline was not run in this city."""
    ours = ours_name(status)
    if ours in not_run:
        why = f"{ours} (ours) was not run ({not_run[ours]})"
    elif not [m for m, r in roles_of(status).items() if r == "baseline"]:
        why = "no baseline was evaluated"
    else:
        return significance(results, status), []
    return pd.DataFrame(columns=SIGNIFICANCE_COLUMNS), [f"Impr. and the paired tests are not computed: {why}"]


def city_label_of(meta: Mapping[str, Any]) -> str:
    """How the tables name our city: "synthetic" for a generated city (city.json has a `generator` block), the
    city.json `name` of a real one."""
    return "synthetic" if "generator" in meta else str(meta.get("name", "this city"))


def regressor_description(protocol: str, regressor: str) -> str:
    """What a regressor column is, for captions; the `mlp` column of the `paper` protocol is the paper's Tables 1-2."""
    text = REGRESSOR_DESCRIPTIONS.get(regressor, regressor)
    return f"{text}: what the paper's Tables 1-2 report" if (protocol, regressor) == ("paper", "mlp") else text


def target_scaling_note(effect: pd.DataFrame, protocol: str = "paper") -> str:
    """One paragraph, every number from `effect` (:func:`musecl.evaluation.stats.target_scaling_effect`): how the
    faithful MLP (`mlp`) and the one on standardised targets (`mlp_std`) differ, averaged over the representations
    both fitted."""
    if effect.empty or set(effect["regressor"]) != {"mlp", "mlp_std"}:
        return (f"The `{protocol}` protocol has no representation fitted by both `mlp` and `mlp_std`: nothing to "
                "compare.")
    wide = effect.pivot(index="method", columns="regressor")
    n = len(wide)
    r2 = wide["r2"]
    mean = effect.groupby("regressor")[["bias", "target_sd", "corr", "spread", "best_epoch", "epochs"]].mean()
    f, s = mean.loc["mlp"], mean.loc["mlp_std"]
    return (
        f"On the `{protocol}` protocol, {n} representation(s) were fitted by both MLPs. Mean R² over indicators, "
        f"repeats and folds: from {r2['mlp'].min():.2f} to {r2['mlp'].max():.2f} with the targets as they are "
        f"(`mlp`, the paper), from {r2['mlp_std'].min():.2f} to {r2['mlp_std'].max():.2f} with standardised targets (`mlp_std`); "
        f"standardising raises it for {int((r2['mlp_std'] > r2['mlp']).sum())} of {n}. Averaged over the "
        f"representations (`mlp` vs `mlp_std`): mean test error (prediction − truth) {f['bias']:+.3f} vs "
        f"{s['bias']:+.3f}, against a target standard deviation of {f['target_sd']:.2f}; correlation of prediction "
        f"and truth {f['corr']:.2f} vs {s['corr']:.2f}; standard deviation of the predictions relative to the targets' "
        f"{f['spread']:.2f} vs {s['spread']:.2f}; best epoch {f['best_epoch']:.0f} vs {s['best_epoch']:.0f} and epochs "
        f"trained {f['epochs']:.0f} vs {s['epochs']:.0f} (each representation's median over its fits)."
    )


def write_tables(tables: Mapping[str, Table], out_dir: str | Path) -> pd.DataFrame:
    """Write every table as Markdown and LaTeX; returns the list of files."""
    rows = []
    for name, table in tables.items():
        paths = table.write(out_dir, name)
        rows.append({"table": name, "markdown": str(paths["md"]), "latex": str(paths["tex"])})
    return pd.DataFrame(rows)


def figure_plan(
    status: pd.DataFrame, settings: Mapping[str, Any], results: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Which protocol/regressor/method each figure shows, from `evaluation.figures` (checked against the results).
    The method defaults to ours; when ours was not run (skipped in this city), to the first evaluated variant, else
    baseline, in the registry's order (the notebook says so)."""
    roles = roles_of(status)
    fallback = [m for role in ("ours", "variant", "baseline") for m, r in roles.items() if r == role]
    if not fallback:
        raise ValueError("no evaluated representation has role 'ours', 'variant' or 'baseline'")
    ours = fallback[0]
    have = set(map(tuple, results[["protocol", "regressor"]].drop_duplicates().to_numpy()))
    plan = {}
    for key in ("headline", "robust", "maps"):
        spec = dict(settings.get(key) or {})
        combo = (spec.get("protocol"), spec.get("regressor"))
        if combo not in have:
            raise ValueError(f"evaluation.figures.{key}: no results for protocol/regressor {combo} (have {sorted(have)})")
        spec.setdefault("method", ours)
        spec["method"] = spec["method"] or ours
        plan[key] = spec
    return plan


def ablation_methods(status: pd.DataFrame, wanted: Sequence[str] | None) -> list[str]:
    """The ablation set that was evaluated: `evaluation.figures.ablations`, or ours and its variants."""
    roles = roles_of(status)
    if wanted:
        return [m for m in wanted if m in roles]
    return [m for m, r in roles.items() if r in ("variant", "ours")]


def spatial_table_name(info: Mapping[str, Any], tables: Mapping[str, Table]) -> str | None:
    """Name of the Table 1 of the first spatial protocol (None when no spatial protocol was run)."""
    for name, spec in (info.get("protocols") or {}).items():
        if spec.get("split") == "spatial":
            for regressor in spec.get("regressors", []):
                if f"table1_{name}_{regressor}" in tables:
                    return f"table1_{name}_{regressor}"
    return None


def sensitivity_figure(table_path: str | Path | None, spec: Mapping[str, Any], out_path: str | Path) -> Path | None:
    """Draw the sensitivity figure from the configured runs table (None when `table_path` is null)."""
    from musecl.config import repo_root
    from musecl.evaluation.figures import save_figure, sensitivity_plot

    if not table_path:
        return None
    path = Path(table_path)
    path = path if path.is_absolute() else repo_root() / path
    if not path.is_file():
        raise FileNotFoundError(f"evaluation.figures.sensitivity_table: {path} not found (build it with "
                                "musecl.evaluation.figures.collect_sensitivity from the runs' results.parquet)")
    table = pd.read_parquet(path)
    if table.empty:  # the city had no encoder to vary (06b says why)
        return None
    methods = list(dict.fromkeys(table["method"]))
    method = spec["method"] if spec["method"] in methods else methods[0]  # ours not run: the first one run
    fig = sensitivity_plot(table, method, spec["protocol"], spec["regressor"])
    return save_figure(fig, out_path)


def comparison_table(comparisons: pd.DataFrame, protocol: str, regressor: str) -> Table:
    """One row per pair: the mean R² difference a − b per indicator with the corrected resampled t-test's p."""
    from musecl.evaluation.tables import PAPER_INDICATORS, Cell, indicator_label

    order = list(PAPER_INDICATORS)
    indicators = sorted(dict.fromkeys(comparisons["indicator"]) if len(comparisons) else [],
                        key=lambda i: (order.index(i) if i in order else len(order), i))
    rows = []
    for (a, b), part in comparisons.groupby(["a", "b"], sort=False):
        part = part.set_index("indicator")
        cells = [Cell(a), Cell(b)]
        for ind in indicators:
            if ind not in part.index:
                cells.append(Cell("-"))
                continue
            r = part.loc[ind]
            p = r["p_corrected_ttest"]
            p_text = "<0.001" if p < 0.001 else f"{p:.3f}"
            cells.append(Cell(f"{r['mean_diff']:+.3f} (p {p_text})", bold=bool(p < 0.05)))
        rows.append(cells)
    caption = (f"Paired comparisons ({protocol} protocol, {regressor}): mean R² difference a − b over the same folds, "
               f"with the corrected resampled t-test's p (bold: p < 0.05). The pairs of "
               f"evaluation.figures.paired_comparisons: trained encoders against their own backbone frozen (ImageNet "
               f"features, no triplet training) and the pixel-statistics floor, the image-text models against the same "
               f"frozen trunk and their ablations.")
    return Table(columns=["a", "b", *[indicator_label(i) for i in indicators]], rows=rows, caption=caption)


def comparison_summary(comparisons: pd.DataFrame, alpha: float = 0.05) -> str:
    """What the paired comparisons show, one sentence per pair, written from the numbers (for the notebook)."""
    from musecl.evaluation.tables import indicator_label

    if comparisons.empty:
        return "No paired comparison was configured or evaluated (`evaluation.figures.paired_comparisons`)."
    lines = []
    for (a, b), part in comparisons.groupby(["a", "b"], sort=False):
        up = part[part["mean_diff"] > 0]
        down = part[part["mean_diff"] < 0]
        sig_up = [indicator_label(i) for i in up.loc[up["p_corrected_ttest"] < alpha, "indicator"]]
        sig_down = [indicator_label(i) for i in down.loc[down["p_corrected_ttest"] < alpha, "indicator"]]
        text = (f"**{a}** vs **{b}**: higher on {len(up)} of {len(part)} indicators, lower on {len(down)} "
                f"(mean difference {part['mean_diff'].min():+.3f} to {part['mean_diff'].max():+.3f}); "
                f"significantly higher (p < {alpha}) on {', '.join(sig_up) or 'none'}, "
                f"significantly lower on {', '.join(sig_down) or 'none'}.")
        lines.append(f"* {text}")
    return "\n".join(lines)


def imagetext_published(results: pd.DataFrame, reference: pd.DataFrame, protocol: str, regressor: str) -> pd.DataFrame:
    """The image-text papers' published R² (reports/reference/imagetext_published.csv) beside ours on the closest
    indicator of this city (`closest_ours`, mean over the folds of `protocol`/`regressor`), where one exists."""
    from musecl.data.schema import PAPER_INDICATORS

    out = reference.copy()
    out["ours_r2"] = float("nan")
    codes = {abbr: name for name, abbr in PAPER_INDICATORS.items()}
    part = results[(results["protocol"] == protocol) & (results["regressor"] == regressor)]
    means = part.groupby(["method", "indicator"])["r2"].mean()
    for i, row in out.iterrows():
        indicator = codes.get(str(row["closest_ours"]))
        if indicator and (row["method"], indicator) in means.index:
            out.at[i, "ours_r2"] = float(means[(row["method"], indicator)])
    return out


def _over(results: pd.DataFrame, protocol: str, regressor: str) -> str:
    """What a table's means run over: "repeats × folds", or "training seeds (n) × repeats × folds" when the trained
    representations were scored with several seeds (untrained ones have one)."""
    if "seed" not in results.columns:
        return "repeats × folds"
    part = results[(results["protocol"] == protocol) & (results["regressor"] == regressor)]
    n = int(part["seed"].nunique())
    return "repeats × folds" if n <= 1 else f"{n} training seeds × repeats × folds (untrained rows: one seed)"

