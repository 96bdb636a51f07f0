"""Plain colour and edge statistics of images, averaged per region: the `pixel_stats` reference rows, the floor a
learned image encoder must beat (nothing here is learnt).

Every cached image (an `ImageCache` row, RGB uint8) becomes one fixed vector. With the defaults (`bins` 8, three edge
thresholds) it has 34 columns, in this order (:func:`feature_names` gives the names for any settings):

* 0-23, ``hist_r0`` … ``hist_r7``, ``hist_g0`` … ``hist_b7``: colour histograms: for each channel R, G, B the share
  of the image's pixels whose value v falls in bin ``v * bins // 256`` (8 equal bins of 32 values); each channel's 8
  shares sum to 1;
* 24-26, ``mean_r``, ``mean_g``, ``mean_b``: channel means on the [0, 1] scale (v / 255);
* 27-29, ``std_r``, ``std_g``, ``std_b``: channel standard deviations over the image's pixels (ddof 0), same scale;
* 30-32, ``edge_0.025``, ``edge_0.05``, ``edge_0.1``: edge density: the share of the interior pixels (the border rows
  and columns have no full 3 x 3 neighbourhood and are left out) whose grey gradient magnitude exceeds the threshold;
* 33, ``grad_mean``: the mean grey gradient magnitude over the interior pixels.

Grey is the ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B on the [0, 1] scale. The gradient is the Sobel operator
divided by 8 (torch ``conv2d`` with the two 3 x 3 kernels), i.e. a smoothed central difference per pixel: a step edge of
contrast c (from grey g to g + c) gives magnitude c / 2 on the two pixels beside it, so the thresholds 0.025 / 0.05 /
0.1 count the pixels on steps of at least 5 / 10 / 20 % of the grey range (weak, medium, strong edges). The thresholds
were fixed before any result was seen and are not tuned.

A region's vector is the mean over its images and regions without an image of the modality are filled by
`encoders.missing_regions`, both through the helpers every learned encoder uses
(:func:`musecl.encoders.embed.region_means`, :func:`musecl.encoders.embed.fill_missing`), so a pixel-statistics row
and an encoder row differ only in the per-image vector. Images are read from the cache's memory map in chunks of at
most `chunk_pixels` pixels, so memory stays bounded whatever the cache size; every step is array arithmetic on the
whole chunk, and the result does not depend on the chunk size. Features are float32 and deterministic (no random
choice anywhere).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping

import numpy as np
import pandas as pd
import torch

from musecl.encoders.embed import fill_missing, region_means
from musecl.encoders.image_cache import REGION_ID, ImageCache
from musecl.encoders.tracking import progress_iter

CHANNELS = ("r", "g", "b")
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
CHUNK_PIXELS = 1 << 21  # pixels per chunk read from the memory map (~2 M: 512 images of 64 x 64, 23 of 299 x 299)


@dataclass(frozen=True)
class PixelStatsConfig:
    """The feature settings (params.yaml `baselines.runs.<run>.features`; see the module docstring)."""

    bins: int = 8  # equal-width bins per colour channel over [0, 256)
    edge_thresholds: tuple[float, ...] = (0.025, 0.05, 0.1)  # grey gradient magnitudes (Sobel / 8) counted as edges

    def __post_init__(self) -> None:
        if not isinstance(self.bins, (int, np.integer)) or isinstance(self.bins, bool) or not 1 <= self.bins <= 256:
            raise ValueError(f"pixel_stats features.bins must be an integer in 1..256, got {self.bins!r}")
        thresholds = tuple(self.edge_thresholds)
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) and np.isfinite(t) and t >= 0
                   for t in thresholds):
            raise ValueError(f"pixel_stats features.edge_thresholds must be finite numbers >= 0, got {thresholds!r}")
        if len(set(thresholds)) != len(thresholds):
            raise ValueError(f"pixel_stats features.edge_thresholds has duplicates: {thresholds!r}")
        object.__setattr__(self, "edge_thresholds", tuple(float(t) for t in thresholds))

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any] | None, where: str = "features") -> "PixelStatsConfig":
        """From a params.yaml mapping; an unknown key is an error naming `where` and the known keys."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"params.yaml: {where} has unknown key(s) {unknown}; known: "
                             f"{sorted(cls.__dataclass_fields__)}")
        if "edge_thresholds" in settings:
            settings["edge_thresholds"] = tuple(settings["edge_thresholds"] or ())
        return cls(**settings)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["edge_thresholds"] = list(self.edge_thresholds)
        return out

    @property
    def dim(self) -> int:
        return len(feature_names(self))


def feature_names(config: PixelStatsConfig = PixelStatsConfig()) -> list[str]:
    """The name of every feature column, in order (the module docstring describes each)."""
    return ([f"hist_{c}{k}" for c in CHANNELS for k in range(config.bins)]
            + [f"mean_{c}" for c in CHANNELS] + [f"std_{c}" for c in CHANNELS]
            + [f"edge_{t:g}" for t in config.edge_thresholds] + ["grad_mean"])


def _sobel_kernels() -> torch.Tensor:
    """(2, 1, 3, 3) Sobel x and y kernels divided by 8 (a smoothed central difference per pixel)."""
    sx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
    return torch.stack([sx, sx.T])[:, None]


def gradient_magnitude(images: np.ndarray) -> np.ndarray:
    """(n, H-2, W-2) float32 grey gradient magnitude (Sobel / 8) of (n, H, W, 3) uint8 images, interior pixels only."""
    images = np.asarray(images)
    n, height, width = images.shape[:3]
    if height < 3 or width < 3:
        raise ValueError(f"images of {height} x {width} px have no interior pixel: edges need at least 3 x 3")
    luma = torch.tensor(LUMA, dtype=torch.float32) / 255.0
    with torch.inference_mode():
        grey = torch.from_numpy(images.astype(np.float32)) @ luma  # (n, H, W) in [0, 1]
        grads = torch.nn.functional.conv2d(grey[:, None], _sobel_kernels())  # (n, 2, H-2, W-2)
        return torch.linalg.vector_norm(grads, dim=1).numpy()


def image_features(images: np.ndarray, config: PixelStatsConfig = PixelStatsConfig()) -> np.ndarray:
    """(n, dim) float32 features of (n, H, W, 3) uint8 images, one chunk in memory (columns: :func:`feature_names`)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected (n, H, W, 3) uint8 images, got {images.shape} {images.dtype}")
    n, height, width = images.shape[:3]
    pixels = height * width
    if n == 0:
        return np.zeros((0, config.dim), dtype=np.float32)
    # histograms: one bincount over (image, channel, bin) codes
    bins = (images.astype(np.int32) * config.bins) >> 8  # (n, H, W, 3) in 0..bins-1
    offsets = (np.arange(n, dtype=np.int64)[:, None] * 3 + np.arange(3)) * config.bins  # (n, 3)
    codes = bins.reshape(n, pixels, 3) + offsets[:, None, :]
    hist = np.bincount(codes.ravel(), minlength=n * 3 * config.bins).reshape(n, 3 * config.bins) / pixels
    values = images.reshape(n, pixels, 3).astype(np.float64)  # integers: exact sums, a flat channel has std 0
    mean, std = values.mean(axis=1) / 255.0, values.std(axis=1) / 255.0
    magnitude = gradient_magnitude(images).reshape(n, -1)
    edges = [(magnitude > t).mean(axis=1) for t in config.edge_thresholds]
    grad_mean = magnitude.astype(np.float64).mean(axis=1)
    return np.column_stack([hist, mean, std, *edges, grad_mean]).astype(np.float32)


def cache_features(cache: ImageCache, config: PixelStatsConfig = PixelStatsConfig(), chunk_pixels: int = CHUNK_PIXELS,
                   progress: bool = False) -> np.ndarray:
    """(n_images, dim) float32 features of every cached image, in cache order, read in chunks of <= `chunk_pixels`."""
    height, width = cache.image_shape
    step = max(1, int(chunk_pixels) // (height * width))
    out = np.empty((len(cache), config.dim), dtype=np.float32)
    starts = range(0, len(cache), step)
    starts = progress_iter(starts, progress, "pixel statistics", "chunk")
    for start in starts:
        out[start : start + step] = image_features(np.asarray(cache.images[start : start + step]), config)
    return out


def region_pixel_stats(
    cache: ImageCache,
    region_ids: pd.Index | list[str] | np.ndarray,
    config: PixelStatsConfig = PixelStatsConfig(),
    missing: Literal["neighbours", "mean", "zeros", "error"] = "neighbours",
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.Series]:
    """One row per region (index region_id, columns e000… in :func:`feature_names` order): the mean of its images'
    features, regions without an image filled by the `missing` policy (params.yaml `encoders.missing_regions`).

    Returns (table, n_images per region), as :func:`musecl.encoders.embed.region_embeddings` does.
    """
    from musecl.embeddings import to_frame

    region_ids = pd.Index(np.asarray(region_ids, dtype=object), name=REGION_ID)
    features = cache_features(cache, config, progress=progress)
    means, counts = region_means(features, cache.index[REGION_ID].to_numpy(), region_ids)
    means = fill_missing(means, counts, region_ids, missing)
    return to_frame(region_ids, means), pd.Series(counts, index=region_ids, name="n_images")
