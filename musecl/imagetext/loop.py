"""One training phase of an image-text model, as named steps: set up the optimiser (AdamW, optional linear warm-up),
the EMA teacher and feature queues (UrbanLN's distillation) and the kept IPSI rows; validate the phase's starting
model (epoch 0); then per epoch train on seeded batches, validate, keep the best epoch (lowest validation
contrastive loss) and write `last.pt`. A phase ends with the best epoch's weights in the model.

Everything random derives from (seed, phase, epoch, purpose) (:func:`generator`), so a run resumed from `last.pt`
replays an uninterrupted one; checkpoints hold no wall-clock numbers (`musecl.storage.save_torch`: same inputs, same
bytes). bf16 autocast runs on CUDA only (`precision: auto`).
"""
from __future__ import annotations

import copy
import hashlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from musecl.encoders.devices import autocast_context
from musecl.encoders.tracking import progress_iter
from musecl.imagetext.distill import FeatureQueue, ema_update, mu_at, msd_loss
from musecl.imagetext.ipsi import KeptRows
from musecl.imagetext.models import clamp_logit_scale, image_latent, info_of, optimizer_groups, text_latent
from musecl.imagetext.retrieval import retrieval_recall

CHECKPOINT_FORMAT = 1
LAST = "last.pt"
RECALL_KS = (1, 5, 10)


def generator(seed: int, *purpose: Any) -> torch.Generator:
    """A CPU generator seeded from (seed, purpose...): independent streams per phase, epoch and use."""
    digest = hashlib.blake2b(repr((int(seed), *purpose)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def digest(*values: Any) -> str:
    """A short content hash of tensors / arrays / strings (the identity of a run's inputs)."""
    h = hashlib.sha256()
    for v in values:
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().contiguous().numpy()
        if isinstance(v, np.ndarray):
            h.update(np.ascontiguousarray(v).tobytes())
            h.update(str(v.shape).encode())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()[:16]


@dataclass
class Phase:
    """One phase: a name (`urbanclip`, `short`, `long`), epochs, the token ids per image, and whether UrbanLN's
    distillation / kept IPSI rows apply."""

    name: str
    epochs: int
    ids: torch.Tensor
    distill: bool = False
    kept_rows: int = 0
    stretch: bool = False  # apply IPSI to the model before the phase


@dataclass
class Data:
    """The run's fixed inputs on the training device: tokens (N, T, C), training and validation rows."""

    tokens: torch.Tensor
    train_rows: np.ndarray
    val_rows: np.ndarray
    device: torch.device
    seed: int
    progress: bool = False
    checkpoint: Path | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)


def batch_size_for(requested: int, n_train: int) -> int:
    return max(2, min(requested, n_train))


def _losses(model, teacher, queue, tok: torch.Tensor, ids: torch.Tensor, mu: float) -> dict[str, torch.Tensor]:
    """The loss terms on one batch, the student's latents (`image`, `text`) and, when distilling, the teacher's
    (`teacher_image`, `teacher_text`, enqueued after the step)."""
    config = info_of(model).config
    if info_of(model).kind == "urbanclip":
        from open_clip import CoCaLoss

        out = model(tok, ids)
        terms = CoCaLoss(caption_loss_weight=config.caption_loss_weight, clip_loss_weight=config.clip_loss_weight,
                         pad_id=0)(out["image_features"], out["text_features"], out["logits"], out["labels"],
                                   out["logit_scale"], output_dict=True)
        return {"loss": terms["contrastive_loss"] + terms["caption_loss"], "contrastive": terms["contrastive_loss"],
                "caption": terms["caption_loss"], "image": out["image_features"], "text": out["text_features"]}
    img, txt = image_latent(model, tok), text_latent(model, ids)
    if teacher is None:
        terms = msd_loss(img, txt, img, txt, img[:0], txt[:0], model.logit_scale.exp(), 0.0)
        return {"loss": terms["loss"], "contrastive": terms["contrastive"], "image": img, "text": txt}
    with torch.no_grad():
        img_t, txt_t = image_latent(teacher, tok), text_latent(teacher, ids)
    q_img, q_txt = queue.features()
    terms = msd_loss(img, txt, img_t, txt_t, q_img, q_txt, model.logit_scale.exp(), mu)
    return {**terms, "image": img, "text": txt, "teacher_image": img_t, "teacher_text": txt_t}


@torch.no_grad()
def validate(model, data: Data, phase: Phase, batch_size: int, precision: str) -> dict[str, float]:
    """Validation losses (mean over near-equal chunks of at most `batch_size` rows, in order; UrbanCLIP's terms
    weighted as in training) and retrieval R@k on all validation images; NaN without validation rows."""
    rows = data.val_rows
    if len(rows) < 2:
        return {"val_contrastive": math.nan}
    model.eval()
    sums: dict[str, float] = {}
    images, texts = [], []
    for chunk in np.array_split(rows, math.ceil(len(rows) / batch_size)):
        index = torch.from_numpy(chunk)
        with autocast_context(data.device, precision):
            terms = _losses(model, None, None, data.tokens[index], phase.ids[index].to(data.device), 0.0)
        images.append(terms["image"].float().cpu())
        texts.append(terms["text"].float().cpu())
        for k in ("contrastive", "caption"):
            if k in terms:
                sums[f"val_{k}"] = sums.get(f"val_{k}", 0.0) + float(terms[k]) * len(chunk)
    out = {k: v / len(rows) for k, v in sums.items()}
    recall = retrieval_recall(torch.cat(images).numpy(), torch.cat(texts).numpy(), RECALL_KS)
    out.update({f"val_{k}": v for k, v in recall.items()})
    return out


def run_phase(model: torch.nn.Module, data: Data, phase: Phase, history: list[dict[str, Any]],
              on_epoch: Callable[[dict[str, Any]], None] | None = None,
              resume: dict[str, Any] | None = None) -> torch.nn.Module:
    """Train `model` (on `data.device`) through `phase`; rows are appended to `history`; returns the model holding
    the best epoch's weights. `resume`: this phase's `last.pt` contents (continue after its epoch)."""
    config = info_of(model).config
    precision = config.precision
    n_train = len(data.train_rows)
    batch = batch_size_for(config.batch_size, n_train)
    steps_per_epoch = max(1, n_train // batch)
    optimizer = torch.optim.AdamW(optimizer_groups(model, config.weight_decay), lr=config.lr)
    warmup = config.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    teacher = queue = None
    if phase.distill:
        queue = FeatureQueue(config.queue_size, config.embed_dim, batch, n_train, data.device)
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
    kept = KeptRows(model.positional_embedding, phase.kept_rows) if phase.kept_rows else None
    best = {"epoch": 0, "metric": math.inf}
    start = 1
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if teacher is not None:
            teacher.load_state_dict(resume["teacher"])
            queue.load_state_dict(resume["queue"])
        if kept is not None:
            kept.saved = resume["kept"].to(data.device)
        best, best_state, start = dict(resume["best"]), resume["best_state"], int(resume["epoch"]) + 1
    else:
        row = {"phase": phase.name, "epoch": 0, **validate(model, data, phase, batch, precision)}
        best_state = _record(model, row, best, history, on_epoch)
    step = (start - 1) * steps_per_epoch
    for epoch in range(start, phase.epochs + 1):
        model.train()
        order = data.train_rows[torch.randperm(n_train, generator=generator(data.seed, phase.name, epoch)).numpy()]
        sums: dict[str, float] = {}
        batches = [order[i * batch:(i + 1) * batch] for i in range(steps_per_epoch)]
        for rows in progress_iter(batches, data.progress, f"{phase.name} epoch {epoch}"):
            mu = mu_at(config.mu, step, steps_per_epoch) if epoch == 1 else config.mu
            if teacher is not None:
                ema_update(teacher, model, config.momentum)
            index = torch.from_numpy(rows)
            with autocast_context(data.device, precision):
                terms = _losses(model, teacher, queue, data.tokens[index], phase.ids[index].to(data.device), mu)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            scheduler.step()
            clamp_logit_scale(model)
            if kept is not None:
                kept.restore()
            if queue is not None:
                queue.enqueue(terms["teacher_image"], terms["teacher_text"])
            for k in ("loss", "contrastive", "caption", "distill"):
                if k in terms:
                    sums[k] = sums.get(k, 0.0) + float(terms[k].detach())
            step += 1
        row = {"phase": phase.name, "epoch": epoch, **{f"train_{k}": v / len(batches) for k, v in sums.items()},
               "mu": mu if phase.distill else math.nan, "lr": optimizer.param_groups[0]["lr"],
               "logit_scale": float(model.logit_scale.detach().exp()),
               **validate(model, data, phase, batch, precision)}
        best_state = _record(model, row, best, history, on_epoch, best_state)
        if data.checkpoint is not None:
            _save_last(data, phase, epoch, model, optimizer, scheduler, teacher, queue, kept, best, best_state,
                       history, finished=epoch == phase.epochs)
    if start > phase.epochs and data.checkpoint is not None and resume is None:
        _save_last(data, phase, 0, model, optimizer, scheduler, teacher, queue, kept, best, best_state, history, True)
    model.load_state_dict(best_state)
    mark_selected(history, phase.name, best["epoch"])
    return model


def mark_selected(history: list[dict[str, Any]], phase: str, epoch: int) -> None:
    """Flag the selected (best) epoch of `phase` in the history rows (`selected`)."""
    for row in history:
        if row["phase"] == phase:
            row["selected"] = int(row["epoch"]) == int(epoch)


def _record(model, row: dict[str, Any], best: dict[str, Any], history: list[dict[str, Any]], on_epoch,
            best_state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Append the row; update the best epoch (lowest validation contrastive loss; the last epoch without validation)
    and return the best epoch's weights."""
    history.append(row)
    if on_epoch is not None:
        on_epoch(row)
    metric = row.get("val_contrastive", math.nan)
    if math.isnan(metric) or metric < best["metric"] or best_state is None:
        best["epoch"], best["metric"] = int(row["epoch"]), float(metric) if not math.isnan(metric) else math.inf
        return {k: v.detach().clone() for k, v in model.state_dict().items()}
    return best_state


def _save_last(data: Data, phase: Phase, epoch: int, model, optimizer, scheduler, teacher, queue, kept, best,
               best_state, history, finished: bool) -> None:
    from musecl.storage import save_torch

    cpu = lambda state: {k: v.detach().cpu() for k, v in state.items()}  # noqa: E731
    save_torch({"format": CHECKPOINT_FORMAT, "fingerprint": data.fingerprint, "phase": phase.name, "epoch": epoch,
                "finished": finished, "stretched": info_of(model).stretched, "model": cpu(model.state_dict()),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "teacher": cpu(teacher.state_dict()) if teacher is not None else None,
                "queue": queue.state_dict() if queue is not None else None,
                "kept": kept.saved.cpu() if kept is not None else None, "best": dict(best),
                "best_state": cpu(best_state), "history": [dict(r) for r in history]}, data.checkpoint / LAST)


def load_last(data: Data) -> dict[str, Any] | None:
    """`last.pt` when it exists and was written for the same inputs and settings (else None, with a note). A corrupt
    `last.pt` is renamed aside (`last.pt.corrupt-N`, `musecl.storage.set_aside`) with a message on stderr naming it
    and the cause, and training restarts from scratch (None)."""
    from musecl.storage import CorruptFileError, load_torch, set_aside

    if data.checkpoint is None or not (data.checkpoint / LAST).is_file():
        return None
    path = data.checkpoint / LAST
    try:
        state = load_torch(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise CorruptFileError(path, f"holds a {type(state).__name__}, not a checkpoint dict")
    except CorruptFileError as error:
        aside = set_aside(path)
        print(f"{error}; renamed to {aside.name}; training restarts from scratch", file=sys.stderr)
        return None
    if state.get("format") == CHECKPOINT_FORMAT and state.get("fingerprint") == data.fingerprint:
        return state
    print(f"{path}: checkpoint of different inputs or settings; training from scratch")
    return None
