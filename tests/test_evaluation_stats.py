"""Statistics: summaries, paired tests on constructed cases, and the paper's improvement formula on its own numbers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musecl.evaluation.stats import best_baseline, compare_to_best_baseline, improvement, paired_tests, summarise

REFERENCE = Path(__file__).resolve().parents[1] / "reports" / "reference" / "musecl_paper_results.csv"


def _results(values: dict[str, np.ndarray], indicator: str = "pd") -> pd.DataFrame:
    rows = []
    for method, r2 in values.items():
        for i, v in enumerate(r2):
            rows.append({"method": method, "indicator": indicator, "regressor": "ridge", "protocol": "kfold",
                         "repeat": i // 5, "fold": i % 5, "r2": v, "rmse": 1 - v, "n_train": 240, "n_test": 60})
    return pd.DataFrame(rows)


def test_clearly_better_method_is_significant():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.5, 25)
    ours = base + 0.08 + rng.normal(0, 0.01, 25)
    out = paired_tests(ours, base, test_train_ratio=60 / 240)
    assert out["n_pairs"] == 25 and out["mean_diff"] == pytest.approx(np.mean(ours - base))
    assert out["p_ttest"] < 1e-10
    assert out["p_wilcoxon"] < 1e-5  # every difference positive: exact two-sided p = 2 / 2**25
    assert out["p_corrected_ttest"] < 1e-5
    assert out["p_corrected_ttest"] > out["p_ttest"]  # the correction is conservative


def test_identical_methods_are_not_significant():
    base = np.linspace(0.2, 0.6, 25)
    out = paired_tests(base, base.copy(), test_train_ratio=0.25)
    assert out["p_ttest"] == out["p_wilcoxon"] == out["p_corrected_ttest"] == 1.0
    noisy = paired_tests(base + np.tile([0.01, -0.01], 13)[:25], base)
    assert noisy["p_ttest"] > 0.5


def test_corrected_t_matches_nadeau_bengio_formula():
    from scipy import stats

    rng = np.random.default_rng(1)
    d = rng.normal(0.02, 0.05, 25)
    out = paired_tests(d, np.zeros(25), test_train_ratio=0.25)
    t = d.mean() / np.sqrt((1 / 25 + 0.25) * d.var(ddof=1))
    assert out["p_corrected_ttest"] == pytest.approx(2 * stats.t.sf(abs(t), 24))
    assert out["p_ttest"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)


def test_too_few_pairs_give_nan():
    out = paired_tests(np.array([0.5]), np.array([0.4]))
    assert np.isnan(out["p_ttest"]) and np.isnan(out["p_wilcoxon"])


def test_improvement_reproduces_the_papers_impr_rows():
    """The published Impr. values follow from the published rows: best baseline per column, relative gain."""
    ref = pd.read_csv(REFERENCE)
    expected = {  # (city, indicator): (R² Impr., RMSE Impr.) as printed in Tables 1-2
        ("Beijing", "PD"): (0.0654, 0.0330),
        ("Beijing", "NP"): (0.1906, 0.4913),
        ("Beijing", "NC"): (0.2070, 0.3315),
        ("Shanghai", "PD"): (0.1961, 0.0567),
        ("Shanghai", "NP"): (0.0638, 0.2497),
        ("New York", "CR"): (0.0377, 0.0089),
    }
    for (city, ind), (r2_impr, rmse_impr) in expected.items():
        part = ref[(ref["city"] == city) & (ref["indicator"] == ind)]
        ours = part[part["method"] == "MuseCL"].iloc[0]
        base = part[part["method"] != "MuseCL"]
        assert improvement(ours["r2"], base["r2"].max(), "r2") == pytest.approx(r2_impr, abs=6e-5)
        assert improvement(ours["rmse"], base["rmse"].min(), "rmse") == pytest.approx(rmse_impr, abs=6e-5)
    assert improvement(0.1, -0.2, "r2") == pytest.approx(1.5)  # |best| in the denominator


def test_summary_and_best_baseline():
    res = _results({"a": np.full(10, 0.3) + np.arange(10) * 0.01, "b": np.full(10, 0.5), "ours": np.full(10, 0.6)})
    s = summarise(res, ("r2", "rmse"))
    row = s[s["method"] == "a"].iloc[0]
    assert row["r2_mean"] == pytest.approx(0.345) and row["r2_std"] == pytest.approx(np.std(np.arange(10) * 0.01, ddof=1))
    assert row["n"] == 10
    best = best_baseline(s, ["a", "b"], "r2")
    assert best["best_baseline"].tolist() == ["b"]
    best_rmse = best_baseline(s, ["a", "b"], "rmse")
    assert best_rmse["best_baseline"].tolist() == ["b"]


def test_compare_to_best_baseline_pairs_over_the_same_folds():
    rng = np.random.default_rng(4)
    b = rng.uniform(0.3, 0.4, 10)
    res = _results({"weak": b - 0.2, "strong": b, "ours": b + 0.05})
    comp = compare_to_best_baseline(res, "ours", ["weak", "strong"])
    r2 = comp[comp["metric"] == "r2"].iloc[0]
    assert r2["best_baseline"] == "strong"
    assert r2["improvement"] == pytest.approx(0.05 * 10 / b.sum(), rel=1e-9)
    assert r2["p_ttest"] == 0.0  # a constant shift (up to rounding) is treated as exact
    rmse = comp[comp["metric"] == "rmse"].iloc[0]
    assert rmse["best_baseline"] == "strong" and rmse["improvement"] > 0
    broken = res[~((res["method"] == "strong") & (res["fold"] == 0))]
    with pytest.raises(ValueError, match="different folds"):
        compare_to_best_baseline(broken, "ours", ["weak", "strong"])


def test_paired_comparisons_table_and_summary():
    from musecl.evaluation.paper import comparison_summary, comparison_table
    from musecl.evaluation.stats import paired_comparisons

    rng = np.random.default_rng(0)
    rows = []
    for method, shift in (("trained", 0.1), ("frozen", 0.0), ("floor", -0.3)):
        for indicator in ("crime", "population_density"):
            for fold in range(10):
                rows.append({"protocol": "kfold", "regressor": "ridge", "method": method, "indicator": indicator,
                             "repeat": 0, "fold": fold, "r2": 0.4 + shift + rng.normal(0, 0.01) + 0.02 * fold,
                             "n_test": 20, "n_train": 80})
    results = pd.DataFrame(rows)
    c = paired_comparisons(results, [["trained", "frozen"], ["trained", "floor"], ["trained", "absent"]], "kfold", "ridge")
    assert set(map(tuple, c[["a", "b"]].drop_duplicates().to_numpy())) == {("trained", "frozen"), ("trained", "floor")}
    assert np.allclose(c.loc[c["b"] == "frozen", "mean_diff"], 0.1, atol=0.01)
    assert (c["p_corrected_ttest"] < 0.05).all()
    table = comparison_table(c, "kfold", "ridge").to_markdown()
    assert "| a | b | PD | CR |" in table and "**+0.1" in table
    summary = comparison_summary(c)
    assert "significantly higher (p < 0.05) on PD, CR" in summary
    broken = results[~((results["method"] == "frozen") & (results["fold"] == 3))]
    with pytest.raises(ValueError, match="different folds"):
        paired_comparisons(broken, [["trained", "frozen"]], "kfold", "ridge")


def test_pairs_over_seeds_and_folds_with_one_seed_repeated():
    """A trained method with 3 seeds pairs seed by seed with another 3-seed method, and each of its seeds with the
    single score of an untrained one on the same fold."""
    from musecl.evaluation.stats import align_pairs, paired_comparisons

    rng = np.random.default_rng(0)
    folds = [{"repeat": 0, "fold": f} for f in range(5)]
    rows = []
    for seed in range(3):
        for f in folds:
            rows.append({"method": "trained", "seed": seed, **f, "r2": 0.5 + 0.01 * seed + rng.normal(0, 0.01)})
            rows.append({"method": "trained2", "seed": seed, **f, "r2": 0.4 + rng.normal(0, 0.01)})
    for f in folds:
        rows.append({"method": "frozen", "seed": 0, **f, "r2": 0.3 + 0.01 * f["fold"]})
    res = pd.DataFrame(rows).assign(indicator="pd", protocol="kfold", regressor="ridge", n_train=80, n_test=20)
    a, b = align_pairs(res[res["method"] == "trained"], res[res["method"] == "frozen"], "test")
    assert len(a) == len(b) == 15
    assert (b.xs(2, level="seed")["r2"].to_numpy() == b.xs(0, level="seed")["r2"].to_numpy()).all()
    a, b = align_pairs(res[res["method"] == "trained"], res[res["method"] == "trained2"], "test")
    assert len(a) == 15 and (a.index == b.index).all()
    table = paired_comparisons(res, [("trained", "frozen"), ("trained", "trained2")], "kfold", "ridge")
    assert list(table["n_pairs"]) == [15, 15]
    assert table["mean_diff"].iloc[0] == pytest.approx(a["r2"].mean() - res[res["method"] == "frozen"]["r2"].mean())
    two = res[(res["method"] == "trained2") & (res["seed"] < 2)]
    with pytest.raises(ValueError, match="different training seeds"):
        align_pairs(res[res["method"] == "trained"], two, "test")
    with pytest.raises(ValueError, match="different folds"):
        align_pairs(res[res["method"] == "trained"], res[(res["method"] == "trained2") & (res["fold"] < 4)], "test")


def test_summaries_run_over_seeds_and_folds():
    res = pd.DataFrame({"method": "m", "indicator": "pd", "protocol": "kfold", "regressor": "ridge",
                        "seed": np.repeat([0, 1, 2], 4), "repeat": 0, "fold": np.tile(range(4), 3),
                        "r2": np.arange(12, dtype=float), "rmse": 1.0, "mae": 1.0, "mape": 1.0})
    s = summarise(res)
    assert int(s["n"].iloc[0]) == 12 and s["r2_mean"].iloc[0] == pytest.approx(5.5)
