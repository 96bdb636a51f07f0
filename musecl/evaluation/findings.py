"""What the results show, as Markdown sentences written from the numbers (the "What this shows" sections of
notebooks 06, 06b and 07): every number, every "beats" or "loses to" and every "significant" is computed here from
the result tables, never written by hand, so the prose cannot contradict the tables above it.

* :func:`evaluation_findings`: ours against the best baseline of each indicator on the robust protocol (gap and the
  corrected resampled t-test of :func:`musecl.evaluation.stats.compare_to_best_baseline`), against the ceiling and
  the floors, its rank, and how many representations the paper protocol's MLP gives a negative R² with the targets
  as they are and with standardised targets.
* :func:`sensitivity_findings`: which setting of each sensitivity parameter is best per indicator, and the spread.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from musecl.data.schema import PAPER_INDICATORS
from musecl.evaluation.figures import bounds_of
from musecl.evaluation.headline import mean_r2_table
from musecl.evaluation.stats import compare_to_best_baseline

RAW_MLP, STD_MLP = "mlp", "mlp_std"  # the paper's MLP on the targets as they are, and on standardised targets


def label(indicator: str) -> str:
    """The paper's abbreviation of an indicator (PD, HD, MC, NP, NC, CR), or its name."""
    return PAPER_INDICATORS.get(indicator, indicator)


def indicator_order(indicators: Sequence[str]) -> list[str]:
    """The indicators in the paper's order (PD, HD, MC, NP, NC, CR), then any other by name."""
    order = list(PAPER_INDICATORS)
    return sorted(dict.fromkeys(indicators), key=lambda i: (order.index(i) if i in order else len(order), i))


def p_text(p: float) -> str:
    """A p-value as text: "p < 0.001", "p = 0.089", or "no test" when it is undefined."""
    if not np.isfinite(p):
        return "no test: fewer than 2 paired folds"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def verdict(diff: float, p: float, other: str, alpha: float = 0.05) -> str:
    """ "beats X by 0.021 (p = 0.030, significant)", "loses to X by 0.080 (p = 0.090, not significant)" or "ties
    with X", from the mean difference ours − other and the p-value of its paired test."""
    if not np.isfinite(diff) or diff == 0:
        return f"ties with {other}"
    word = f"beats {other}" if diff > 0 else f"loses to {other}"
    significant = "" if not np.isfinite(p) else (", significant" if p < alpha else ", not significant")
    return f"{word} by {abs(diff):.3f} ({p_text(p)}{significant})"


def averaged_over(part: pd.DataFrame) -> str:
    """What a mean of `part` (score rows of one protocol and regressor) runs over: "5 repeats × 5 folds", or
    "3 training seeds × 5 repeats × 5 folds, ..." when the results carry a `seed` column with several values."""
    repeats, folds = int(part["repeat"].nunique()), int(part["fold"].nunique())
    over = f"{repeats} repeat{'s' * (repeats != 1)} × {folds} fold{'s' * (folds != 1)}"
    seeds = int(part["seed"].nunique()) if "seed" in part.columns else 1
    if seeds > 1:
        over = f"{seeds} training seeds × {over}, one seed for representations without training"
    return over


def combination_rows(results: pd.DataFrame, protocol: str, regressor: str) -> pd.DataFrame:
    """The score rows of one protocol and regressor; a clear error naming the combinations there are when none."""
    part = results[(results["protocol"] == protocol) & (results["regressor"] == regressor)]
    if part.empty:
        have = sorted(map(tuple, results[["protocol", "regressor"]].drop_duplicates().to_numpy()))
        raise ValueError(f"no results for protocol '{protocol}' with regressor '{regressor}' (have {have})")
    return part


def robust_findings(
    results: pd.DataFrame,
    roles: Mapping[str, str],
    protocol: str,
    regressor: str,
    ceiling: str | None = None,
    floors: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> list[str]:
    """Markdown bullets for one protocol and regressor: ours' mean R² and rank, then per indicator ours against the
    best baseline (gap and corrected resampled t-test), the ceiling and the best floor."""
    part = combination_rows(results, protocol, regressor)
    ours = [m for m, r in roles.items() if r == "ours" and m in set(part["method"])]
    if not ours:
        raise ValueError(f"findings: no representation with role 'ours' has results for {protocol}/{regressor}")
    ours = ours[0]
    baselines = [m for m, r in roles.items() if r == "baseline" and m in set(part["method"])]
    means = part.groupby(["method", "indicator"], sort=False)["r2"].mean().unstack("indicator")
    indicators = indicator_order(means.columns)
    ceiling, floors = bounds_of(means, roles, ceiling, floors)
    summary = means.stack().rename("r2_mean").reset_index().assign(protocol=protocol, regressor=regressor)
    table = mean_r2_table(summary, roles, protocol, regressor)
    compared = table[table["role"].isin(["ours", "baseline"])].sort_values("mean_r2", ascending=False, kind="stable")
    rank = list(compared["method"]).index(ours) + 1
    overall = table.set_index("method")["mean_r2"]
    lines = [f"**{protocol} protocol, {regressor}** (means over {averaged_over(part)}): {ours}'s R² averaged over the "
             f"{len(indicators)} indicators is {overall[ours]:.3f}, rank {rank} of {len(compared)} among {ours} and "
             f"the baselines" + (f" (the best baseline on that average: {compared.iloc[0]['method']}, "
                                 f"{compared.iloc[0]['mean_r2']:.3f})." if rank > 1 else ".")]
    if baselines:
        cmp = compare_to_best_baseline(part, ours, baselines, metrics=("r2",)).set_index("indicator")
        diff, p = cmp["mean_diff"], cmp["p_corrected_ttest"]
        wins, losses = [i for i in indicators if diff.get(i, 0) > 0], [i for i in indicators if diff.get(i, 0) < 0]
        sig = {i for i in indicators if i in p.index and np.isfinite(p[i]) and p[i] < alpha}
        lines.append(
            f"Against the best baseline of each indicator, {ours} is ahead on {len(wins)} of {len(indicators)} "
            f"({_names(wins, sig, alpha)}) and behind on {len(losses)} ({_names(losses, sig, alpha)}); p-values are "
            f"the corrected resampled t-test over the paired folds.")
    for ind in indicators:
        text = f"{label(ind)}: {ours} {means.loc[ours, ind]:.3f}"
        if baselines and ind in cmp.index:
            row = cmp.loc[ind]
            text += f", {verdict(float(row['mean_diff']), float(row['p_corrected_ttest']), row['best_baseline'], alpha)}"
        if ceiling is not None:
            text += f"; ceiling {ceiling} {means.loc[ceiling, ind]:.3f}"
        if floors:
            best_floor = means.loc[floors, ind].idxmax()
            text += f"; best floor {best_floor} {means.loc[best_floor, ind]:.3f}"
        lines.append(text + ".")
    bounds = []
    if ceiling is not None:
        gap = means.loc[ours, indicators] - means.loc[ceiling, indicators]
        bounds.append(f"below the ceiling ({ceiling}) on {int((gap < 0).sum())} of {len(indicators)} indicators "
                      f"(mean gap {gap.mean():+.3f})")
    if floors:
        floor = means.loc[floors, indicators].max(axis=0)
        below = [label(i) for i in indicators if means.loc[ours, i] < floor[i]]
        bounds.append(f"above the best floor ({', '.join(floors)}) on {len(indicators) - len(below)} of "
                      f"{len(indicators)}" + (f", below it on {', '.join(below)}" if below else ""))
    if bounds:
        lines.append(f"{ours} is " + "; ".join(bounds) + ".")
    return lines


def _names(indicators: Sequence[str], significant: set[str], alpha: float) -> str:
    if not indicators:
        return "none"
    n_sig = sum(i in significant for i in indicators)
    names = ", ".join(f"{label(i)}{'*' if i in significant else ''}" for i in indicators)
    return f"{names}; {n_sig} significant at p < {alpha}, marked *" if n_sig else f"{names}; none significant"


def target_scaling_findings(results: pd.DataFrame, roles: Mapping[str, str], protocol: str = "paper") -> list[str]:
    """Markdown bullets: how many representations the paper protocol's MLP gives a negative mean R² (over indicators,
    repeats and folds) with the targets as they are (`mlp`, the paper's Tables 1-2) and with standardised targets
    (`mlp_std`), over the representations an MLP fitted with both (rows of the oracle family, not fitted by an MLP,
    are left out). Empty when the protocol lacks either."""
    part = results[(results["protocol"] == protocol) & results["regressor"].isin([RAW_MLP, STD_MLP])]
    if "best_epoch" in part.columns:
        part = part[part["best_epoch"] >= 1]
    means = part.groupby(["method", "regressor"], sort=False)["r2"].mean().unstack("regressor")
    if RAW_MLP not in means.columns:
        return []
    if STD_MLP not in means.columns:
        neg = int((means[RAW_MLP] < 0).sum())
        return [f"**{protocol} protocol, the paper's MLP** (`{RAW_MLP}`): mean R² below 0 (worse than predicting the "
                f"test mean) for {neg} of {len(means)} representations."]
    means = means.dropna(subset=[RAW_MLP, STD_MLP])
    n = len(means)
    raw_neg, std_neg = int((means[RAW_MLP] < 0).sum()), int((means[STD_MLP] < 0).sum())
    ours = [m for m, r in roles.items() if r == "ours" and m in means.index]
    mine = (f" {ours[0]}: {means.loc[ours[0], RAW_MLP]:.3f} with raw targets, {means.loc[ours[0], STD_MLP]:.3f} "
            "standardised." if ours else "")
    return [f"**{protocol} protocol, the paper's MLP**: with the log targets as they are (`{RAW_MLP}`, what the "
            f"paper's Tables 1-2 report) the mean R² over the indicators is below 0 (worse than predicting the test "
            f"mean) for {raw_neg} of {n} representations; with standardised targets (`{STD_MLP}`) for {std_neg} of "
            f"{n}, and standardising raises it for {int((means[STD_MLP] > means[RAW_MLP]).sum())} of {n}.{mine}"]


def evaluation_findings(
    results: pd.DataFrame,
    roles: Mapping[str, str],
    robust: Mapping[str, str],
    paper: Mapping[str, str] | None = None,
    ceiling: str | None = None,
    floors: Sequence[str] | None = None,
    alpha: float = 0.05,
    not_run: Mapping[str, str] | None = None,
) -> str:
    """The "What this shows" of the evaluation, as a Markdown list: :func:`robust_findings` for `robust`
    (`evaluation.figures.robust`: protocol and regressor) and :func:`target_scaling_findings` for the protocol of
    `paper` (`evaluation.figures.headline`), when given; then what was not run (`not_run`: {method: reason},
    :func:`musecl.evaluation.skipped.not_run_of`). When ours was not run, the robust part ranks what was."""
    not_run = dict(not_run or {})
    ours = [m for m, r in roles.items() if r == "ours"]
    if ours and ours[0] in not_run:
        lines = [_without_ours(results, roles, robust["protocol"], robust["regressor"], ours[0], not_run[ours[0]])]
    else:
        lines = robust_findings(results, roles, robust["protocol"], robust["regressor"], ceiling, floors, alpha)
    if paper is not None:
        lines += target_scaling_findings(results, roles, paper["protocol"])
    if not_run:
        lines.append(f"Not run in this city ({len(not_run)} representation{'s' * (len(not_run) != 1)}, left out of "
                     "every table's numbers): " + "; ".join(f"{m} ({why})" for m, why in not_run.items()) + ".")
    return "\n".join(f"- {line}" for line in lines)


def _without_ours(results: pd.DataFrame, roles: Mapping[str, str], protocol: str, regressor: str, ours: str,
                  reason: str) -> str:
    """The robust finding when ours was not run: which evaluated representation leads on the mean R²."""
    part = combination_rows(results, protocol, regressor)
    summary = part.groupby(["method", "indicator"], sort=False)["r2"].mean().rename("r2_mean").reset_index()
    table = mean_r2_table(summary.assign(protocol=protocol, regressor=regressor), roles, protocol, regressor)
    compared = table[table["role"] != "reference"].sort_values("mean_r2", ascending=False, kind="stable")
    lead = (f"; the best of the {len(compared)} evaluated non-reference representations on the mean R² over the "
            f"indicators is {compared.iloc[0]['method']} ({compared.iloc[0]['mean_r2']:.3f})" if len(compared) else "")
    return (f"**{protocol} protocol, {regressor}** (means over {averaged_over(part)}): {ours} (ours) was not run "
            f"({reason}), so nothing is compared against it{lead}.")


def sensitivity_findings(
    table: pd.DataFrame, method: str = "MuseCL", configured: Mapping[str, float] | None = None
) -> str:
    """The "What this shows" of the sensitivity grid (a table with `parameter`, `value`, `method`, `indicator`,
    `repeat`, `fold`, `r2`): per parameter, the best value for each indicator with its mean R², the best value on the
    mean over the indicators, how often the `configured` value is best, and the spread (best − worst mean R² over the
    values) beside the standard deviation over folds."""
    part = table[table["method"] == method]
    if part.empty:
        raise ValueError(f"sensitivity_findings: no rows for method '{method}' (have {sorted(set(table['method']))})")
    lines = []
    for parameter, rows in part.groupby("parameter", sort=False):
        means = rows.groupby(["value", "indicator"])["r2"].mean().unstack("indicator")
        indicators = indicator_order(means.columns)
        means = means[indicators]
        values = ", ".join(f"{v:g}" for v in means.index)
        best = means.idxmax(axis=0)
        per_indicator = ", ".join(f"{label(i)} {best[i]:g} ({means.loc[best[i], i]:.3f})" for i in indicators)
        overall = means.mean(axis=1)
        spread = means.max(axis=0) - means.min(axis=0)
        fold_sd = float(rows.groupby(["value", "indicator"])["r2"].std(ddof=1).median())
        text = (f"**{parameter}** ({values}; {method}, ridge R² over {averaged_over(rows)}): best per indicator "
                f"{per_indicator}; best on the mean over the indicators {overall.idxmax():g} "
                f"({overall.max():.3f}, worst {overall.idxmin():g} at {overall.min():.3f}).")
        if configured is not None and parameter in configured:
            value = float(configured[parameter])
            text += f" The configured {value:g} is best on {int((best == value).sum())} of {len(indicators)}."
        text += (f" Spread between the settings (best − worst) {spread.min():.3f} to {spread.max():.3f} per "
                 f"indicator (largest on {label(spread.idxmax())}), against a median standard deviation over folds "
                 f"of {fold_sd:.3f}; the spread is smaller than that on {int((spread < fold_sd).sum())} of "
                 f"{len(indicators)} indicators.")
        lines.append(text)
    return "\n".join(f"- {line}" for line in lines)
