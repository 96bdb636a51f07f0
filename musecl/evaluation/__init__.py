"""Downstream evaluation (stages 06-07): regressors, protocols, statistics, the paper's tables and figures.

* :mod:`~musecl.evaluation.metrics`: R², RMSE, MAE, MAPE (without the authors' broadcasting bug).
* :mod:`~musecl.evaluation.splits`: the paper's 60/20/20 split, repeated K-fold, spatial K-fold over H3 parents.
* :mod:`~musecl.evaluation.regressors`: the paper's MLP (many trained side by side) and ridge regression.
* :mod:`~musecl.evaluation.representations`: the registry of compared representations (params.yaml entries).
* :mod:`~musecl.evaluation.protocol`: every representation × protocol × indicator × regressor on shared folds.
* :mod:`~musecl.evaluation.stats`: mean ± std, paired tests against the best baseline, the paper's improvement.
* :mod:`~musecl.evaluation.skipped`: what was not run and why (skipped representations, protocols a small city
  cannot split, undefined fold scores), as warnings and table notes.
* :mod:`~musecl.evaluation.checks`: flags for a representation above the oracle ceiling and for blown-up folds.
* :mod:`~musecl.evaluation.tables` / :mod:`~musecl.evaluation.figures`: the paper's Tables 1-2 and the figures.
* :mod:`~musecl.evaluation.store`: where results live; metrics.json for DVC.

Only numpy, pandas and (for the MLP) torch are imported eagerly; scipy, scikit-learn, matplotlib, geopandas and h3
are imported inside the functions that need them.
"""
from musecl.evaluation.metrics import mae, mape, r2_score, regression_metrics, rmse
from musecl.evaluation.protocol import (EvaluationResult, EvaluationSettings, ProtocolSpec, evaluate, evaluate_seeds,
                                        evaluation_regions)
from musecl.evaluation.regressors import MLPConfig, MLPJob, fit_predict_mlp, fit_predict_ridge
from musecl.evaluation.representations import (
    RepresentationMissing,
    RepresentationRegistry,
    RepresentationSkipped,
    RepresentationSpec,
    register_source,
)
from musecl.evaluation.splits import Fold, Folds, SplitSpec, make_folds
from musecl.evaluation.stats import compare_to_best_baseline, improvement, paired_tests, summarise

__all__ = [
    "EvaluationResult",
    "EvaluationSettings",
    "Fold",
    "Folds",
    "MLPConfig",
    "MLPJob",
    "ProtocolSpec",
    "RepresentationMissing",
    "RepresentationRegistry",
    "RepresentationSkipped",
    "RepresentationSpec",
    "SplitSpec",
    "compare_to_best_baseline",
    "evaluate",
    "evaluate_seeds",
    "evaluation_regions",
    "fit_predict_mlp",
    "fit_predict_ridge",
    "improvement",
    "mae",
    "make_folds",
    "mape",
    "paired_tests",
    "r2_score",
    "register_source",
    "regression_metrics",
    "rmse",
    "summarise",
]
