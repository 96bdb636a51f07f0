"""The training loop behind `train_encoder`, as named steps: check the inputs, set up the device, build (or resume) the
model, optimiser and scheduler, validate the untrained model (epoch 0), then per epoch train on the seeded batches
(`train_batches`), validate (`evaluate_epoch`), record the history row and write the checkpoints. Everything random
derives from (`config.seed`, epoch, purpose[, rank]): the initialisation, the batch order (`data.epoch_batches`), the
augmentation generator and the BatchNorm recalibration images, so a resumed run replays an uninterrupted one.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from musecl.encoders.augment import augment, draw_augmentation, variant_index
from musecl.encoders.checkpoints import (
    BEST,
    LAST,
    load_encoder,
    restored_history,
    resume_state,
    run_fingerprint,
    save_best,
    save_last,
)
from musecl.encoders.config import TrainConfig, TrainResult
from musecl.encoders.data import ImageSource, epoch_batches, sample_rows, to_input
from musecl.encoders.devices import (
    Dist,
    autocast_context,
    close_distributed,
    init_distributed,
    model_for_step,
    training_device,
)
from musecl.encoders.image_cache import ImageCache
from musecl.encoders.losses import ntxent_loss, triplet_loss, validation_metrics
from musecl.encoders.models import build_encoder, check_input_size
from musecl.encoders.tracking import close_live, log_epoch, open_live, progress_bar
from musecl.encoders.trunk import TrunkFeatures, trunk_features
from musecl.encoders.validation import embed_rows, recalibrate_batchnorm


@dataclass
class _Run:
    """The fixed inputs of one `train_encoder` call on this process."""

    cache: ImageCache
    config: TrainConfig
    out_dir: Path
    dctx: Dist
    device: torch.device
    channels_last: bool
    train_rows: np.ndarray
    val_rows: np.ndarray | None


@dataclass
class _State:
    """What changes while training (and what `last.pt` holds): model, optimiser, scheduler, history, best epoch."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    history: list[dict[str, Any]]
    best: dict[str, Any]
    start_epoch: int


def train_encoder(
    cache: ImageCache,
    train_samples: pd.DataFrame | np.ndarray,
    val_samples: pd.DataFrame | np.ndarray | None,
    config: TrainConfig,
    out_dir: str | Path,
) -> TrainResult:
    """Train an encoder on pairs/triplets of cache images; checkpoints and resume state go to `out_dir`.

    Returns the best epoch's model (by `config.select_by`; the last epoch when there is no validation table).
    Calling again with the same inputs resumes from `out_dir/last.pt` (or returns at once when it is complete);
    a checkpoint from different inputs or settings is not resumed but replaced.
    """
    out_dir = Path(out_dir)
    dctx = init_distributed(config.device)
    try:
        train_rows, val_rows = _checked_rows(cache, train_samples, val_samples, config)
        with training_device(config, dctx) as (device, channels_last):
            if config.loss.kind == "ntxent":
                train_rows = train_rows[:, :2]  # NT-Xent takes its negatives from the batch
            run = _Run(cache, config, out_dir, dctx, device, channels_last, train_rows, val_rows)
            return _train(run)
    finally:
        close_distributed(dctx)


def _checked_rows(
    cache: ImageCache, train_samples, val_samples, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """Training and validation cache rows, after checking that the loss, model and augmentation suit the data."""
    train_rows = sample_rows(cache, train_samples, "training samples")
    val_rows = sample_rows(cache, val_samples, "validation samples") if val_samples is not None else None
    if config.loss.kind == "triplet" and train_rows.shape[1] != 3:
        raise ValueError("the triplet loss needs a negative: training table has only anchor and positive")
    check_input_size(config.model, *cache.image_shape)
    if "rot90" in config.augment and cache.image_shape[0] != cache.image_shape[1]:
        raise ValueError(f"rot90 augmentation needs square images; the cache holds {cache.image_shape} images")
    return train_rows, val_rows


def _initial_state(run: _Run, fingerprint: dict[str, Any]) -> _State:
    """A freshly initialised model (from the seed) with its optimiser and scheduler, resumed from `last.pt` when that
    was written for the same inputs and settings (and it and `best.pt` can be read; a corrupt one is set aside)."""
    config = run.config
    model = build_encoder(config.model, seed=config.seed)
    if run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(run.device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, amsgrad=config.amsgrad
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma)
    state = _State(model, optimizer, scheduler, [], {"epoch": 0, "metric": float("nan")}, 1)
    # the main process reads first and sets a corrupt checkpoint aside; the others then read what it left
    if not run.dctx.main:
        run.dctx.barrier()
    saved = resume_state(run.out_dir / LAST, fingerprint, announce=run.dctx.main)
    if run.dctx.main:
        run.dctx.barrier()
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state.history, state.best = restored_history(saved["history"]), saved["best"]
        state.start_epoch = int(saved["epoch"]) + 1
    return state


def _train(run: _Run) -> TrainResult:
    config, dctx = run.config, run.dctx
    fingerprint = run_fingerprint(config, run.cache, run.train_rows, run.val_rows, dctx.world)
    state = _initial_state(run, fingerprint)
    resumed_from = state.start_epoch - 1
    step_model = model_for_step(state.model, config, dctx, run.device)
    source = ImageSource(run.cache, run.device, config)
    if config.model.frozen_stages and config.trunk_cache:
        # every cached image (not only this run's triplets): runs on other triplets of the same cache share it
        source = trunk_features(state.model, source, config.augment, config.eval_batch_size, run.device,
                                config.precision, config.progress and dctx.main, disk_dir=config.trunk_dir)
    live = open_live(config.log_dir, state.history) if dctx.main else None
    train_images = np.unique(run.train_rows)

    if state.start_epoch == 1:
        val_loss, val_acc = evaluate_epoch(run, state.model, source, train_images, 0)  # the baseline to beat
        state.history.append({"epoch": 0, "train_loss": float("nan"), "train_accuracy": float("nan"),
                              "val_loss": val_loss, "val_accuracy": val_acc, "lr": float("nan"), "seconds": 0.0,
                              "train_images_per_s": float("nan")})
        log_epoch(live, state.history[-1])

    n_batches = len(epoch_batches(len(run.train_rows), config, 1)) // dctx.world
    if n_batches == 0:
        raise ValueError(f"fewer training batches than processes ({dctx.world}); lower batch_size or add samples")
    stop_epoch = config.epochs
    if config.max_epochs_this_run is not None:
        stop_epoch = min(stop_epoch, state.start_epoch - 1 + config.max_epochs_this_run)
    done_early = _stopped_early(state.history, state.best, config)
    bar = progress_bar(config.epochs * n_batches, (state.start_epoch - 1) * n_batches, config.progress and dctx.main,
                       f"{config.model.backbone} {run.cache.meta.get('modality', '')}".strip())
    try:
        for epoch in range(state.start_epoch, stop_epoch + 1):
            if done_early:
                break
            trained = _train_epoch(run, state, step_model, source, n_batches, epoch, bar)
            val_loss, val_acc = evaluate_epoch(run, state.model, source, train_images, epoch)
            row = {"epoch": epoch, "train_loss": trained.loss, "train_accuracy": trained.accuracy, "val_loss": val_loss,
                   "val_accuracy": val_acc, "lr": trained.lr, "seconds": trained.seconds,
                   "train_images_per_s": trained.images_per_s}
            improved = _record_epoch(run, state, row)
            if dctx.main:
                _save_epoch(run, state, fingerprint, epoch, improved)
                log_epoch(live, row)
            dctx.barrier()
            done_early = _stopped_early(state.history, state.best, config)
    finally:
        if bar is not None:
            bar.close()
        close_live(live)
    dctx.barrier()
    final = load_encoder(run.out_dir / BEST)
    return TrainResult(final, pd.DataFrame(state.history), int(state.best["epoch"]), float(state.best["metric"]),
                       run.out_dir, resumed_from, dctx.world)


class _EpochTraining(NamedTuple):
    """The training part of an epoch's history row (loss and accuracy over all processes)."""

    loss: float
    accuracy: float
    lr: float
    seconds: float
    images_per_s: float


def _train_epoch(run: _Run, state: _State, step_model: torch.nn.Module, source: ImageSource, n_batches: int,
                 epoch: int, bar) -> _EpochTraining:
    """One epoch of training on this process's share of the seeded batches, then the scheduler step."""
    config, dctx = run.config, run.dctx
    state.model.train()
    batches = epoch_batches(len(run.train_rows), config, epoch)
    batches = batches[: n_batches * dctx.world][dctx.rank :: dctx.world]
    seed = int(np.random.SeedSequence([config.seed, epoch, 2, dctx.rank]).generate_state(1)[0])
    generator = torch.Generator().manual_seed(seed)
    lr = state.optimizer.param_groups[0]["lr"]
    t0 = time.perf_counter()
    loss_sum, correct, count = train_batches(step_model, source, run.train_rows, batches, config, run.device,
                                             run.channels_last, state.optimizer, generator, bar)
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    seconds = time.perf_counter() - t0
    loss_sum, correct, count, images = dctx.all_sum(
        [loss_sum, correct, float(count), float(count * run.train_rows.shape[1])], run.device
    )
    state.scheduler.step()
    return _EpochTraining(loss_sum / count, correct / count, lr, seconds, images / seconds)


def evaluate_epoch(run: _Run, model: torch.nn.Module, source: ImageSource, train_images: np.ndarray,
                   epoch: int) -> tuple[float, float]:
    """(val loss, val accuracy) after `epoch`, on every process alike: BatchNorm statistics re-estimated on the same
    seeded training images everywhere (so all replicas end identical), then each distinct validation image embedded
    once and the samples' distances compared (for RS, 2,000 triplets need only the few hundred tiles)."""
    config = run.config
    if config.bn_recalibration:
        pick = np.random.default_rng([config.seed, epoch, 3]).permutation(train_images)[: config.bn_recalibration]
        recalibrate_batchnorm(model, source, np.sort(pick), config, run.device, run.channels_last)
    if run.val_rows is None:
        return float("nan"), float("nan")
    rows = run.val_rows if config.val_samples is None else run.val_rows[: config.val_samples]
    unique, inverse = np.unique(rows, return_inverse=True)
    z = embed_rows(model, source, unique, config, run.device, run.channels_last)
    return validation_metrics(z[torch.from_numpy(inverse.reshape(rows.shape)).to(z.device)], config)


def _record_epoch(run: _Run, state: _State, row: dict[str, Any]) -> bool:
    """Append the epoch's row to the history and update the best epoch; True when this epoch is the new best."""
    state.history.append(row)
    metric = row["val_accuracy"] if run.config.select_by == "val_accuracy" else -row["val_loss"]
    improved = run.val_rows is None or math.isnan(state.best["metric"]) or metric > state.best["metric"]
    if improved:
        state.best = {"epoch": row["epoch"], "metric": float(metric)}
    return improved


def _save_epoch(run: _Run, state: _State, fingerprint: dict[str, Any], epoch: int, improved: bool) -> None:
    """`best.pt` when the epoch improved, and `last.pt` (the resume state) after every epoch."""
    model_state = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
    if improved:
        save_best(run.out_dir / BEST, run.config, model_state, epoch)
    save_last(run.out_dir / LAST, fingerprint, epoch, model_state, state.optimizer, state.scheduler, state.history,
              state.best)


def _stopped_early(history: list[dict[str, Any]], best: dict[str, Any], config: TrainConfig) -> bool:
    if config.patience is None or not history:
        return False
    return int(history[-1]["epoch"]) - int(best["epoch"]) >= config.patience


def train_batches(
    model: torch.nn.Module,
    source: ImageSource | TrunkFeatures,
    rows: np.ndarray,
    batches: list[np.ndarray],
    config: TrainConfig,
    device: torch.device,
    channels_last: bool,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    bar=None,
) -> tuple[float, float, int]:
    """One training pass; returns (sum of batch-mean losses weighted by batch size, number correct, number of samples).
    Anchor, positive (and negative) images go through the network as one batch."""
    loss_sum, correct_sum, count = 0.0, 0.0, 0
    ntxent = config.loss.kind == "ntxent"
    batch_rows = [rows[b] for b in batches]
    trunk = isinstance(source, TrunkFeatures)
    inputs = batch_rows if trunk else source.batches(batch_rows)
    for positions, images in zip(batch_rows, inputs):
        b = len(positions)
        if trunk:  # the cached trunk output of the drawn augmentation variant of each image (role-major)
            flat, variant = positions.T.ravel(), None
            if config.augment != "none":
                flip, turns = draw_augmentation(len(flat), config.augment, generator)
                variant = variant_index(flip, turns, config.augment)
            x = source.take(flat, variant, config.augment)
        else:
            x = to_input(images, channels_last)
            if config.augment != "none":
                x = augment(x, config.augment, generator)
                if channels_last:  # rotations are strided views; give the convolutions the layout they expect
                    x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, config.precision):
            z = model(x, project=ntxent, from_trunk=trunk)
        z = z.float()
        if ntxent:
            loss, correct = ntxent_loss(z[:b], z[b:], config.loss.temperature)
        else:
            loss, correct = triplet_loss(z[:b], z[b : 2 * b], z[2 * b :], config.loss.margin, config.loss.norm_penalty)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * b
        correct_sum += float(correct)
        count += b
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
    return loss_sum, correct_sum, count
