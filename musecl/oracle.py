"""The R² ceiling of a synthetic city: how well the indicators can be predicted from the true latent variables.

No representation learned from images, POIs or mobility can know more about a region than its latent variables, so a
well-fitted regressor on them bounds what any method can reach, *up to the regressor's own misfit*: the bound is only
as good as the estimator that fits it. A learned representation can beat a badly fitted ceiling (the old degree-2
ridge extrapolated the squares and products of a zero-inflated latent, water cover, to fold R² of −26 on a second city),
so the oracle is not one estimator but the best of a small family, chosen per indicator by inner cross-validation:

* ``linear``: ridge on the standardised latents (alpha by leave-one-out, :data:`ORACLE_ALPHAS`);
* ``quadratic``: ridge on the latents (clipped to the training rows' range) and on the degree-2 terms (squares and
  pairwise products) of the latents mapped to [0, 1] by a quantile transform fitted on the training rows (the
  indicators are log-linear in the latents with interactions). The old oracle took the products of the raw latents:
  a latent that is zero almost everywhere with a few huge values (water cover) gave squares and products that one
  test region could blow up to fold R² of −26; quantile-transformed products are bounded, and clipping the products of
  raw latents to the training range was not enough (measured: fold R² −1.1 on a second city);
* ``boosting``: gradient-boosted trees (sklearn ``HistGradientBoostingRegressor``, seeded, :data:`BOOSTING`), which
  fit any monotone or interacting shape and are constant beyond the training range.

For each outer training fold, every candidate is scored by K-fold (``inner_folds``, shuffled from the seed) on the
training rows only. Linear ridge is the default; a more flexible member replaces it only when its inner R² beats
linear's by more than one standard error of their per-inner-fold difference (the one-standard-error rule: on a few
dozen regions the inner scores are noisy and the plain mean picked boosting or the quadratic by chance), and among
those the largest such margin wins. The choice is refitted on all training rows and predicts the test rows.
The test rows are never seen by the choice. Because ``linear`` is in the family, the oracle can fall below a linear fit
on the same latents only by the noise of the inner choice, which the tests bound (tests/test_oracle_zoo.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

FAMILY = ("linear", "quadratic", "boosting")
ORACLE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 4, 15))
BOOSTING = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 8, "min_samples_leaf": 5, "max_bins": 64,
            "early_stopping": False}  # small trees, fixed rounds: ~0.05 s a fit on a few hundred regions


class RangeClipper:
    """Clip every feature to the [min, max] it had on the rows `fit` saw (an sklearn transformer)."""

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "RangeClipper":
        self.low_, self.high_ = np.min(x, axis=0), np.max(x, axis=0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.low_, self.high_)

    def fit_transform(self, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        return self.fit(x).transform(x)

    def get_params(self, deep: bool = True) -> dict:
        return {}

    def set_params(self, **params) -> "RangeClipper":
        return self


def oracle_candidate(kind: str, n_rows: int, seed: int):
    """An unfitted sklearn estimator of the family member `kind` for `n_rows` training rows."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.preprocessing import PolynomialFeatures, QuantileTransformer, StandardScaler

    seed = int(seed) % 2**32
    if kind == "linear":
        return make_pipeline(StandardScaler(), RidgeCV(alphas=ORACLE_ALPHAS, alpha_per_target=True))
    if kind == "quadratic":
        quantiles = QuantileTransformer(n_quantiles=max(2, min(100, n_rows)), output_distribution="uniform",
                                        random_state=seed)
        terms = make_union(RangeClipper(), make_pipeline(quantiles, PolynomialFeatures(degree=2, include_bias=False)))
        return make_pipeline(terms, StandardScaler(), RidgeCV(alphas=ORACLE_ALPHAS, alpha_per_target=True))
    if kind == "boosting":
        return HistGradientBoostingRegressor(random_state=seed, **BOOSTING)
    raise ValueError(f"unknown oracle family member {kind!r} (expected one of {FAMILY})")


def _check_family(family: Sequence[str]) -> tuple[str, ...]:
    family = tuple(family)
    bad = sorted(set(family) - set(FAMILY))
    if not family or bad:
        raise ValueError(f"oracle family: expected a non-empty subset of {FAMILY}, got {list(family)}")
    return family


def _one_se_choice(scores: np.ndarray, family: tuple[str, ...]) -> int:
    """Index of the chosen member from inner scores (members × inner folds): linear unless beaten by more than 1 SE."""
    base = family.index("linear") if "linear" in family else 0
    diff = scores - scores[base]
    se = diff.std(axis=1, ddof=1) / np.sqrt(scores.shape[1]) if scores.shape[1] > 1 else np.zeros(len(family))
    margin = diff.mean(axis=1) - se
    margin[base] = 0.0
    return int(np.argmax(margin))


def fit_predict_oracle(
    x: np.ndarray,
    y: np.ndarray,
    fit_rows: np.ndarray,
    test_rows: np.ndarray,
    seed: int,
    inner_folds: int = 3,
    family: Sequence[str] = FAMILY,
) -> tuple[np.ndarray, list[str]]:
    """Predictions on `test_rows` (n_test, T) of the oracle chosen per target column of `y` (N, T) on `fit_rows`.

    Returns the predictions and the chosen family member per target (see the module docstring).
    """
    from sklearn.base import clone
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold
    from threadpoolctl import threadpool_limits

    family = _check_family(family)
    if not isinstance(inner_folds, int) or inner_folds < 2:
        raise ValueError(f"params.yaml data.oracle.inner_folds: expected an integer >= 2, got {inner_folds!r}")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
    fit_rows, test_rows = np.asarray(fit_rows), np.asarray(test_rows)
    inner = list(KFold(n_splits=inner_folds, shuffle=True, random_state=seed % 2**32).split(fit_rows))
    xf, yf = x[fit_rows], y[fit_rows]
    scores = np.zeros((len(family), len(inner), y.shape[1]))
    with threadpool_limits(limits=1):  # a few hundred rows: threads cost more than they save (and n_jobs runs beside)
        for k, kind in enumerate(family):
            for i, (tr, va) in enumerate(inner):
                est = oracle_candidate(kind, len(tr), seed)
                for t in range(y.shape[1]):
                    pred = clone(est).fit(xf[tr], yf[tr, t]).predict(xf[va])
                    scores[k, i, t] = r2_score(yf[va, t], pred)
        chosen = [family[_one_se_choice(scores[:, :, t], family)] for t in range(y.shape[1])]
        out = np.empty((len(test_rows), y.shape[1]))
        for t, kind in enumerate(chosen):
            out[:, t] = oracle_candidate(kind, len(fit_rows), seed).fit(xf, yf[:, t]).predict(x[test_rows])
    return out, chosen


def oracle_r2(
    latents: pd.DataFrame,
    indicators: pd.DataFrame,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
    inner_folds: int = 3,
    family: Sequence[str] = FAMILY,
) -> pd.DataFrame:
    """Cross-validated R² of the latent-variable oracle for every indicator, beside plain linear ridge on the same folds.

    Columns: r2_mean, r2_std, r2_min (over repeats × folds), linear_r2_mean (ridge on the latents, the floor the oracle
    must not fall far below), chosen (how often each family member was picked), n_regions, n_splits.
    """
    from sklearn.metrics import r2_score
    from sklearn.model_selection import RepeatedKFold

    missing = indicators.index.difference(latents.index)
    if len(missing):
        raise ValueError(f"{len(missing)} regions have indicators but no latents, e.g. {list(missing[:3])}")
    x = latents.loc[indicators.index].to_numpy(dtype=np.float64)
    y = indicators.to_numpy(dtype=np.float64)
    splitter = RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed % 2**32)
    oracle, linear, picks = [], [], []
    for i, (train, test) in enumerate(splitter.split(x)):
        pred, chosen = fit_predict_oracle(x, y, train, test, seed + i, inner_folds, family)
        lin = oracle_candidate("linear", len(train), seed).fit(x[train], y[train]).predict(x[test]).reshape(len(test), -1)
        oracle.append([r2_score(y[test, t], pred[:, t]) for t in range(y.shape[1])])
        linear.append([r2_score(y[test, t], lin[:, t]) for t in range(y.shape[1])])
        picks.append(chosen)
    oracle_a, linear_a = np.array(oracle), np.array(linear)
    rows = []
    for t, name in enumerate(indicators.columns):
        counts = pd.Series([p[t] for p in picks]).value_counts()
        rows.append({"indicator": name, "r2_mean": float(oracle_a[:, t].mean()), "r2_std": float(oracle_a[:, t].std()),
                     "r2_min": float(oracle_a[:, t].min()), "linear_r2_mean": float(linear_a[:, t].mean()),
                     "chosen": ", ".join(f"{k} {v}" for k, v in counts.items()),
                     "n_regions": len(y), "n_splits": len(oracle_a)})
    return pd.DataFrame(rows).set_index("indicator")
