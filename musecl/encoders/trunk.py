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

import hashlib
import sys
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from musecl.encoders.augment import apply_augmentation, variants
from musecl.encoders.data import ImageSource, row_chunks, to_input
from musecl.encoders.devices import autocast_context

if TYPE_CHECKING:
    from musecl.encoders.models import ImageEncoder


# Images per forward pass of a frozen trunk on the CPU. In inference, EfficientNet-Lite0's depthwise stages run about
# three times faster in channels_last layout and small batches whose activations stay in the CPU caches than on
# contiguous batches of 256 (benchmarks/trunk_throughput.py); per image the result is the same up to float rounding.
CPU_TRUNK_CHUNK = 16
TRUNK_LAYOUT = f"channels_last/{CPU_TRUNK_CHUNK}"  # part of a saved trunk's key


@contextmanager
def channels_last_modules(modules: list[torch.nn.Module]) -> Iterator[None]:
    """The 4-d parameters of `modules` in channels_last layout while the block runs, contiguous again afterwards (so
    checkpoints keep their bytes)."""
    for module in modules:
        module.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for module in modules:
            module.to(memory_format=torch.contiguous_format)


def run_trunk(model: "ImageEncoder", x: torch.Tensor) -> torch.Tensor:
    """`model.trunk(x)` as contiguous float32, on the CPU in channels_last chunks of `CPU_TRUNK_CHUNK` images (call
    inside :func:`channels_last_modules` of the frozen modules)."""
    x = x.contiguous(memory_format=torch.channels_last)
    step = CPU_TRUNK_CHUNK if x.device.type == "cpu" else x.shape[0]
    parts = [model.trunk(x[i : i + step]).float() for i in range(0, x.shape[0], max(1, step))]
    return (parts[0] if len(parts) == 1 else torch.cat(parts)).contiguous()


class TrunkFeatures:
    """Frozen-trunk outputs of cache rows `rows` (sorted, unique) × augmentation variants, on `device`.

    `batches` has `ImageSource.batches`' interface (lists of (b, roles) cache-row arrays) and yields trunk outputs
    (role-major) of the variants given, or of the unaugmented images; `embed` runs the model's trainable top on them.
    """

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
        with torch.inference_mode(), channels_last_modules(model.frozen_modules()):
            start = 0
            for images in source.batches(chunks):
                x = to_input(images, False)
                n = x.shape[0]
                for v, (flip, turns) in enumerate(self.variants):
                    xv = apply_augmentation(x, torch.full((n,), flip), torch.full((n,), turns, dtype=torch.long))
                    with autocast_context(device, precision):
                        h = run_trunk(model, xv)
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

    @classmethod
    def from_store(cls, store: torch.Tensor, augment: str, device: torch.device) -> "TrunkFeatures":
        """Features of every cache row from a saved `store` (rows × variants × trunk output)."""
        if store.shape[1] != len(variants(augment)):
            raise ValueError(f"a saved trunk has {store.shape[1]} augmentation variants, {augment!r} has "
                             f"{len(variants(augment))}")
        out = cls.__new__(cls)
        out.rows, out.variants, out.device = np.arange(store.shape[0], dtype=np.int64), variants(augment), device
        out.store = store.to(device)
        return out

    @property
    def nbytes(self) -> int:
        return self.store.numel() * self.store.element_size()

    def positions(self, cache_rows: np.ndarray) -> torch.Tensor:
        pos = np.searchsorted(self.rows, cache_rows)
        if np.any(pos >= len(self.rows)) or np.any(self.rows[np.minimum(pos, len(self.rows) - 1)] != cache_rows):
            raise KeyError("trunk features were not computed for some requested cache rows")
        return torch.from_numpy(pos).to(self.device)

    def take(self, cache_rows: np.ndarray, variant: torch.Tensor | None = None, augment: str | None = None) -> torch.Tensor:
        """Trunk outputs of `cache_rows` (flat), of the given variant per row (None: the unaugmented image); `variant`
        indexes `augment.variants(augment)`, mapped to this store's variants."""
        pos = self.positions(np.asarray(cache_rows).ravel())
        if variant is None:
            return self.store[pos, torch.zeros_like(pos)]
        if augment is not None and variants(augment) != self.variants:
            lookup = torch.tensor([self.variants.index(v) for v in variants(augment)], device=self.device)
            variant = lookup[variant.to(self.device)]
        return self.store[pos, variant.to(self.device)]

    def batches(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
        for rows in batches:
            yield self.take(rows.T.ravel())

    @staticmethod
    def embed(model: "ImageEncoder", h: torch.Tensor, channels_last: bool = False, project: bool = False) -> torch.Tensor:
        return model(h, project=project, from_trunk=True)


_MEMO: "OrderedDict[str, TrunkFeatures]" = OrderedDict()
MEMO_SIZE = 4  # trunks kept per process (a few tens of MB each on the default city)


def trunk_key(model: "ImageEncoder", cache, precision: str, device: torch.device) -> str:
    """What a trunk output depends on: the frozen modules' tensors, the spec's input handling, the cache's content,
    precision, device and the pass's layout (the augmentation variants are checked separately)."""
    digest = hashlib.blake2b(digest_size=16)
    spec = model.spec
    digest.update(repr((spec.backbone, spec.normalize, spec.input_size, spec.frozen_stages, precision, str(device),
                        str(cache.root), cache.fingerprint, len(cache), TRUNK_LAYOUT)).encode())
    for module in model.frozen_modules():
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def trunk_features(model: "ImageEncoder", source: ImageSource, augment: str, batch_size: int, device: torch.device,
                   precision: str = "fp32", progress: bool = False, disk_dir: str | Path | None = None) -> TrunkFeatures:
    """`TrunkFeatures` of every cached image, reused within the process when the same frozen trunk was computed on
    the same cache with (at least) these augmentation variants: the baselines, ablations and sensitivity runs of a
    modality share it, and so do the region embeddings after training (:func:`memoized_trunk`).

    With `disk_dir`, a trunk is also kept on disk under its key and these variants (written atomically) and loaded
    by the next process that needs it, e.g. the next DVC stage of the same modality: the same tensor it would compute.
    """
    key = trunk_key(model, source.cache, precision, device)
    found = _MEMO.get(key)
    if found is not None and set(variants(augment)) <= set(found.variants):
        _MEMO.move_to_end(key)
        return found
    path = None if disk_dir is None else Path(disk_dir) / f"{key}-{augment.replace('+', '_')}.pt"
    features = None
    if path is not None and path.is_file():
        from musecl.storage import CorruptFileError, load_torch

        try:
            features = TrunkFeatures.from_store(load_torch(path, map_location=device), augment, device)
        except CorruptFileError as exc:  # a cache: computed again (and rewritten) rather than trusted
            print(f"{exc}; the trunk features are computed again", file=sys.stderr)
    if features is None:
        features = TrunkFeatures(model, source, np.arange(len(source.cache)), augment, batch_size, device, precision,
                                 progress)
        if path is not None:
            from musecl.storage import atomic_path

            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save(features.store.cpu(), tmp)
    _MEMO[key] = features
    _MEMO.move_to_end(key)
    while len(_MEMO) > MEMO_SIZE:
        _MEMO.popitem(last=False)
    return features


def memoized_trunk(model: "ImageEncoder", cache, precision: str, device: torch.device) -> TrunkFeatures | None:
    """The trunk of `model` on `cache` if this process computed it already (else None)."""
    if not model.spec.frozen_stages:
        return None
    return _MEMO.get(trunk_key(model, cache, precision, device))


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from musecl.encoders.tracking import progress_bar

    return progress_bar(total, 0, True, "frozen trunk")
