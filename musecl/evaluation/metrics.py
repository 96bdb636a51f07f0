"""Regression metrics: R², RMSE, MAE and MAPE, computed on flat vectors.

The authors' `mlp_pytorch.py` computes MAPE as `mean(abs((y_test - test_pred) / y_test))` with `test_pred` of shape
(N, 1) and `y_test` of shape (N,): numpy broadcasts that to an N×N matrix and averages the wrong thing. Every function
here first flattens both arguments and refuses arrays whose sizes differ, so that cannot happen.

MAPE divides by the target, and log-transformed count indicators are exactly 0 in regions with no events. Such targets
are skipped (the count of skipped targets is reported by :func:`regression_metrics`), or rejected with
`zero_targets="error"`.
"""
from __future__ import annotations

from typing import Literal

import numpy as np

METRICS = ("r2", "rmse", "mae", "mape")
# Larger is better for R², smaller for the error metrics; tables and "improvement" rows use this.
HIGHER_IS_BETTER = {"r2": True, "rmse": False, "mae": False, "mape": False}


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arguments as float64 vectors of equal length; (N, 1) columns are accepted and flattened."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if arr.ndim > 2 or (arr.ndim == 2 and arr.shape[1] != 1):
            raise ValueError(f"{name} must be a vector or an (N, 1) column, got shape {arr.shape}")
    y_true, y_pred = y_true.reshape(-1), y_pred.reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values but y_pred has {y_pred.size}")
    if y_true.size == 0:
        raise ValueError("metrics need at least one value")
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError("y_true and y_pred must be finite (found NaN or inf)")
    return y_true, y_pred


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (sklearn's definition; NaN when the targets are constant)."""
    y_true, y_pred = _pair(y_true, y_pred)
    ss_res = float(np.sum((y_true - y_pred) ** 2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - ss_res / ss_tot


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def mape(
    y_true: np.ndarray, y_pred: np.ndarray, zero_targets: Literal["skip", "error"] = "skip"
) -> float:
    """Mean absolute percentage error as a fraction: mean(|y - ŷ| / |y|) over the targets that are not zero.

    `zero_targets="skip"` leaves out targets equal to 0 (NaN if every target is 0); `"error"` raises instead.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    nonzero = y_true != 0
    if not nonzero.all():
        if zero_targets == "error":
            first = int(np.flatnonzero(~nonzero)[0])
            raise ValueError(f"MAPE undefined: {int((~nonzero).sum())} targets are 0 (first at position {first})")
        if zero_targets != "skip":
            raise ValueError(f"zero_targets must be 'skip' or 'error', got {zero_targets!r}")
    if not nonzero.any():
        return float("nan")
    return float(np.mean(np.abs(y_true[nonzero] - y_pred[nonzero]) / np.abs(y_true[nonzero])))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """All four metrics plus `mape_zero_targets`, the number of zero targets MAPE left out."""
    y_true, y_pred = _pair(y_true, y_pred)
    return {
        "r2": r2_score(y_true, y_pred),
        "rmse": rmse(y_true, y_pred),
        "mae": mae(y_true, y_pred),
        "mape": mape(y_true, y_pred, zero_targets="skip"),
        "mape_zero_targets": int(np.sum(y_true == 0)),
    }
