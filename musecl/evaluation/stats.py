"""Summaries and significance: mean ± std over repeats × folds, paired tests against the best baseline, the paper's
"improvement over the best baseline".

The paper's "Impr." row (Tables 1-2) is the relative gain of MuseCL over the best *baseline* for each column, the best
being chosen per column: for R², (ours - best) / |best| with best = the highest baseline R²; for RMSE,
(best - ours) / best with best = the lowest baseline RMSE (it reproduces every published Impr. value from the published
rows, tests/test_evaluation_stats.py checks a few).

Paired tests compare ours and the best baseline fold by fold on identical folds: the paired t-test and the Wilcoxon
signed-rank test (scipy), and, because the training sets of repeated cross-validation folds overlap (which makes the
plain t-test over-confident), the Nadeau-Bengio corrected resampled t-test, whose variance is inflated by
(1/n + n_test/n_train). With few pairs the Wilcoxon test cannot reach small p-values at all (5 pairs: p >= 0.0625).
When every paired difference is exactly zero the methods are indistinguishable and every p-value is 1.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from musecl.evaluation.metrics import HIGHER_IS_BETTER

GROUP = ["protocol", "regressor", "method", "indicator"]
PAIR_KEYS = ["seed", "repeat", "fold"]


def align_pairs(a: pd.DataFrame, b: pd.DataFrame, where: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The score rows of two methods paired by training seed, repeat and fold (indexed by :data:`PAIR_KEYS`).

    Methods with the same seeds pair seed with seed. A method scored with one seed only (an untrained representation
    such as the POI counts, the frozen backbones or the oracle, which no training seed changes) is paired with each
    seed of the other on the same fold. Raises, naming `where`, when the folds differ.
    """
    a, b = (t if "seed" in t.columns else t.assign(seed=0) for t in (a, b))
    sa, sb = sorted(set(a["seed"])), sorted(set(b["seed"]))
    if sa != sb:
        if len(sb) == 1:
            b = pd.concat([b.assign(seed=s) for s in sa], ignore_index=True)
        elif len(sa) == 1:
            a = pd.concat([a.assign(seed=s) for s in sb], ignore_index=True)
        else:
            raise ValueError(f"{where}: scored with different training seeds ({sa} and {sb}); cannot pair them")
    a, b = a.set_index(PAIR_KEYS), b.set_index(PAIR_KEYS)
    common = a.index.intersection(b.index)
    if len(common) != len(a) or len(common) != len(b):
        raise ValueError(f"{where}: scored on different folds; evaluate them together on one set of folds")
    return a.loc[common], b.loc[common]


def summarise(results: pd.DataFrame, metrics: Sequence[str] = ("r2", "rmse", "mae", "mape")) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1) and count of each metric over training seeds × repeats × folds, per
    protocol, regressor, method and indicator (in the results' order of appearance)."""
    grouped = results.groupby(GROUP, sort=False)[list(metrics)]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=1).add_suffix("_std")
    out = pd.concat([mean, std], axis=1)
    out["n"] = grouped.size()
    ordered = [c for m in metrics for c in (f"{m}_mean", f"{m}_std")] + ["n"]
    return out[ordered].reset_index()


def pivot_metric(summary: pd.DataFrame, protocol: str, regressor: str, metric: str = "r2") -> pd.DataFrame:
    """Methods × indicators table of "mean ± std" strings of one protocol and regressor (for a quick look)."""
    part = summary[(summary["protocol"] == protocol) & (summary["regressor"] == regressor)]
    if part.empty:
        raise ValueError(f"no results for protocol '{protocol}' with regressor '{regressor}'")
    std = part[f"{metric}_std"].map(lambda v: f" ± {v:.3f}" if np.isfinite(v) else "")  # one fold: no std
    text = part[f"{metric}_mean"].map("{:.3f}".format) + std
    table = part.assign(value=text).pivot(index="method", columns="indicator", values="value")
    return table.loc[list(dict.fromkeys(part["method"])), list(dict.fromkeys(part["indicator"]))]


def improvement(ours: float, best: float, metric: str) -> float:
    """The paper's relative gain of `ours` over `best` (positive = ours better): R² (ours-best)/|best|,
    error metrics (best-ours)/best."""
    if HIGHER_IS_BETTER[metric]:
        return (ours - best) / abs(best) if best != 0 else float("nan")
    return (best - ours) / best if best != 0 else float("nan")


def best_baseline(summary: pd.DataFrame, baselines: Sequence[str], metric: str) -> pd.DataFrame:
    """Per protocol, regressor and indicator: the baseline with the best mean `metric` and that mean."""
    part = summary[summary["method"].isin(list(baselines))]
    if part.empty:
        return pd.DataFrame(columns=["protocol", "regressor", "indicator", "best_baseline", "best_mean"])
    col = f"{metric}_mean"
    pick = part.groupby(["protocol", "regressor", "indicator"], sort=False)[col]
    idx = pick.idxmax() if HIGHER_IS_BETTER[metric] else pick.idxmin()
    best = part.loc[idx.to_numpy(), ["protocol", "regressor", "indicator", "method", col]]
    return best.rename(columns={"method": "best_baseline", col: "best_mean"}).reset_index(drop=True)


def paired_tests(a: np.ndarray, b: np.ndarray, test_train_ratio: float | None = None) -> dict[str, float]:
    """Paired t-test, Wilcoxon signed-rank and (if `test_train_ratio` is given) the corrected resampled t-test of
    a - b (two-sided). NaN where a test is undefined (fewer than 2 pairs); 1.0 when all differences are 0. Pairs
    with an undefined score (NaN: too few or identical test values) are left out, and `n_pairs` counts the rest."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired tests need equal-length samples, got {a.shape} and {b.shape}")
    defined = np.isfinite(a) & np.isfinite(b)  # a fold with an undefined score (musecl.evaluation.skipped) drops out
    if not defined.all():
        a, b = a[defined], b[defined]
    d = a - b
    out = {"n_pairs": int(d.size), "mean_diff": float(d.mean()) if d.size else float("nan"),
           "p_ttest": float("nan"), "p_wilcoxon": float("nan"), "p_corrected_ttest": float("nan")}
    if d.size < 2:
        return out
    if np.all(d == 0):
        out.update(p_ttest=1.0, p_wilcoxon=1.0, p_corrected_ttest=1.0)
        return out
    sd = d.std(ddof=1)
    if sd <= 1e-12 * np.abs(d).max():  # a constant non-zero shift (up to rounding): as significant as it gets
        out.update(p_ttest=0.0, p_corrected_ttest=0.0)
    else:
        out["p_ttest"] = float(stats.ttest_rel(a, b).pvalue)
        if test_train_ratio is not None:
            t = d.mean() / np.sqrt((1.0 / d.size + test_train_ratio) * sd**2)
            out["p_corrected_ttest"] = float(2 * stats.t.sf(abs(t), df=d.size - 1))
    out["p_wilcoxon"] = float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    return out


def compare_to_best_baseline(
    results: pd.DataFrame, ours: str, baselines: Sequence[str], metrics: Sequence[str] = ("r2", "rmse")
) -> pd.DataFrame:
    """For every protocol, regressor, indicator and metric: ours vs the best baseline (by mean), the paper's
    improvement and the paired tests over the folds both were scored on.

    Raises if ours and the best baseline were not scored on the same folds (the folds must be shared).
    """
    summary = summarise(results, metrics)
    rows = []
    for metric in metrics:
        best = best_baseline(summary, baselines, metric)
        for rec in best.itertuples(index=False):
            sel = (results["protocol"] == rec.protocol) & (results["regressor"] == rec.regressor) & (
                results["indicator"] == rec.indicator)
            mine = results[sel & (results["method"] == ours)]
            theirs = results[sel & (results["method"] == rec.best_baseline)]
            if mine.empty:
                continue
            mine, theirs = align_pairs(mine, theirs, f"{ours} and {rec.best_baseline} for {rec.protocol}/"
                                                      f"{rec.regressor}/{rec.indicator}")
            ratio = float((mine["n_test"] / mine["n_train"]).mean())
            tests = paired_tests(mine[metric].to_numpy(), theirs[metric].to_numpy(), test_train_ratio=ratio)
            ours_mean = float(mine[metric].mean())
            rows.append({
                "protocol": rec.protocol, "regressor": rec.regressor, "indicator": rec.indicator, "metric": metric,
                "ours": ours, "ours_mean": ours_mean, "best_baseline": rec.best_baseline, "best_mean": float(rec.best_mean),
                "improvement": improvement(ours_mean, float(rec.best_mean), metric), **tests,
            })
    return pd.DataFrame(rows)


def target_scaling_effect(
    results: pd.DataFrame, predictions: pd.DataFrame, protocol: str = "paper",
    regressors: Sequence[str] = ("mlp", "mlp_std"),
) -> pd.DataFrame:
    """How the two MLPs (targets as they are, standardised targets) differ, per method fitted by both on `protocol`.

    One row per method and regressor, each a mean over indicators, repeats and folds of that fold's test regions:
    `r2`; `bias`, the mean test error (prediction − truth); `target_sd`, the test targets' standard deviation;
    `corr`, the correlation of prediction and truth; `spread`, the predictions' standard deviation over the targets';
    then the median `best_epoch` and `epochs` of the fits. Rows fitted by no MLP (the oracle family) are left out.
    """
    fitted = results[(results["protocol"] == protocol) & results["regressor"].isin(list(regressors))
                     & (results["best_epoch"] >= 1)]
    both = fitted.groupby("method", sort=False)["regressor"].nunique() == len(regressors)
    methods = list(both.index[both])
    columns = ["method", "regressor", "r2", "bias", "target_sd", "corr", "spread", "best_epoch", "epochs"]
    if not methods:
        return pd.DataFrame(columns=columns)
    keys = ["method", "regressor", "indicator", "repeat", "fold"]
    part = predictions[(predictions["protocol"] == protocol) & predictions["regressor"].isin(list(regressors))
                       & predictions["method"].isin(methods)]
    p, t = part["y_pred"].to_numpy(np.float64), part["y_true"].to_numpy(np.float64)
    moments = part[keys].assign(p=p, t=t, pp=p * p, tt=t * t, pt=p * t).groupby(keys, sort=False).mean()
    sd_p = np.sqrt(np.maximum(moments["pp"] - moments["p"] ** 2, 0))
    sd_t = np.sqrt(np.maximum(moments["tt"] - moments["t"] ** 2, 0))
    per_fold = pd.DataFrame({
        "bias": moments["p"] - moments["t"], "target_sd": sd_t,
        "corr": (moments["pt"] - moments["p"] * moments["t"]) / (sd_p * sd_t), "spread": sd_p / sd_t,
    })
    out = per_fold.groupby(level=["method", "regressor"], sort=False).mean()
    scores = fitted[fitted["method"].isin(methods)].groupby(["method", "regressor"], sort=False)
    out = out.join(scores["r2"].mean()).join(scores[["best_epoch", "epochs"]].median())
    order = {r: i for i, r in enumerate(regressors)}
    out = out.reset_index()
    out = out.assign(_m=out["method"].map({m: i for i, m in enumerate(methods)}), _r=out["regressor"].map(order))
    return out.sort_values(["_m", "_r"])[columns].reset_index(drop=True)


def paired_comparisons(results: pd.DataFrame, pairs: Sequence[Sequence[str]], protocol: str, regressor: str,
                       metric: str = "r2") -> pd.DataFrame:
    """Per pair (a, b) of representations and indicator: both means, a − b and the paired tests over the folds both
    were scored on (e.g. a trained encoder against its own backbone frozen, or against the pixel-statistics floor).
    Pairs with a representation that has no results are left out."""
    sel = results[(results["protocol"] == protocol) & (results["regressor"] == regressor)]
    rows = []
    for pair in pairs:
        a, b = (str(v) for v in pair)
        for indicator in sorted(sel["indicator"].unique(), key=_paper_order):
            part = sel[sel["indicator"] == indicator]
            mine, theirs = (part[part["method"] == m] for m in (a, b))
            if mine.empty or theirs.empty:
                continue
            mine, theirs = align_pairs(mine, theirs, f"{a} and {b} for {protocol}/{regressor}/{indicator}")
            ratio = float((mine["n_test"] / mine["n_train"]).mean())
            tests = paired_tests(mine[metric].to_numpy(), theirs[metric].to_numpy(), test_train_ratio=ratio)
            rows.append({"a": a, "b": b, "indicator": indicator, "a_mean": float(mine[metric].mean()),
                         "b_mean": float(theirs[metric].mean()), **tests})
    return pd.DataFrame(rows)


def _paper_order(indicator: str) -> tuple[int, str]:
    """Sort key: the paper's indicator order (PD, HD, MC, NP, NC, CR), then any other by name."""
    from musecl.data.schema import PAPER_INDICATORS

    order = list(PAPER_INDICATORS)
    return (order.index(indicator) if indicator in order else len(order), indicator)
