"""Watching a training run: per-epoch metrics to DVCLive (`open_live`, `log_epoch`; a resumed run replays its history
so each epoch appears once) and a tqdm progress bar over all steps (`progress_bar`). Both are optional: dvclive and
tqdm are imported lazily and, when they are not installed (a bare GPU machine), these return None and log nothing.
(Named `tracking` rather than `logging` so that it can never be mistaken for the standard library's module.)
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PROGRESS_INTERVAL_S = 2.0  # seconds between refreshes: each one travels from the notebook kernel to the terminal


def open_live(log_dir: str | None, history: list[dict[str, Any]]):
    """A fresh DVCLive run replaying `history` (so a resumed run's curves have each epoch exactly once)."""
    if log_dir is None:
        return None
    try:
        from dvclive import Live
    except ImportError:
        return None
    live = Live(str(log_dir), resume=False, report=None, save_dvc_exp=False, dvcyaml=False)
    for row in history:
        log_epoch(live, row)
    return live


def close_live(live) -> None:
    """`live.end()`, tolerating DVCLive's race between processes of one DVC repository.

    Inside a DVC repository every `next_step` writes `.dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED` (a signal for DVC's VS
    Code extension) and `end` removes it again, checking first that it exists. Two runs ending at the same moment (the
    `seeds` stage's worker processes, `training_seeds.n_jobs` > 1) can both see the file and one of them then fails to
    remove it. That removal is the last thing `end` does, so the run's metrics and plots are already written; the
    missing signal file is ignored, any other error is raised.
    """
    if live is None:
        return
    try:
        live.end()
    except FileNotFoundError as error:
        if Path(str(error.filename or "")).name != "DVCLIVE_STEP_COMPLETED":
            raise


def log_epoch(live, row: dict[str, Any]) -> None:
    """One history row as DVCLive step `epoch`: train/val loss and accuracy and the learning rate (NaNs skipped)."""
    if live is None:
        return
    live.step = int(row["epoch"])
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            live.log_metric(key.replace("_", "/", 1) if key != "lr" else "lr", float(value))
    live.next_step()


def progress_bar(total: int, initial: int, enabled: bool, desc: str):
    """A tqdm bar over training steps, or None when disabled or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    # a text bar (not tqdm.auto's widget): `musecl.notebooks` streams it live to the terminal and stores its final line
    return tqdm(total=total, initial=initial, desc=desc, unit="step", mininterval=PROGRESS_INTERVAL_S)


def progress_iter(items, enabled: bool, desc: str, unit: str = "batch"):
    """`items` wrapped in a tqdm text bar when enabled and tqdm is installed, else `items`."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit=unit, mininterval=PROGRESS_INTERVAL_S)
