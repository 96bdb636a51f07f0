"""The input and output of the `fusion` stage (notebook 05; the variants of notebook 05b reuse it): the saved
parameters, the attention table, the DVC metrics, the summary tables and the DVCLive training curve.

`save_fusion_model` writes `fusion.pt` with `musecl.storage.save_torch`, and what it saves (parameters, config, region
counts) holds no timing or path, so the same seed gives the same bytes. Other helpers (musecl.storage, dvclive,
musecl.embeddings) are imported inside the functions that need them: importing `musecl.fusion` stays possible with
torch, numpy and pandas alone.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from musecl.contract import IMAGE_TABLES, REGION_ID
from musecl.fusion.model import FusionConfig, fusion_module
from musecl.fusion.train import EpochCallback, FusionResult

STATE_FILE = "fusion.pt"


# ---- files ----------------------------------------------------------------------------------------------------------
def save_fusion_model(result: FusionResult, path: str | Path) -> Path:
    """The trained attention parameters (W, b, u) with the config and region counts, as a torch file written atomically
    with fixed record names (`musecl.storage.save_torch`): the same run gives the same bytes. The training time
    (`result.seconds`) is left out on purpose."""
    from musecl.storage import save_torch

    path = Path(path)
    save_torch({"state_dict": result.state, "config": asdict(result.config), "details": result.details}, path)
    return path


def load_fusion_model(path: str | Path) -> tuple[torch.nn.Module, FusionConfig]:
    """Rebuild the module (per-region or global attention, as the saved config says) and its config from
    `save_fusion_model` output. The module takes the inputs as the config's `normalize_inputs` prepares them
    (:func:`musecl.fusion.model.prepare_modalities`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fusion parameters {path} not found (run stage fusion: `dvc repro fusion`)")
    from musecl.storage import load_torch

    payload = load_torch(path)
    state = payload["state_dict"]
    config = FusionConfig(**payload["config"])
    model = fusion_module(config, state["W"].shape[0] if "W" in state else int(payload["details"]["dim"]))
    model.load_state_dict(state)
    return model, config


def write_attention(attention: pd.DataFrame, path: str | Path) -> None:
    """Attention weights per region as parquet (columns region_id, alpha_rs, alpha_sv, in_loss), atomically."""
    from musecl.storage import write_parquet

    out = attention.reset_index()
    out[REGION_ID] = out[REGION_ID].astype(str)
    write_parquet(out, path)


@contextmanager
def dvclive_curve(folder: str | Path) -> Iterator[EpochCallback]:
    """A DVCLive run in `folder` (no dvc.yaml edits, no experiment commit) and an `on_epoch` callback logging into it.

    The curve lands in `<folder>/plots/metrics/train/loss.tsv`, the final value in `<folder>/metrics.json`.
    """
    from dvclive import Live

    with Live(str(folder), dvcyaml=None, save_dvc_exp=False, report=None) as live:

        def log(epoch: int, loss: float) -> None:
            live.log_metric("train/loss", loss)
            live.next_step()

        yield log


# ---- metrics and summaries ------------------------------------------------------------------------------------------
def fusion_metrics(result: FusionResult) -> dict[str, Any]:
    """DVC metrics of a fusion run: config, final loss, region counts, attention distribution, wall time."""
    summary = attention_summary(result.attention)
    return {
        "config": asdict(result.config),
        "final_loss": float(result.history["loss"].iloc[-1]) if len(result.history) else None,
        "train_seconds": result.seconds,
        **result.details,
        "attention": {w: {k: float(v) for k, v in row.items()} for w, row in summary.iterrows()},
    }


def attention_summary(attention: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and quantiles of the attention weight of each modality across regions."""
    quantiles = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
    rows = {}
    for column in ("alpha_rs", "alpha_sv"):
        values = attention[column].to_numpy(np.float64)
        row = {"mean": values.mean(), "std": values.std(ddof=0)}
        row.update({("min" if q == 0 else "max" if q == 1 else f"q{int(q * 100):02d}"): v
                    for q, v in zip(quantiles, np.quantile(values, quantiles))})
        row["share_above_half"] = float((values > 0.5).mean())
        rows[column] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("weight")


def describe_inputs(rs: pd.DataFrame, sv: pd.DataFrame, text: pd.DataFrame) -> pd.DataFrame:
    """Regions, dimension and vector-norm statistics of the three input tables (the MSE loss compares raw scales)."""
    rows = {}
    for name, table in ((IMAGE_TABLES["rs"], rs), (IMAGE_TABLES["sv"], sv), ("poi_text", text)):
        norms = np.linalg.norm(table.to_numpy(np.float64), axis=1)
        rows[name] = {"regions": len(table), "dim": table.shape[1], "norm_mean": norms.mean(),
                      "norm_std": norms.std(ddof=0), "zero_vectors": int((norms == 0).sum())}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("table")
