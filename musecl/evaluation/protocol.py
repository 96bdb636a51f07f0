"""Run every representation through every protocol, indicator and regressor on the same regions and the same folds.

The output is one long table (one row per method, indicator, regressor, protocol, repeat and fold, with R², RMSE, MAE
and MAPE on that fold's test regions) and a table of the test predictions behind it (for scatter plots and maps).

Fairness and determinism:

* the regions are those every representation and every indicator covers, and the folds are made once for them
  (:func:`musecl.evaluation.splits.make_folds`) and passed in, so every method sees identical train/test partitions;
* each MLP's seed depends only on (seed, protocol, repeat, fold, indicator), not on the method nor on the MLP
  regressor: all methods, and both MLPs (`mlp`, targets as they are; `mlp_std`, standardised targets), get the same
  initialisation stream and shuffling order for the same fold (common random numbers, which make the paired
  comparisons less noisy), and adding a method never changes another method's numbers;
* work is split into tasks (method × protocol × regressor) that run in parallel processes (`n_jobs`) with one thread
  each; the results do not depend on `n_jobs` or on the order the tasks finish in;
* every feature is clipped to the fitting rows' range (`evaluation.clip_quantile`, :func:`clip_to_fit_rows`) before
  ridge, the MLP and the oracle, fold by fold, the same for every representation;
* a representation with ``estimator: oracle`` (the latent-variable ceiling) is fitted, in every protocol and regressor
  column, by the oracle family of :mod:`musecl.oracle` (chosen per indicator by inner CV on the fold's fitting rows)
  instead of that column's regressor, and scored on the same test regions as every other row.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID
from musecl.evaluation.metrics import regression_metrics
from musecl.evaluation.regressors import (
    DEFAULT_ALPHAS,
    MLP_REGRESSORS,
    MLPConfig,
    MLPJob,
    URBANCLIP_MLP,
    clip_to_fit_rows,
    fit_predict_mlp,
    fit_predict_ridge,
)
from musecl.evaluation.splits import Fold, Folds, SplitSpec, stable_key

REGRESSORS = (*MLP_REGRESSORS, "ridge")  # mlp: the paper's MLP, targets as they are; mlp_std: standardised targets;
# mlp_urbanclip: UrbanCLIP's downstream head (evaluation.mlp_urbanclip)
RESULT_COLUMNS = [
    "method", "indicator", "regressor", "protocol", "seed", "repeat", "fold",
    "r2", "rmse", "mae", "mape", "mape_zero_targets", "n_train", "n_val", "n_test", "best_epoch", "epochs", "alpha",
]
# Every key of params.yaml `evaluation` (read here, by the registry, the checks and notebooks 06-07); others are
# refused, so a new key must be added here.
EVALUATION_KEYS = ("indicators", "on_missing", "representations", "protocols", "mlp", "mlp_urbanclip", "ridge", "clip_quantile",
                   "checks", "n_jobs", "threads_per_job", "figures")
RIDGE_KEYS = ("alphas",)
PREDICTION_COLUMNS = ["method", "indicator", "regressor", "protocol", "seed", "repeat", "fold", REGION_ID, "y_true",
                      "y_pred"]


@dataclass(frozen=True)
class ProtocolSpec:
    """A split (how regions are partitioned) and the regressors evaluated on it."""

    split: SplitSpec
    regressors: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.split.name

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any]) -> "ProtocolSpec":
        known = set(SplitSpec.KEYS) | {"regressors", "description"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(f"evaluation.protocols.{name}: unknown keys {unknown} (known: {sorted(known)})")
        regressors = tuple(str(r) for r in (cfg.get("regressors") or ()))
        bad = sorted(set(regressors) - set(REGRESSORS))
        if not regressors or bad:
            raise ValueError(f"evaluation.protocols.{name}.regressors: expected a non-empty list from {REGRESSORS}, got {list(regressors)}")
        return cls(SplitSpec.from_config(name, cfg), regressors)


@dataclass(frozen=True)
class EvaluationSettings:
    protocols: tuple[ProtocolSpec, ...]
    mlp: MLPConfig = MLPConfig()
    mlp_urbanclip: MLPConfig = MLPConfig.from_config(URBANCLIP_MLP)
    ridge_alphas: tuple[float, ...] = DEFAULT_ALPHAS
    seed: int = 0
    n_jobs: int = 1
    threads_per_job: int = 1
    clip_quantile: float | None = 0.0
    estimators: Mapping[str, str] = field(default_factory=dict)  # representation -> "oracle" (else the column's)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "EvaluationSettings":
        """Settings from params.yaml's `evaluation` section and the global `seed`."""
        cfg = params.get("evaluation")
        if not isinstance(cfg, Mapping):
            raise KeyError("params.yaml has no section 'evaluation'")
        _refuse_unknown("evaluation", cfg, EVALUATION_KEYS)
        protocols = cfg.get("protocols") or {}
        if not protocols:
            raise ValueError("params.yaml: evaluation.protocols is empty")
        ridge = cfg.get("ridge") or {}
        _refuse_unknown("evaluation.ridge", ridge, RIDGE_KEYS)
        alphas = ridge.get("alphas")
        clip = cfg.get("clip_quantile", 0.0)
        if clip is not None and not (isinstance(clip, (int, float)) and 0 <= clip < 0.5):
            raise ValueError(f"params.yaml evaluation.clip_quantile: expected null or a number in [0, 0.5), got {clip!r}")
        estimators = {str(name): str((entry or {}).get("estimator"))
                      for name, entry in (cfg.get("representations") or {}).items() if (entry or {}).get("estimator")}
        return cls(
            protocols=tuple(ProtocolSpec.from_config(name, p or {}) for name, p in protocols.items()),
            mlp=replace(MLPConfig.from_config(cfg.get("mlp")), clip_quantile=clip),
            mlp_urbanclip=replace(MLPConfig.from_config({**URBANCLIP_MLP, **(cfg.get("mlp_urbanclip") or {})}),
                                  clip_quantile=clip),
            clip_quantile=clip,
            estimators=estimators,
            ridge_alphas=tuple(float(a) for a in alphas) if alphas else DEFAULT_ALPHAS,
            seed=int(params.get("seed", 0)),
            n_jobs=int(cfg.get("n_jobs", 1)),
            threads_per_job=int(cfg.get("threads_per_job", 1)),
        )

    @property
    def split_specs(self) -> list[SplitSpec]:
        return [p.split for p in self.protocols]


def _refuse_unknown(where: str, cfg: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise ValueError(f"params.yaml {where}: unknown setting(s) {unknown}; known: {sorted(known)}")


@dataclass
class EvaluationResult:
    results: pd.DataFrame  # RESULT_COLUMNS
    predictions: pd.DataFrame  # PREDICTION_COLUMNS


def evaluation_regions(targets: pd.DataFrame, features: Mapping[str, pd.DataFrame]) -> tuple[np.ndarray, pd.DataFrame]:
    """Regions with every indicator finite and a row in every feature table (sorted), and a coverage table.

    The coverage table has one row per source (the indicators, then each method): regions it has, and how many of
    the indicator regions it lacks. Every method is evaluated on the same (intersected) regions.
    """
    finite = targets.index[np.isfinite(targets.to_numpy(dtype=np.float64)).all(axis=1)]
    common = pd.Index(finite.astype(str))
    rows = [{"source": "indicators", "regions": len(targets), "usable": len(finite), "lacks": len(targets) - len(finite)}]
    for name, table in features.items():
        idx = pd.Index(table.index.astype(str))
        rows.append({"source": name, "regions": len(idx), "usable": len(idx.intersection(finite.astype(str))),
                     "lacks": len(pd.Index(finite.astype(str)).difference(idx))})
        common = common.intersection(idx)
    if len(common) == 0:
        raise ValueError("no region has every indicator and every representation: check the region ids of the tables")
    coverage = pd.DataFrame(rows)
    coverage["evaluated"] = len(common)
    return np.array(sorted(common), dtype=object), coverage


def shared_test_sets(predictions: pd.DataFrame) -> bool:
    """True when every method (and every training seed of it) was tested on exactly the same regions in every
    protocol, regressor, repeat and fold; every method has its main-run (seed 0) predictions everywhere."""
    keys = ["protocol", "regressor", "repeat", "fold", "indicator"]
    predictions = predictions if "seed" in predictions.columns else predictions.assign(seed=0)
    sets = predictions.groupby(["method", "seed", *keys], sort=False)[REGION_ID].agg(lambda s: tuple(sorted(s)))
    per_run = sets.unstack(["method", "seed"])
    main = per_run.loc[:, per_run.columns.get_level_values("seed") == 0]
    return bool(main.notna().all().all() and per_run.nunique(axis=1).eq(1).all())


def mlp_seed(seed: int, protocol: str, repeat: int, fold: int, indicator: str) -> int:
    """The seed of one MLP: the same for every method (common random numbers)."""
    return stable_key(seed, "mlp", protocol, repeat, fold, indicator)


def evaluate(
    features: Mapping[str, pd.DataFrame],
    targets: pd.DataFrame,
    folds: Folds,
    settings: EvaluationSettings,
    progress: bool = True,
    seed: int = 0,
) -> EvaluationResult:
    """Score every (method, indicator, regressor, protocol, repeat, fold); see the module docstring. `seed`: the
    training-seed index of the feature tables (0: the main run; k: the `seeds` stage's run k), stored in column
    `seed` so that summaries and paired tests run over seeds × folds."""
    ids = folds.region_ids
    missing_targets = pd.Index(ids).difference(targets.index.astype(str))
    if len(missing_targets):
        raise ValueError(f"{len(missing_targets)} fold regions have no indicator row, e.g. {list(missing_targets[:3])}")
    y = targets.copy()
    y.index = y.index.astype(str)
    y = y.loc[ids]
    if not np.isfinite(y.to_numpy(dtype=np.float64)).all():
        raise ValueError("indicators have NaN/inf on fold regions (use evaluation_regions to choose the regions)")
    xs = {}
    for name, table in features.items():
        t = table.copy()
        t.index = t.index.astype(str)
        lacking = pd.Index(ids).difference(t.index)
        if len(lacking):
            raise ValueError(f"representation '{name}' lacks {len(lacking)} of the fold regions, e.g. {list(lacking[:3])}")
        xs[name] = t.loc[ids].to_numpy(dtype=np.float64)
    protocols = {p.name: p for p in settings.protocols}
    missing_protocols = sorted(set(protocols) - set(folds.protocols))
    if missing_protocols:
        raise ValueError(f"folds lack protocols {missing_protocols} (have {folds.protocols}); regenerate the folds")
    tasks = [
        (method, protocol, regressor)
        for regressor in REGRESSORS  # the MLPs (slow) first, for load balance
        for method in xs
        for protocol, spec in protocols.items()
        if regressor in spec.regressors
    ]
    indicators = [str(c) for c in y.columns]
    y_values = y.to_numpy(dtype=np.float64)

    def task_args(task):
        method, protocol, regressor = task
        return (method, protocol, regressor, xs[method], y_values, indicators, ids, folds.protocol(protocol), settings)

    outputs = []
    bar = _progress_bar(len(tasks), progress)
    if settings.n_jobs == 1:
        for task in tasks:
            outputs.append(_run_task(*task_args(task)))
            bar.update(1)
    else:
        from joblib import Parallel, delayed

        runner = Parallel(n_jobs=settings.n_jobs, return_as="generator_unordered")
        for out in runner(delayed(_run_task)(*task_args(task)) for task in tasks):
            outputs.append(out)
            bar.update(1)
    bar.close()
    order = {name: i for i, name in enumerate(xs)}
    results = pd.concat([pd.DataFrame(o[0]) for o in outputs], ignore_index=True).assign(seed=int(seed))
    results = _sorted(results, order, list(protocols), indicators)[RESULT_COLUMNS]
    predictions = pd.concat([o[1] for o in outputs], ignore_index=True).assign(seed=int(seed))
    predictions = _sorted(predictions, order, list(protocols), indicators)[PREDICTION_COLUMNS]
    return EvaluationResult(results.reset_index(drop=True), predictions.reset_index(drop=True))


def _sorted(frame: pd.DataFrame, method_order: dict[str, int], protocols: list[str], indicators: list[str]) -> pd.DataFrame:
    keys = pd.DataFrame({
        "m": frame["method"].map(method_order),
        "p": frame["protocol"].map({p: i for i, p in enumerate(protocols)}),
        "g": frame["regressor"].map({r: i for i, r in enumerate(REGRESSORS)}),
        "i": frame["indicator"].map({n: i for i, n in enumerate(indicators)}),
    })
    sort_cols = ["m", "p", "g", "seed", "repeat", "fold", "i"] + ([REGION_ID] if REGION_ID in frame.columns else [])
    merged = pd.concat([frame, keys], axis=1)
    return merged.sort_values(sort_cols, kind="stable").drop(columns=list(keys.columns))


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="evaluation tasks (method x protocol x regressor)", disable=not enabled)


def _run_task(
    method: str,
    protocol: str,
    regressor: str,
    x: np.ndarray,
    y: np.ndarray,
    indicators: list[str],
    ids: np.ndarray,
    folds: Sequence[Fold],
    settings: EvaluationSettings,
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    """One method on one protocol with one regressor: every fold and indicator."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, settings.threads_per_job))
    try:
        oracle = settings.estimators.get(method) == "oracle"
        if oracle:
            fits = _oracle_fits(protocol, x, y, folds, settings)
        elif regressor in MLP_REGRESSORS:
            fits = _mlp_fits(method, protocol, x, y, indicators, folds, settings, regressor)
        else:
            fits = _ridge_fits(x, y, folds, settings)
    finally:
        torch.set_num_threads(threads)
    early_stopped = regressor in MLP_REGRESSORS and not oracle  # fitted on train, stopped on val
    rows, preds = [], []
    for fold, t, pred, extra in fits:
        truth = y[fold.test, t]
        metrics = regression_metrics(truth, pred)
        rows.append({
            "method": method, "indicator": indicators[t], "regressor": regressor, "protocol": protocol,
            "repeat": fold.repeat, "fold": fold.fold, **metrics,
            "n_train": len(fold.train) if early_stopped else len(fold.train) + len(fold.val),
            "n_val": len(fold.val) if early_stopped else 0,
            "n_test": len(fold.test),
            "best_epoch": extra.get("best_epoch", -1), "epochs": extra.get("epochs", -1),
            "alpha": extra.get("alpha", float("nan")),
        })
        preds.append(pd.DataFrame({
            "method": method, "indicator": indicators[t], "regressor": regressor, "protocol": protocol,
            "repeat": fold.repeat, "fold": fold.fold, REGION_ID: ids[fold.test], "y_true": truth, "y_pred": pred,
        }))
    return rows, pd.concat(preds, ignore_index=True)


def _mlp_fits(method, protocol, x, y, indicators, folds, settings, regressor):
    jobs = [
        MLPJob(key=(i, t), train=f.train, val=f.val, test=f.test, target=t,
               seed=mlp_seed(settings.seed, protocol, f.repeat, f.fold, indicators[t]))
        for i, f in enumerate(folds)
        for t in range(y.shape[1])
    ]
    config = settings.mlp_urbanclip if regressor == "mlp_urbanclip" else settings.mlp
    results = fit_predict_mlp(x, y, jobs, config, standardize_targets=MLP_REGRESSORS[regressor])
    return [
        (folds[r.key[0]], r.key[1], r.prediction, {"best_epoch": r.best_epoch, "epochs": r.epochs})
        for r in results
    ]


def _ridge_fits(x, y, folds, settings):
    out = []
    for f in folds:
        pred, alphas = fit_predict_ridge(x, y, f.fit, f.test, settings.ridge_alphas, settings.clip_quantile)
        for t in range(y.shape[1]):
            out.append((f, t, pred[:, t], {"alpha": float(alphas[t] if alphas.size > 1 else alphas[0])}))
    return out


def _oracle_fits(protocol, x, y, folds, settings):
    """The oracle family (musecl.oracle) on each fold's fitting rows; its seed depends on the fold, not the column."""
    from musecl.oracle import fit_predict_oracle

    out = []
    for f in folds:
        xc = clip_to_fit_rows(x, f.fit, settings.clip_quantile)
        pred, _ = fit_predict_oracle(xc, y, f.fit, f.test, stable_key(settings.seed, "oracle", protocol, f.repeat, f.fold))
        out.extend((f, t, pred[:, t], {}) for t in range(y.shape[1]))
    return out


def evaluate_seeds(
    seed_features: Mapping[int, Mapping[str, pd.DataFrame]],
    targets: pd.DataFrame,
    folds: Folds,
    settings: EvaluationSettings,
    protocols: Sequence[str],
    main: EvaluationResult | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Score the extra training seeds' feature tables (seed index -> method -> table) on `protocols` only, on the
    same folds as the main run, and append them to `main` (the seed-0 result), if given, in one result."""
    unknown = sorted(set(protocols) - {p.name for p in settings.protocols})
    if unknown:
        raise ValueError(f"training_seeds.protocols {unknown} are not evaluation protocols "
                         f"({[p.name for p in settings.protocols]})")
    narrowed = replace(settings, protocols=tuple(p for p in settings.protocols if p.name in protocols))
    parts = [main] if main is not None else []
    for k, features in seed_features.items():
        if features:
            parts.append(evaluate(features, targets, folds, narrowed, progress=progress, seed=k))
    if not parts:
        raise ValueError("no results: give the main result or at least one seed's feature tables")
    return EvaluationResult(pd.concat([p.results for p in parts], ignore_index=True),
                            pd.concat([p.predictions for p in parts], ignore_index=True))

