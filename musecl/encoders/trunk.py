"""Cheap training with a frozen trunk: the output of an encoder's frozen stages (`ModelSpec.frozen_stages`), computed
once per image and per augmentation variant, so each training step runs only the trainable top stages and the head.

With ImageNet weights, the early stages of a backbone are generic edge/texture detectors that a few thousand city
images cannot improve; freezing them (BatchNorm included) makes their output a fixed function of the (augmented)
image. `TrunkFeatures` holds that output for every image the run touches and every variant the augmentation can draw
(`augment.variants`: 4 rotations for tiles, 2 flips for street view, 8 for both), on the training device. The trainer
draws the augmentation exactly as the pixel path does (`augment.draw_augmentation`) and reads variant
`variant_index(flip, turns)` of each image, so a step computes what the uncached model would compute on the augmented
pixels (up to floating-point summation order), at the cost of the top stages only. Full fine-tuning
(`frozen_stages: 0`) trains on pixels as before and is the `paper` setting on a GPU.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from musecl.encoders.augment import apply_augmentation, variants
from musecl.encoders.data import ImageSource, row_chunks, to_input
from musecl.encoders.devices import autocast_context

if TYPE_CHECKING:
    from musecl.encoders.models import ImageEncoder


class TrunkFeatures:
    """Frozen-trunk outputs of cache rows `rows` (sorted, unique) × augmentation variants, on `device`.

    `batches` has `ImageSource.batches`' interface (lists of (b, roles) cache-row arrays) and yields trunk outputs
    (role-major) of the variants given, or of the unaugmented images; `embed` runs the model's trainable top on them.
    """

    is_trunk = True

    def __init__(self, model: "ImageEncoder", source: ImageSource, rows: np.ndarray, augment: str,
                 batch_size: int, device: torch.device, precision: str = "fp32", progress: bool = False) -> None:
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        self.variants = variants(augment)
        self.device = device
        was_training = model.training
        model.eval()
        chunks = row_chunks(self.rows, batch_size)
        bar = _bar(len(chunks) * len(self.variants), progress)
        store: torch.Tensor | None = None
        with torch.inference_mode():
            start = 0
            for images in source.batches(chunks):
                x = to_input(images, False)
                n = x.shape[0]
                for v, (flip, turns) in enumerate(self.variants):
                    xv = apply_augmentation(x, torch.full((n,), flip), torch.full((n,), turns, dtype=torch.long))
                    with autocast_context(device, precision):
                        h = model.trunk(xv).float()
                    if store is None:
                        store = torch.empty((len(self.rows), len(self.variants), *h.shape[1:]), dtype=torch.float32,
                                            device=device)
                    store[start : start + n, v] = h
                    if bar is not None:
                        bar.update(1)
                start += n
        if bar is not None:
            bar.close()
        model.train(was_training)
        assert store is not None
        self.store = store

    @property
    def nbytes(self) -> int:
        return self.store.numel() * self.store.element_size()

    def positions(self, cache_rows: np.ndarray) -> torch.Tensor:
        pos = np.searchsorted(self.rows, cache_rows)
        if np.any(pos >= len(self.rows)) or np.any(self.rows[np.minimum(pos, len(self.rows) - 1)] != cache_rows):
            raise KeyError("trunk features were not computed for some requested cache rows")
        return torch.from_numpy(pos).to(self.device)

    def take(self, cache_rows: np.ndarray, variant: torch.Tensor | None = None) -> torch.Tensor:
        """Trunk outputs of `cache_rows` (flat), of the given variant per row (None: the unaugmented image)."""
        pos = self.positions(np.asarray(cache_rows).ravel())
        v = torch.zeros_like(pos) if variant is None else variant.to(self.device)
        return self.store[pos, v]

    def batches(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        for rows in batches:
            yield self.take(rows.T.ravel())

    @staticmethod
    def embed(model: "ImageEncoder", h: torch.Tensor, channels_last: bool = False, project: bool = False) -> torch.Tensor:
        return model(h, project=project, from_trunk=True)


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from musecl.encoders.tracking import progress_bar

    return progress_bar(total, 0, True, "frozen trunk")
