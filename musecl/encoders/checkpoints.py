"""Encoder checkpoints: `best.pt` (the selected epoch's encoder, what `load_encoder` reads) and `last.pt` (model,
optimiser, scheduler, history and the fingerprint of the inputs and settings, from which a new call resumes).

Both are written with `musecl.storage.save_torch`, so their bytes depend only on what they hold, and they hold only
what a rerun with the same seed, data and settings reproduces exactly: `best.pt` stores the result-relevant settings
(`TrainConfig.fingerprint()`, without progress, log_dir, max_epochs_this_run, ...), and `last.pt` stores the history
*without* its timing columns (`seconds`, `train_images_per_s`: wall-clock measurements). After a resume the epochs
run by an earlier process therefore have NaN timings; the epochs run in this process have their measured ones. No
sidecar file keeps the old timings, because the checkpoint folder is a DVC output whose hash would then change on
every run; nothing in the pipeline's results depends on the timings.

Recovery: a checkpoint that cannot be read (truncated by a full disk, overwritten, a zip record missing) is renamed
aside (`last.pt.corrupt-1`, then `-2`, ...; `musecl.storage.set_aside`) with a message on stderr naming the file, the
cause and what happens next, and training restarts from scratch: `last.pt` alone cannot restore the best epoch's
weights, so a corrupt or missing `best.pt` beside a good `last.pt` also means a fresh start. Same seed, same bytes:
the restarted run writes exactly the checkpoints of a clean one. `load_encoder` (a finished model, for embedding)
does not guess: it raises `musecl.storage.CorruptFileError` naming the file and the fix.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from musecl.encoders.models import ImageEncoder, ModelSpec, build_encoder
from musecl.storage import CorruptFileError, load_torch, set_aside

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
    when `announce`, a printed note that a checkpoint of other inputs is replaced). A corrupt `last.pt`, or a corrupt
    or missing `best.pt` beside it, also gives None: when `announce` (the one process that writes checkpoints), the
    corrupt file is renamed aside and the message on stderr says so."""
    if not path.is_file():
        return None
    try:
        state = read_checkpoint(path)
    except CorruptFileError as error:
        set_aside_corrupt(error, "training restarts from scratch", announce)
        return None
    if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != fingerprint:
        if announce:
            print(f"{path}: checkpoint of different inputs or settings; training from scratch")
        return None
    best = path.with_name(BEST)
    if not best.is_file():
        if announce:
            print(f"{best}: missing beside {path.name}, which cannot restore the best epoch's weights without it; "
                  "training restarts from scratch", file=sys.stderr)
        return None
    try:
        read_checkpoint(best)
    except CorruptFileError as error:
        set_aside_corrupt(error, f"{path.name} cannot restore the best epoch's weights without it, so training "
                          "restarts from scratch", announce)
        return None
    return state


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's dict (loaded with weights_only=True on the CPU); `CorruptFileError` naming the file when it
    cannot be read or holds something else than a dict."""
    state = load_torch(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CorruptFileError(path, f"holds a {type(state).__name__}, not a checkpoint dict")
    return state


def set_aside_corrupt(error: CorruptFileError, consequence: str, announce: bool) -> None:
    """Rename the corrupt file aside (`NAME.corrupt-N`) and say so on stderr, when `announce` (else nothing: another
    process of the run does it)."""
    if not announce or not error.path.exists():
        return
    aside = set_aside(error.path)
    print(f"{error}; renamed to {aside.name}; {consequence}", file=sys.stderr)


def load_encoder(path: str | Path) -> ImageEncoder:
    """The encoder saved in a `best.pt` checkpoint, in eval mode on the CPU (loaded with weights_only=True).
    A corrupt file raises `CorruptFileError` (a ValueError) naming the file and how to recover."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder checkpoint {path} not found (train the encoder first)")
    advice = (f"delete it (or rename it aside) and rerun the stage that trained it (`dvc repro`): without {path.name} "
              "the training starts again from scratch")
    try:
        state = read_checkpoint(path)
    except CorruptFileError as error:
        raise CorruptFileError(path, error.cause, advice) from error
    if state.get("format") != CHECKPOINT_FORMAT or "spec" not in state:
        raise ValueError(f"{path}: not an encoder checkpoint of format {CHECKPOINT_FORMAT}")
    spec = ModelSpec(**state["spec"])
    model = build_encoder(replace(spec, weights="none"), seed=0)  # the weights come from the checkpoint
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError, TypeError) as exc:  # a record missing from the weights, or other shapes
        raise CorruptFileError(path, f"its weights do not fit its model: {str(exc).splitlines()[0][:200]}",
                               advice) from exc
    return model.eval()
