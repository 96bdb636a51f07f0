"""Metric functions against hand-computed values, including the authors' MAPE broadcasting bug."""
from __future__ import annotations

import math

import numpy as np
import pytest

from musecl.evaluation.metrics import mae, mape, r2_score, regression_metrics, rmse

Y = np.array([1.0, 2.0, 3.0, 4.0])
P = np.array([1.5, 2.0, 2.5, 4.0])


def test_hand_computed_values():
    # residuals 0.5, 0, -0.5, 0: SS_res = 0.5; mean 2.5, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert r2_score(Y, P) == pytest.approx(1 - 0.5 / 5)
    assert rmse(Y, P) == pytest.approx(math.sqrt(0.5 / 4))
    assert mae(Y, P) == pytest.approx(1.0 / 4)
    assert mape(Y, P) == pytest.approx((0.5 / 1 + 0.5 / 3) / 4)


def test_column_predictions_do_not_broadcast():
    """mlp_pytorch.py: y_test (N,) against test_pred (N, 1) broadcasts to N x N. Ours flattens first."""
    column = P.reshape(-1, 1)
    buggy = float(np.mean(np.abs((Y - column) / Y)))  # the authors' expression
    correct = (0.5 / 1 + 0.5 / 3) / 4
    assert buggy != pytest.approx(correct)
    assert mape(Y, column) == pytest.approx(correct)
    assert mape(Y.reshape(-1, 1), P) == pytest.approx(correct)
    assert rmse(Y, column) == pytest.approx(rmse(Y, P))
    assert r2_score(Y, column) == pytest.approx(r2_score(Y, P))


def test_zero_targets_are_skipped_or_rejected():
    y = np.array([0.0, 2.0, 4.0])
    p = np.array([1.0, 1.0, 5.0])
    assert mape(y, p) == pytest.approx((1 / 2 + 1 / 4) / 2)
    with pytest.raises(ValueError, match="1 targets are 0"):
        mape(y, p, zero_targets="error")
    assert math.isnan(mape(np.zeros(3), p))
    out = regression_metrics(y, p)
    assert out["mape_zero_targets"] == 1
    assert out["mape"] == pytest.approx(0.375)


def test_bad_shapes_and_values_are_rejected():
    with pytest.raises(ValueError, match="3 values but y_pred has 4"):
        rmse(Y[:3], P)
    with pytest.raises(ValueError, match="vector or an"):
        rmse(np.ones((4, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="finite"):
        mae(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    assert math.isnan(r2_score(np.ones(4), P))  # constant targets: R² undefined


def test_agrees_with_scikit_learn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    y = rng.uniform(0.5, 5, 200)
    p = y + rng.normal(0, 0.4, 200)
    assert r2_score(y, p) == pytest.approx(skm.r2_score(y, p))
    assert rmse(y, p) == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)))
    assert mae(y, p) == pytest.approx(skm.mean_absolute_error(y, p))
    assert mape(y, p) == pytest.approx(skm.mean_absolute_percentage_error(y, p))
