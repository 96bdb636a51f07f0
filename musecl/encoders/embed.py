"""Region embeddings from a trained encoder: remote sensing = mean over the region's tiles (MuseCL has one per region),
street view = mean over the region's images (the aggregation the paper's released code leaves out; the mean is the
Urban2Vec-style choice). Regions without any image of the modality get the mean of their nearest H3 rings that have
one (or zeros / the global mean, by parameter), and are counted, never silently filled.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch

from musecl.encoders.image_cache import REGION_ID, ImageCache
from musecl.encoders.models import ImageEncoder
from musecl.encoders.data import to_input
from musecl.encoders.devices import autocast_context, resolve_device
from musecl.encoders.tracking import progress_iter

MISSING_POLICIES = ("neighbours", "mean", "zeros", "error")


def embed_images(
    model: ImageEncoder,
    cache: ImageCache,
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = False,
) -> np.ndarray:
    """Embedding of every cached image, (n_images, dim) float32, in cache order (model in eval mode, no augmentation).
    A model with a frozen trunk that this process already computed on `cache` runs only its top on it."""
    from musecl.encoders.trunk import CPU_TRUNK_CHUNK, channels_last_modules, memoized_trunk

    dev = resolve_device(device)
    model = model.eval().to(dev)
    trunk = memoized_trunk(model, cache, precision, dev)  # the frozen trunk the trainer computed, when it did
    if trunk is None and dev.type == "cpu":
        batch_size = min(batch_size, CPU_TRUNK_CHUNK)  # small channels_last batches run fastest on a CPU (trunk.py)
    out = np.empty((len(cache), model.spec.embedding_dim), dtype=np.float32)
    starts = range(0, len(cache), batch_size)
    starts = progress_iter(starts, progress, "embedding images", "batch")
    with torch.inference_mode(), channels_last_modules([model] if trunk is None else []):
        for start in starts:
            if trunk is not None:
                rows = np.arange(start, min(start + batch_size, len(cache)))
                with autocast_context(dev, precision):
                    z = model(trunk.take(rows), from_trunk=True)
                out[start : start + len(rows)] = z.float().cpu().numpy()
                continue
            chunk = torch.from_numpy(np.array(cache.images[start : start + batch_size]))
            x = to_input(chunk.to(dev, non_blocking=True), True).contiguous(memory_format=torch.channels_last)
            with autocast_context(dev, precision):
                z = model(x)
            out[start : start + len(chunk)] = z.float().cpu().numpy()
    return out


def region_means(
    image_embeddings: np.ndarray, image_regions: np.ndarray | pd.Series, region_ids: pd.Index | list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(n_regions, dim) mean embedding per region and the number of images each mean is over (0 = no image)."""
    region_ids = pd.Index(region_ids)
    codes = region_ids.get_indexer(pd.Index(np.asarray(image_regions, dtype=object)))
    if (codes < 0).any():
        bad = np.asarray(image_regions, dtype=object)[np.flatnonzero(codes < 0)[0]]
        raise ValueError(f"image region {bad!r} is not one of the {len(region_ids)} regions")
    counts = np.bincount(codes, minlength=len(region_ids))
    sums = np.zeros((len(region_ids), image_embeddings.shape[1]), dtype=np.float64)
    np.add.at(sums, codes, image_embeddings.astype(np.float64))
    means = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
    return means.astype(np.float32), counts


def fill_missing(
    means: np.ndarray,
    counts: np.ndarray,
    region_ids: pd.Index | list[str],
    policy: Literal["neighbours", "mean", "zeros", "error"] = "neighbours",
    max_ring: int = 10,
) -> np.ndarray:
    """Fill regions with no image: `neighbours` = mean of the nearest H3 ring holding regions with images (falls back
    to the global mean beyond `max_ring`), `mean` = global mean, `zeros`, or `error`."""
    if policy not in MISSING_POLICIES:
        raise ValueError(f"missing-region policy must be one of {MISSING_POLICIES}, got {policy!r}")
    missing = np.flatnonzero(counts == 0)
    if len(missing) == 0:
        return means
    region_ids = pd.Index(np.asarray(region_ids, dtype=object))
    if policy == "error":
        raise ValueError(f"{len(missing)} regions have no image, e.g. {region_ids[missing[:3]].tolist()}")
    out = means.copy()
    present = counts > 0
    global_mean = means[present].mean(axis=0) if present.any() else np.zeros(means.shape[1], dtype=means.dtype)
    if policy == "zeros":
        out[missing] = 0.0
        return out
    if policy == "mean":
        out[missing] = global_mean
        return out
    import h3

    for i in missing:
        out[i] = global_mean
        for ring in range(1, max_ring + 1):
            near = region_ids.get_indexer(pd.Index(list(h3.grid_ring(str(region_ids[i]), ring)), dtype=object))
            near = near[(near >= 0)]
            near = near[present[near]]
            if len(near):
                out[i] = means[near].mean(axis=0)
                break
    return out


def region_embeddings(
    model: ImageEncoder,
    cache: ImageCache,
    region_ids: pd.Index | list[str],
    missing: Literal["neighbours", "mean", "zeros", "error"] = "neighbours",
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.Series]:
    """One embedding per region (index region_id, columns e000...): the mean over the region's cached images.

    Returns (table, n_images per region); regions with 0 images were filled by the `missing` policy.
    """
    from musecl.embeddings import to_frame

    region_ids = pd.Index(np.asarray(region_ids, dtype=object), name=REGION_ID)
    vectors = embed_images(model, cache, batch_size, device, precision, progress)
    means, counts = region_means(vectors, cache.index[REGION_ID].to_numpy(), region_ids)
    means = fill_missing(means, counts, region_ids, missing)
    return to_frame(region_ids, means), pd.Series(counts, index=region_ids, name="n_images")


def embed_regions(
    model: ImageEncoder,
    cache: ImageCache,
    region_ids: pd.Index | list[str] | np.ndarray,
    encoders: dict,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.Series]:
    """:func:`region_embeddings` with the pipeline's settings: `encoders` is params.yaml's `encoders` section, whose
    `missing_regions` policy and `runtime` (eval batch size, device, precision) apply. Every image method (MuseCL's
    encoders, the baselines, the sensitivity runs) embeds its regions through here."""
    runtime = encoders.get("runtime", {})
    return region_embeddings(
        model, cache, region_ids,
        missing=encoders.get("missing_regions", "neighbours"),
        batch_size=int(runtime.get("eval_batch_size", 256)),
        device=runtime.get("device", "auto"),
        precision=runtime.get("precision", "auto"),
        progress=progress,
    )
