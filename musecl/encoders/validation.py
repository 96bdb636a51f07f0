"""What runs before each validation: BatchNorm recalibration (`recalibrate_batchnorm`, PreciseBN: re-estimate the
running statistics eval mode normalises with, on training images; `recalibrate_on_cache` for models that are not
trained here, e.g. the untrained-backbone baselines) and `embed_rows`, the eval-mode embeddings of cache rows that the
validation metrics (`musecl.encoders.losses.validation_metrics`) are computed from.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from musecl.encoders.data import ImageSource, row_chunks
from musecl.encoders.devices import autocast_context, resolve_device
from musecl.encoders.image_cache import ImageCache

if TYPE_CHECKING:
    from musecl.encoders.config import TrainConfig


def recalibrate_batchnorm(
    model: torch.nn.Module, source: ImageSource, rows: np.ndarray, config: TrainConfig, device: torch.device,
    channels_last: bool,
) -> None:
    """Re-estimate every BatchNorm layer's running mean/variance on the images `rows` (PreciseBN).

    Why: the running averages are what eval mode normalises with. From ImageNet weights (the authors' setting) they are
    sensible from the start; from a random init and a few epochs they lag far behind the weights (an untrained
    Inception-v3 gave embeddings with norms ~1e3 in eval mode), which makes validation and region embeddings
    meaningless. Training itself is unaffected: in train mode BatchNorm normalises with batch statistics. The frozen
    stages' BatchNorm layers (`ImageEncoder.frozen_modules`) keep their (ImageNet) statistics.
    """
    frozen = {id(m) for f in getattr(model, "frozen_modules", list)() for m in f.modules()}
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and id(m) not in frozen]
    if not norms or len(rows) == 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            for images in source.batches(row_chunks(rows, config.eval_batch_size)):
                with autocast_context(device, config.precision):
                    source.embed(model, images, channels_last)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)


def recalibrate_on_cache(model: torch.nn.Module, cache: ImageCache, rows: np.ndarray, config: TrainConfig) -> None:
    """`recalibrate_batchnorm` on the cached images `rows`, on the config's device (for models that are not trained
    here, e.g. the untrained-backbone baselines, whose BatchNorm running statistics are otherwise the init's 0/1)."""
    device = resolve_device(config.device)
    model.to(device)
    recalibrate_batchnorm(model, ImageSource(cache, device, config), np.sort(np.asarray(rows)), config, device, False)


def embed_rows(
    model: torch.nn.Module, source: ImageSource, rows: np.ndarray, config: TrainConfig, device: torch.device,
    channels_last: bool,
) -> torch.Tensor:
    """Embeddings (float32, on the device) of cache rows `rows`, in eval mode, without augmentation."""
    model.eval()
    out = []
    with torch.inference_mode():
        for images in source.batches(row_chunks(rows, config.eval_batch_size)):
            with autocast_context(device, config.precision):
                out.append(source.embed(model, images, channels_last).float())
    return torch.cat(out)
