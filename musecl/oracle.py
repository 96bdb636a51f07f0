"""The R² ceiling of a synthetic city: how well the indicators can be predicted from the true latent variables.

No representation learned from images, POIs or mobility can know more about a region than its latent variables, so a
well-fitted regressor on them bounds what any method can reach (up to the regressor's own misfit). The oracle regressor is
ridge regression on the latents and their pairwise products (the indicators are log-linear in the latents with
interactions), standardised, alpha chosen by inner cross-validation, scored by repeated K-fold.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def oracle_r2(
    latents: pd.DataFrame, indicators: pd.DataFrame, folds: int = 5, repeats: int = 3, seed: int = 0
) -> pd.DataFrame:
    """Cross-validated R² (mean, std over repeats × folds) of the latent-variable oracle for every indicator."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import RepeatedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    missing = indicators.index.difference(latents.index)
    if len(missing):
        raise ValueError(f"{len(missing)} regions have indicators but no latents, e.g. {list(missing[:3])}")
    x = latents.loc[indicators.index].to_numpy(dtype=np.float64)
    splitter = RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    splits = list(splitter.split(x))
    rows = []
    for name in indicators.columns:
        y = indicators[name].to_numpy(dtype=np.float64)
        scores = []
        for train, test in splits:
            model = make_pipeline(
                PolynomialFeatures(degree=2, include_bias=False),
                StandardScaler(),
                RidgeCV(alphas=np.logspace(-3, 3, 13)),
            )
            model.fit(x[train], y[train])
            scores.append(r2_score(y[test], model.predict(x[test])))
        rows.append({"indicator": name, "r2_mean": float(np.mean(scores)), "r2_std": float(np.std(scores)),
                     "n_regions": len(y), "n_splits": len(scores)})
    return pd.DataFrame(rows).set_index("indicator")
