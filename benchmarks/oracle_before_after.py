"""The oracle ceiling before and after issue 15, on any generated city bundle: the old degree-2 ridge on the raw
latents' squares and products (the oracle up to commit c389538) beside today's family chosen by inner CV
(`musecl.oracle.oracle_r2`), on the same repeated K-fold splits.

    python benchmarks/oracle_before_after.py data/city [--folds 5 --repeats 3 --seed 20240711]

Prints one Markdown table (per indicator: mean ± std and the worst fold of each, the linear ridge beside them, and how
often each family member was chosen). The old estimator is rebuilt here only to measure what changed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

try:
    import musecl  # noqa: F401
except ImportError:  # a plain checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musecl.config import load_params
from musecl.data import CityBundle
from musecl.oracle import oracle_r2


def old_oracle_r2(latents: pd.DataFrame, indicators: pd.DataFrame, folds: int, repeats: int, seed: int) -> pd.DataFrame:
    """The pre-issue-15 oracle: PolynomialFeatures(2) of the raw latents, standardised, RidgeCV(1e-3..1e3)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import RepeatedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler

    x = latents.loc[indicators.index].to_numpy(dtype=np.float64)
    splits = list(RepeatedKFold(n_splits=folds, n_repeats=repeats, random_state=seed % 2**32).split(x))
    rows = {}
    for name in indicators.columns:
        y = indicators[name].to_numpy(dtype=np.float64)
        scores = []
        for train, test in splits:
            model = make_pipeline(PolynomialFeatures(degree=2, include_bias=False), StandardScaler(),
                                  RidgeCV(alphas=np.logspace(-3, 3, 13)))
            scores.append(r2_score(y[test], model.fit(x[train], y[train]).predict(x[test])))
        rows[name] = {"old_mean": np.mean(scores), "old_std": np.std(scores), "old_min": np.min(scores)}
    return pd.DataFrame(rows).T


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="default: params.yaml's seed (the oracle stage's)")
    args = parser.parse_args(argv)
    bundle = CityBundle(args.bundle)
    seed = args.seed if args.seed is not None else int(load_params()["seed"])
    latents, indicators = bundle.latents(), bundle.indicators(transformed=True)
    old = old_oracle_r2(latents, indicators, args.folds, args.repeats, seed)
    new = oracle_r2(latents, indicators, args.folds, args.repeats, seed)
    table = pd.DataFrame({
        "old oracle (degree-2 ridge)": [f"{a:.3f} ± {b:.3f}" for a, b in zip(old["old_mean"], old["old_std"])],
        "old worst fold": old["old_min"].round(2).to_numpy(),
        "new oracle (family)": [f"{a:.3f} ± {b:.3f}" for a, b in zip(new["r2_mean"], new["r2_std"])],
        "new worst fold": new["r2_min"].round(2).to_numpy(),
        "linear ridge": new["linear_r2_mean"].round(3).to_numpy(),
        "chosen": new["chosen"].to_numpy(),
    }, index=new.index)
    print(f"{args.bundle.name}: {len(indicators)} regions, {args.repeats} x {args.folds}-fold, seed {seed}\n")
    print(table.to_markdown())


if __name__ == "__main__":
    main()
