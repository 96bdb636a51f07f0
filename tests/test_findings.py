"""The "What this shows" sentences follow the numbers: small synthetic result frames where the outcome is known."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from musecl.evaluation.findings import (averaged_over, evaluation_findings, p_text, robust_findings,
                                        sensitivity_findings, target_scaling_findings, verdict)

ROLES = {"Ours": "ours", "B1": "baseline", "B2": "baseline", "Oracle": "reference", "Pixels": "reference"}
INDICATORS = ("population_density", "crime")


def scores(levels: dict[str, dict[str, float]], noise: float = 0.01, protocol: str = "kfold", regressor: str = "ridge",
           repeats: int = 3, folds: int = 5, seeds: tuple[int, ...] | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per method, indicator, (seed,) repeat and fold: R² = the method's level + fold noise shared by every
    method (as on shared folds) + a little noise of its own."""
    rng = np.random.default_rng(seed)
    rows = []
    for ind in INDICATORS:
        shared = rng.normal(0, 0.05, size=(repeats, folds))
        for method, by_indicator in levels.items():
            for s in seeds or (None,):
                own = rng.normal(0, noise, size=(repeats, folds))
                for r in range(repeats):
                    for f in range(folds):
                        row = {"method": method, "indicator": ind, "regressor": regressor, "protocol": protocol,
                               "repeat": r, "fold": f, "r2": by_indicator[ind] + shared[r, f] + own[r, f],
                               "rmse": 1.0, "n_train": 80, "n_test": 20, "best_epoch": 5, "epochs": 10}
                        if seeds is not None:
                            row["seed"] = s
                        rows.append(row)
    return pd.DataFrame(rows)


def levels(ours_pd: float, ours_cr: float) -> dict[str, dict[str, float]]:
    return {
        "Ours": {"population_density": ours_pd, "crime": ours_cr},
        "B1": {"population_density": 0.50, "crime": 0.30},
        "B2": {"population_density": 0.40, "crime": 0.35},
        "Oracle": {"population_density": 0.90, "crime": 0.80},
        "Pixels": {"population_density": 0.20, "crime": 0.32},
    }


def test_verdict_and_p_text_follow_the_numbers():
    assert verdict(0.021, 0.03, "X") == "beats X by 0.021 (p = 0.030, significant)"
    assert verdict(-0.08, 0.09, "X") == "loses to X by 0.080 (p = 0.090, not significant)"
    assert verdict(0.0, 1.0, "X") == "ties with X"
    assert p_text(1e-5) == "p < 0.001" and "no test" in p_text(float("nan"))


def test_a_clear_win_and_a_noisy_loss():
    # ours far above B1 on PD (significant); a hair below B2 on CR, within its own noise (not significant)
    res = scores(levels(0.70, 0.345), noise=0.05)
    lines = robust_findings(res, ROLES, "kfold", "ridge", ceiling="Oracle")
    text = "\n".join(lines)
    pd_line = next(line for line in lines if line.startswith("PD:"))
    cr_line = next(line for line in lines if line.startswith("CR:"))
    assert "beats B1 by" in pd_line and ", significant)" in pd_line
    assert "loses to B2 by" in cr_line and "not significant" in cr_line
    assert "ahead on 1 of 2 (PD*" in text and "behind on 1 (CR; none significant)" in text
    assert "rank 1 of 3" in lines[0] and "3 repeats × 5 folds" in lines[0]
    assert "below the ceiling (Oracle) on 2 of 2" in text
    assert "ceiling Oracle 0.9" in pd_line and "best floor Pixels" in pd_line


def test_a_loss_everywhere_is_said_and_named():
    res = scores(levels(0.10, 0.05), noise=0.01)
    text = "\n".join(robust_findings(res, ROLES, "kfold", "ridge", ceiling="Oracle"))
    assert "ahead on 0 of 2 (none)" in text and "behind on 2 (" in text
    assert "beats" not in text
    assert "rank 3 of 3" in text and "the best baseline on that average: B1" in text
    assert "above the best floor (Pixels) on 0 of 2, below it on PD, CR" in text


def test_training_seeds_are_named_when_there_are_several():
    many = scores(levels(0.7, 0.4), seeds=(0, 1, 2))
    assert averaged_over(many).startswith("3 training seeds × 3 repeats × 5 folds")
    one = scores(levels(0.7, 0.4), seeds=(0,))
    assert averaged_over(one) == "3 repeats × 5 folds"
    # trained rows with three seeds, untrained ones with one: still paired and summarised
    mixed = pd.concat([many[many["method"].isin(["Ours", "B1"])],
                       one[~one["method"].isin(["Ours", "B1"])]], ignore_index=True)
    assert "3 training seeds" in robust_findings(mixed, ROLES, "kfold", "ridge")[0]


def test_target_scaling_counts_negative_r2():
    raw = scores({"Ours": {i: -2.0 for i in INDICATORS}, "B1": {i: 0.3 for i in INDICATORS},
                  "B2": {i: -0.5 for i in INDICATORS}}, protocol="paper", regressor="mlp")
    std = scores({"Ours": {i: 0.4 for i in INDICATORS}, "B1": {i: 0.35 for i in INDICATORS},
                  "B2": {i: -0.1 for i in INDICATORS}}, protocol="paper", regressor="mlp_std")
    oracle = scores({"Oracle": {i: 0.9 for i in INDICATORS}}, protocol="paper", regressor="mlp").assign(best_epoch=-1)
    (line,) = target_scaling_findings(pd.concat([raw, std, oracle]), ROLES, "paper")
    assert "below 0 (worse than predicting the test mean) for 2 of 3 representations" in line
    assert "(`mlp_std`) for 1 of 3" in line and "raises it for 3 of 3" in line
    assert "Ours: -1.99" in line or "Ours: -2.00" in line
    assert target_scaling_findings(raw.assign(protocol="other"), ROLES, "paper") == []


def test_evaluation_findings_is_a_markdown_list_and_refuses_a_missing_protocol():
    res = pd.concat([scores(levels(0.6, 0.3)), scores(levels(0.6, 0.3), protocol="paper", regressor="mlp")])
    text = evaluation_findings(res, ROLES, {"protocol": "kfold", "regressor": "ridge"},
                               {"protocol": "paper", "regressor": "mlp"})
    assert all(line.startswith("- ") for line in text.splitlines())
    assert "paper protocol, the paper's MLP" in text
    with pytest.raises(ValueError, match="spatial"):
        evaluation_findings(res, ROLES, {"protocol": "spatial", "regressor": "ridge"})


def test_sensitivity_names_the_best_setting_and_the_spread():
    rows = []
    for parameter, values in (("embedding_dim", (32.0, 128.0)), ("margin", (1.0, 5.0))):
        for value in values:
            for ind in INDICATORS:
                best_here = (value == 128.0) if parameter == "embedding_dim" else (ind == "crime") == (value == 1.0)
                for fold in range(4):
                    rows.append({"parameter": parameter, "value": value, "method": "MuseCL", "indicator": ind,
                                 "repeat": 0, "fold": fold, "r2": (0.5 if best_here else 0.4) + 0.01 * fold})
    table = pd.DataFrame(rows)
    text = sensitivity_findings(table, "MuseCL", {"embedding_dim": 128, "margin": 5.0})
    dim, margin = text.splitlines()
    assert "best per indicator PD 128 (0.515), CR 128 (0.515)" in dim and "The configured 128 is best on 2 of 2" in dim
    assert "PD 5 (0.515), CR 1 (0.515)" in margin and "The configured 5 is best on 1 of 2" in margin
    assert "(best − worst) 0.100 to 0.100" in dim and "smaller than that on 0 of 2" in dim
    with pytest.raises(ValueError, match="RS"):
        sensitivity_findings(table, "RS")
