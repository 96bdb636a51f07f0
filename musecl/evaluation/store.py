"""Where the evaluation's outputs live and how they are written and read back.

`<paths.work>/evaluation/` holds the DVC-cached tables (results.parquet: one row per method, indicator, regressor,
protocol, repeat, fold; predictions.parquet: the test predictions behind them; folds.parquet: the shared folds;
coverage.parquet: which representations were evaluated on which regions). `reports/metrics.json` holds the mean
R² and RMSE per protocol, regressor, method and indicator (DVC metrics: `dvc metrics show`, `dvc metrics diff`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from musecl.evaluation.regressors import MLP_REGRESSORS
from musecl.storage import write_json, write_parquet

RESULTS_FILE = "results.parquet"
PREDICTIONS_FILE = "predictions.parquet"
FOLDS_FILE = "folds.parquet"
STATUS_FILE = "representations.parquet"
METRICS_FILE = "metrics.json"
RUN_INFO_FILE = "run_info.json"


def evaluation_dir(params: Mapping[str, Any]) -> Path:
    return Path(params["paths"]["work"]) / "evaluation"


def metrics_path(params: Mapping[str, Any]) -> Path:
    return Path(params["paths"]["reports"]) / METRICS_FILE


def select_indicators(indicators: pd.DataFrame, wanted: list[str] | None, source: str = "indicators") -> pd.DataFrame:
    """The indicator columns to predict (all when `wanted` is empty), with a clear error for unknown names."""
    if not wanted:
        return indicators
    missing = [w for w in wanted if w not in indicators.columns]
    if missing:
        raise KeyError(f"{source}: evaluation.indicators asks for {missing}, the bundle has {list(indicators.columns)}")
    return indicators[list(wanted)]


def fold_sizes(folds_table: pd.DataFrame) -> pd.DataFrame:
    """Regions per role for every protocol (min-max over repeats and folds)."""
    counts = folds_table.groupby(["protocol", "repeat", "fold", "role"], sort=False).size().unstack("role", fill_value=0)
    agg = counts.groupby("protocol", sort=False).agg(["min", "max"])
    out = pd.DataFrame(index=agg.index)
    out["folds"] = counts.groupby("protocol", sort=False).size()
    for role in ("train", "val", "test"):
        lo, hi = agg[(role, "min")], agg[(role, "max")]
        out[role] = [f"{a}" if a == b else f"{a}-{b}" for a, b in zip(lo, hi)]
    return out.reset_index()


@dataclass
class StoredEvaluation:
    results: pd.DataFrame
    predictions: pd.DataFrame
    folds: pd.DataFrame
    status: pd.DataFrame
    info: dict[str, Any]


def write_evaluation(
    out_dir: str | Path,
    results: pd.DataFrame,
    predictions: pd.DataFrame,
    folds_table: pd.DataFrame,
    status: pd.DataFrame,
    info: Mapping[str, Any],
) -> dict[str, Path]:
    """Write the evaluation tables atomically; `info` (run settings, timings) goes to run_info.json."""
    import json

    out_dir = Path(out_dir)
    paths = {name: out_dir / f for name, f in (("results", RESULTS_FILE), ("predictions", PREDICTIONS_FILE),
                                              ("folds", FOLDS_FILE), ("status", STATUS_FILE), ("info", RUN_INFO_FILE))}
    write_parquet(results, paths["results"])
    write_parquet(predictions, paths["predictions"])
    write_parquet(folds_table, paths["folds"])
    write_parquet(status.astype({"available": bool}), paths["status"])
    write_json(json.loads(json.dumps(dict(info), default=_plain)), paths["info"])
    return paths


def load_evaluation(out_dir: str | Path) -> StoredEvaluation:
    """Read what :func:`write_evaluation` wrote; the error names the missing file and the stage that writes it."""
    import json

    out_dir = Path(out_dir)
    tables = {}
    for name, file in (("results", RESULTS_FILE), ("predictions", PREDICTIONS_FILE), ("folds", FOLDS_FILE),
                       ("status", STATUS_FILE)):
        path = out_dir / file
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run stage `evaluate` (notebooks/06_evaluation.ipynb) first")
        tables[name] = pd.read_parquet(path)
    info_path = out_dir / RUN_INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return StoredEvaluation(tables["results"], tables["predictions"], tables["folds"], tables["status"], info)


def run_info(
    city: str,
    status: pd.DataFrame,
    results: pd.DataFrame,
    folds_fingerprint: str,
    n_regions: int,
    settings: Any,
    skipped_protocols: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What notebook 07 and a reader need to know about an evaluation run (stored as run_info.json; deterministic:
    timings go to the reports instead). `skipped_protocols` ({protocol: why}: the city's regions cannot be split by
    it, :func:`musecl.evaluation.skipped.feasible_settings`) is stored as `protocols_skipped` when there is one."""
    oracle_fitted = list(getattr(settings, "estimators", {}) or {})  # rows fitted by the oracle family, not the MLP
    # the paper's MLP fits (mlp, mlp_std; mlp_urbanclip trains a fixed number of epochs by design)
    early = [r for r in MLP_REGRESSORS if r != "mlp_urbanclip"]
    mlp = results[results["regressor"].isin(early) & ~results["method"].isin(oracle_fitted)]
    info = {
        "city": city,
        "seed": settings.seed,
        "n_regions": int(n_regions),
        "indicators": list(dict.fromkeys(results["indicator"])),
        "evaluated": list(dict.fromkeys(results["method"])),
        "missing": dict(zip(status.loc[~status["available"], "method"], status.loc[~status["available"], "missing"])),
        "folds_fingerprint": folds_fingerprint,
        "protocols": {p.name: {"split": p.split.kind, "repeats": p.split.repeats, "k": p.split.k,
                               "regressors": list(p.regressors)} for p in settings.protocols},
        "mlp_fits": int(len(mlp)),
        "mlp_fits_at_max_epochs": int((mlp["epochs"] >= settings.mlp.max_epochs).sum()),
        "mlp_max_epochs": settings.mlp.max_epochs,
        "mlp_mean_epochs": float(mlp["epochs"].mean()) if len(mlp) else float("nan"),
        "mlp_mean_epochs_by_regressor": {str(k): float(v)
                                         for k, v in mlp.groupby("regressor", sort=False)["epochs"].mean().items()},
        "ridge_fits": int((results["regressor"] == "ridge").sum() / max(results["indicator"].nunique(), 1)),
        "fitted_by_oracle_family": oracle_fitted,
    }
    if skipped_protocols:
        info["protocols_skipped"] = dict(skipped_protocols)
    return info


def metrics_summary(summary: pd.DataFrame, metrics: tuple[str, ...] = ("r2", "rmse")) -> dict[str, Any]:
    """Nested {protocol: {regressor: {method: {indicator: {metric: mean}}}}} rounded to 4 decimals, for DVC metrics."""
    out: dict[str, Any] = {}
    for rec in summary.itertuples(index=False):
        leaf = out.setdefault(rec.protocol, {}).setdefault(rec.regressor, {}).setdefault(rec.method, {})
        leaf[rec.indicator] = {
            m: (round(float(getattr(rec, f"{m}_mean")), 4) if np.isfinite(getattr(rec, f"{m}_mean")) else None)
            for m in metrics
        }
    return out


def write_metrics(metrics: Mapping[str, Any], path: str | Path) -> Path:
    write_json(dict(metrics), path)
    return Path(path)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
