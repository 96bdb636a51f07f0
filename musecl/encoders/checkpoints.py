"""Encoder checkpoints: `best.pt` (the selected epoch's encoder, what `load_encoder` reads) and `last.pt` (model,
optimiser, scheduler, history and the fingerprint of the inputs and settings, from which a new call resumes).

Both are written with `musecl.storage.save_torch`, so their bytes depend only on what they hold, and they hold only
what a rerun with the same seed, data and settings reproduces exactly: `best.pt` stores the result-relevant settings
(`TrainConfig.fingerprint()`, without progress, log_dir, max_epochs_this_run, ...), and `last.pt` stores the history
*without* its timing columns (`seconds`, `train_images_per_s`: wall-clock measurements). After a resume the epochs
run by an earlier process therefore have NaN timings; the epochs run in this process have their measured ones. No
sidecar file keeps the old timings, because the checkpoint folder is a DVC output whose hash would then change on
every run; nothing in the pipeline's results depends on the timings.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from musecl.encoders.models import ImageEncoder, ModelSpec, build_encoder

if TYPE_CHECKING:
    from musecl.encoders.config import TrainConfig
    from musecl.encoders.image_cache import ImageCache

CHECKPOINT_FORMAT = 1
LAST, BEST = "last.pt", "best.pt"
TIMING_COLUMNS = ("seconds", "train_images_per_s")  # wall-clock history columns: never written into a checkpoint


def digest(*arrays: np.ndarray) -> str:
    """A short content hash of arrays (values and shapes): the identity of the training and validation tables."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str(a.shape).encode())
    return h.hexdigest()[:16]


def run_fingerprint(config: TrainConfig, cache: ImageCache, train_rows: np.ndarray, val_rows: np.ndarray | None,
                    world_size: int) -> dict[str, Any]:
    """What a `last.pt` must match to be resumed: settings (runtime-only fields excluded), cache, samples, processes."""
    return json.loads(json.dumps({
        "config": config.fingerprint(),
        "cache": cache.fingerprint or str(cache.image_shape),
        "train": digest(train_rows),
        "val": digest(val_rows) if val_rows is not None else "",
        "world_size": world_size,
    }))


def stored_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history as `last.pt` keeps it: every row without its timing columns."""
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in history]


def restored_history(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A `last.pt` history with NaN timings (measured by an earlier process, not kept), columns in the usual order."""
    return [{**stored, **{k: math.nan for k in TIMING_COLUMNS}} for stored in stored_history(history)]


def save_best(path: Path, config: TrainConfig, model_state: dict[str, torch.Tensor], epoch: int) -> None:
    from musecl.storage import save_torch

    save_torch({"format": CHECKPOINT_FORMAT, "spec": config.model.to_dict(), "model": model_state, "epoch": epoch,
                "config": config.fingerprint()}, path)


def save_last(path: Path, fingerprint: dict[str, Any], epoch: int, model_state: dict[str, torch.Tensor],
              optimizer: torch.optim.Optimizer, scheduler: Any, history: list[dict[str, Any]],
              best: dict[str, Any]) -> None:
    from musecl.storage import save_torch

    save_torch({"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epoch": epoch, "model": model_state,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "history": stored_history(history), "best": best}, path)


def resume_state(path: Path, fingerprint: dict[str, Any], announce: bool) -> dict[str, Any] | None:
    """The contents of `last.pt` when it exists and was written for the same inputs and settings, else None (and,
    when `announce`, a printed note that a checkpoint of other inputs is replaced)."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") == CHECKPOINT_FORMAT and state.get("fingerprint") == fingerprint:
        return state
    if announce:
        print(f"{path}: checkpoint of different inputs or settings; training from scratch")
    return None


def load_encoder(path: str | Path) -> ImageEncoder:
    """The encoder saved in a `best.pt` checkpoint, in eval mode on the CPU (loaded with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder checkpoint {path} not found (train the encoder first)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT or "spec" not in state:
        raise ValueError(f"{path}: not an encoder checkpoint of format {CHECKPOINT_FORMAT}")
    spec = ModelSpec(**state["spec"])
    model = build_encoder(replace(spec, weights="none"), seed=0)  # the weights come from the checkpoint
    model.load_state_dict(state["model"])
    return model.eval()
