"""The trainer's data path: pair/triplet tables -> cache rows (`sample_rows`), the seeded batch order of each epoch
(`epoch_batches`), and `ImageSource`, which delivers batches of uint8 images on the device, either from a copy of the
whole cache resident in device memory or through a DataLoader over the cache's memory map (pinned memory,
non-blocking copies). Images stay uint8 until they are on the device; `to_input` turns them into float NCHW there.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd
import torch

from musecl.encoders.image_cache import IMAGES_FILE, ImageCache

if TYPE_CHECKING:
    from musecl.encoders.config import TrainConfig

ROLES = ("anchor", "positive", "negative")


def sample_rows(cache: ImageCache, table: pd.DataFrame | np.ndarray, name: str = "samples") -> np.ndarray:
    """(n, 2 or 3) int64 cache rows of a pair/triplet table (image-id columns `<role>_image`, or int columns `<role>`)."""
    if isinstance(table, np.ndarray):
        rows = np.asarray(table, dtype=np.int64)
    elif {"anchor_image", "positive_image"} <= set(table.columns):
        roles = [r for r in ROLES if f"{r}_image" in table.columns]
        rows = np.stack([cache.rows(table[f"{r}_image"].to_numpy(), what=f"{name}: {r}_image") for r in roles], axis=1)
    elif {"anchor", "positive"} <= set(table.columns):
        roles = [r for r in ROLES if r in table.columns]
        rows = table[roles].to_numpy(dtype=np.int64)
    else:
        raise ValueError(
            f"{name}: expected columns anchor_image, positive_image[, negative_image] (image ids) or anchor, positive"
            f"[, negative] (cache rows); got {list(table.columns)}"
        )
    if rows.ndim != 2 or rows.shape[1] not in (2, 3) or len(rows) == 0:
        raise ValueError(f"{name}: expected a non-empty (n, 2|3) table of cache rows, got shape {rows.shape}")
    if rows.min() < 0 or rows.max() >= len(cache):
        raise ValueError(f"{name}: cache rows must lie in [0, {len(cache)}), got [{rows.min()}, {rows.max()}]")
    return rows


def epoch_batches(n: int, config: TrainConfig, epoch: int) -> list[np.ndarray]:
    """Sample positions of each batch of `epoch`, drawn from (seed, epoch) only: resuming replays the same order."""
    order = np.random.default_rng([config.seed, epoch, 1]).permutation(n)
    if config.samples_per_epoch is not None:
        order = order[: config.samples_per_epoch]
    return [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]


def row_chunks(rows: np.ndarray, size: int) -> list[np.ndarray]:
    """Single images `rows` in batches of `size`, shaped (b, 1) like a one-role sample table (for evaluation)."""
    return [rows[i : i + size].reshape(-1, 1) for i in range(0, len(rows), size)]


class _BatchImages(torch.utils.data.Dataset):
    """Batch i = the uint8 images of batches[i] (role-major: all anchors, all positives, all negatives)."""

    def __init__(self, cache_root: Path, batches: list[np.ndarray]) -> None:
        self.cache_root = cache_root
        self.batches = batches
        self._images: np.ndarray | None = None  # opened lazily, once per worker process

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._images is None:
            self._images = np.load(self.cache_root / IMAGES_FILE, mmap_mode="r")
        return torch.from_numpy(np.ascontiguousarray(self._images[self.batches[i].T.ravel()]))


class ImageSource:
    """Delivers batches of uint8 images on the device, from device-resident memory or a DataLoader over the memmap."""

    def __init__(self, cache: ImageCache, device: torch.device, config: TrainConfig) -> None:
        self.cache, self.device, self.config = cache, device, config
        nbytes = cache.images.nbytes
        if config.data_on_device == "yes":
            resident = True
        elif config.data_on_device == "no":
            resident = False
        elif device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            resident = nbytes < 0.3 * free
        else:
            resident = config.num_workers == 0 and nbytes < 4 * 2**30
        self.store = _upload(cache.images, device) if resident else None

    @property
    def resident(self) -> bool:
        return self.store is not None

    @staticmethod
    def embed(model: torch.nn.Module, images: torch.Tensor, channels_last: bool, project: bool = False) -> torch.Tensor:
        """The model's output for a batch this source delivered (uint8 images; `TrunkFeatures` delivers trunk outputs)."""
        return model(to_input(images, channels_last), project=project)

    def batches(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        """For each (b, roles) array of cache rows, the (b * roles, H, W, 3) uint8 images, role-major, on the device."""
        if self.store is not None:
            for rows in batches:
                yield self.store[torch.from_numpy(rows.T.ravel()).to(self.device)]
            return
        workers = self.config.num_workers
        loader = torch.utils.data.DataLoader(
            _BatchImages(self.cache.root, batches),
            batch_size=None,
            shuffle=False,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers > 0 else None,
        )
        for images in loader:
            yield images.to(self.device, non_blocking=True)


def _upload(images: np.ndarray, device: torch.device, chunk: int = 4096) -> torch.Tensor:
    """Copy a (memory-mapped) uint8 array into a tensor on `device`, chunk by chunk to bound host memory."""
    store = torch.empty(images.shape, dtype=torch.uint8, device=device)
    for start in range(0, len(images), chunk):
        store[start : start + chunk] = torch.from_numpy(np.array(images[start : start + chunk])).to(device)
    return store


def to_input(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]; the NHWC source is channels_last already."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    return x if channels_last else x.contiguous()
