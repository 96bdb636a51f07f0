"""The one encoder trainer: MuseCL's triplet training, reused by the baselines (Tile2Vec, Urban2Vec, PG-SimCLR).

    result = train_encoder(cache, train_triplets, val_triplets, TrainConfig(...), out_dir)

* Data: an `ImageCache` (decoded uint8 images) and tables of image ids per sample: columns anchor_image,
  positive_image[, negative_image] (what `musecl.pairs.build_triplets` writes), or integer cache rows in columns
  anchor, positive[, negative]. Each pair rule (MuseCL similarity, H3 neighbours, random) is just another table.
* Losses (`LossSpec`): `triplet` = mean(max(0, d(a,p) - d(a,n) + margin)) on Euclidean distances of raw embeddings
  (MuseCL, Urban2Vec; margin 5), plus `norm_penalty` * (|a| + |p| + |n|) (Tile2Vec: margin 10, 0.01); `ntxent` = SimCLR's
  NT-Xent over the batch (in-batch negatives, `temperature`), on a projection head when `ModelSpec.projection_dim` > 0.
* Optimiser as the authors': Adam(amsgrad) lr 5e-4, StepLR(10 epochs, 0.7); validation triplet accuracy
  (#[d(a,p) < d(a,n)] / #) each epoch; the best epoch's weights are kept (by val accuracy or val loss).
* Robust and reproducible: every epoch ends with an atomic checkpoint (`last.pt`), and a new call with the same inputs
  resumes from it; all randomness (initialisation, sample order, augmentation) derives from `config.seed` and the
  epoch number, so an interrupted-and-resumed run ends with the same weights as an uninterrupted one.
* Fast: images stay uint8 until they are on the device; on CUDA bf16 autocast, channels_last, pinned memory,
  non-blocking copies and, when the cache fits, the whole cache resident in GPU memory. Anchor, positive and negative
  go through the network as one batch.
* Multi-process: under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (NCCL on GPUs, gloo
  on CPU); each process takes every world_size-th batch. `python -m musecl.encoders.train --help`.

Only torch, numpy and pandas are needed here; tqdm and dvclive are used when installed.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from musecl.encoders.image_cache import ImageCache
from musecl.encoders.models import ImageEncoder, ModelSpec, build_encoder, check_input_size

CHECKPOINT_FORMAT = 1
LAST, BEST = "last.pt", "best.pt"


# ---- configuration ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossSpec:
    """`triplet`: margin loss on Euclidean distances (+ optional L2 penalty on embedding norms); `ntxent`: SimCLR."""

    kind: Literal["triplet", "ntxent"] = "triplet"
    margin: float = 5.0
    norm_penalty: float = 0.0
    temperature: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("triplet", "ntxent"):
            raise ValueError(f"loss kind must be 'triplet' or 'ntxent', got {self.kind!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


# Fields that change how fast training runs but not what it computes; they stay out of the resume fingerprint.
_RUNTIME_FIELDS = ("num_workers", "progress", "data_on_device", "eval_batch_size", "log_dir", "max_epochs_this_run")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `train_encoder` needs besides the data. Defaults = the authors' code (see docs/encoders.md)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    augment: Literal["none", "rot90", "hflip", "rot90+hflip"] = "none"
    epochs: int = 20
    batch_size: int = 32  # samples (triplets or pairs) per step and process; the network sees 3x (2x) images
    samples_per_epoch: int | None = None  # None: every training sample once per epoch; else a fresh random subset
    val_samples: int | None = None  # None: every validation sample
    lr: float = 5e-4
    amsgrad: bool = True
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    lr_step_epochs: int = 10
    lr_gamma: float = 0.7
    select_by: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    patience: int | None = None  # stop when `select_by` has not improved for this many epochs
    seed: int = 0
    device: str = "auto"  # auto (CUDA, then CPU) | cpu | cuda | cuda:1 ...
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: Literal["auto", "yes", "no"] = "auto"  # auto: on CUDA only (slower on CPU here)
    compile: bool = False  # torch.compile the model (CUDA; pays a one-off compile time)
    deterministic: Literal["auto", "yes", "no"] = "auto"  # auto: deterministic algorithms on CPU, cuDNN autotune on CUDA
    num_workers: int = 0  # DataLoader workers when the cache is streamed from disk
    data_on_device: Literal["auto", "yes", "no"] = "auto"  # keep the whole uint8 cache on the device
    eval_batch_size: int = 256
    bn_recalibration: int = 512  # training images used to re-estimate BatchNorm statistics before each evaluation (0: off)
    progress: bool = True
    log_dir: str | None = None  # DVCLive folder (per-epoch loss and accuracy); None: no DVCLive
    max_epochs_this_run: int | None = None  # stop after this many epochs in this call; the next call resumes

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.augment not in ("none", "rot90", "hflip", "rot90+hflip"):
            raise ValueError(f"augment must be none, rot90, hflip or rot90+hflip, got {self.augment!r}")
        if self.select_by not in ("val_accuracy", "val_loss"):
            raise ValueError(f"select_by must be val_accuracy or val_loss, got {self.select_by!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a (JSON/YAML) dict; nested `model` and `loss` dicts become ModelSpec/LossSpec. Unknown keys fail."""
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown trainer setting(s) {unknown}; known: {sorted(known)}")
        if isinstance(data.get("model"), dict):
            data["model"] = ModelSpec(**data["model"])
        if isinstance(data.get("loss"), dict):
            data["loss"] = LossSpec(**data["loss"])
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)

    def fingerprint(self) -> dict[str, Any]:
        out = self.to_dict()
        for name in _RUNTIME_FIELDS:
            out.pop(name)
        return out


@dataclass
class TrainResult:
    """What `train_encoder` returns (on every process): the best model (eval mode, CPU) and the training history."""

    model: ImageEncoder
    history: pd.DataFrame  # one row per epoch (epoch 0 = the untrained model, validation only)
    best_epoch: int
    best_metric: float
    out_dir: Path
    resumed_from_epoch: int  # 0 when training started from scratch
    world_size: int = 1

    @property
    def best_path(self) -> Path:
        return self.out_dir / BEST

    @property
    def last_path(self) -> Path:
        return self.out_dir / LAST


# ---- data -------------------------------------------------------------------------------------------------------
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
            self._images = np.load(self.cache_root / "images.npy", mmap_mode="r")
        return torch.from_numpy(np.ascontiguousarray(self._images[self.batches[i].T.ravel()]))


class _ImageSource:
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

    def batches(self, batches: list[np.ndarray]) -> Iterator[torch.Tensor]:
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


def augment(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Per-image random 90-degree rotations (tiles) and/or horizontal flips (street view); draws from `generator`."""
    n = x.shape[0]
    if "hflip" in kind:
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    if "rot90" in kind:
        if x.shape[2] != x.shape[3]:
            raise ValueError(f"rot90 augmentation needs square images, got {x.shape[2]}x{x.shape[3]}")
        turns = torch.randint(0, 4, (n,), generator=generator).to(x.device).view(n, 1, 1, 1)
        out = x
        for k in (1, 2, 3):
            out = torch.where(turns == k, torch.rot90(x, k, dims=(2, 3)), out)
        x = out
    return x


# ---- losses -----------------------------------------------------------------------------------------------------
def triplet_loss(
    a: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float, norm_penalty: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, number of triplets with d(a,p) < d(a,n)); distances as torch.nn.PairwiseDistance(eps=1e-6)."""
    d_ap = F.pairwise_distance(a, p, eps=1e-6)
    d_an = F.pairwise_distance(a, n, eps=1e-6)
    loss = F.relu(d_ap - d_an + margin).mean()
    if norm_penalty:
        loss = loss + norm_penalty * (a.norm(dim=1) + p.norm(dim=1) + n.norm(dim=1)).mean()
    return loss, (d_ap < d_an).sum()


def ntxent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent over 2B views; (mean loss, number of views whose partner is their most similar view)."""
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    loss = F.cross_entropy(logits, target)
    return loss, (logits.argmax(dim=1) == target).sum() / 2


# ---- helpers ----------------------------------------------------------------------------------------------------
def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available (use device: auto or cpu)")
    return resolved


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # we initialised the process group, so we tear it down

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: list[float], device: torch.device) -> list[float]:
        if self.world == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


def _init_distributed(device_pref: str) -> _Dist:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    cuda = torch.cuda.is_available() and device_pref != "cpu"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)


def _epoch_batches(n: int, config: TrainConfig, epoch: int) -> list[np.ndarray]:
    """Sample positions of each batch of `epoch`, drawn from (seed, epoch) only: resuming replays the same order."""
    order = np.random.default_rng([config.seed, epoch, 1]).permutation(n)
    if config.samples_per_epoch is not None:
        order = order[: config.samples_per_epoch]
    return [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]


def recalibrate_batchnorm(
    model: torch.nn.Module, source: _ImageSource, rows: np.ndarray, config: TrainConfig, device: torch.device,
    channels_last: bool,
) -> None:
    """Re-estimate every BatchNorm layer's running mean/variance on the images `rows` (PreciseBN).

    Why: the running averages are what eval mode normalises with. From ImageNet weights (the authors' setting) they are
    sensible from the start; from a random init and a few epochs they lag far behind the weights (an untrained
    Inception-v3 gave embeddings with norms ~1e3 in eval mode), which makes validation and region embeddings
    meaningless. Training itself is unaffected: in train mode BatchNorm normalises with batch statistics.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or len(rows) == 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the recalibration batches
    was_training = model.training
    model.train()
    chunks = [rows[i : i + config.eval_batch_size].reshape(-1, 1) for i in range(0, len(rows), config.eval_batch_size)]
    try:
        with torch.no_grad():
            for images in source.batches(chunks):
                with autocast_context(device, config.precision):
                    model(to_input(images, channels_last))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)


def recalibrate_on_cache(model: torch.nn.Module, cache: ImageCache, rows: np.ndarray, config: TrainConfig) -> None:
    """`recalibrate_batchnorm` on the cached images `rows`, on the config's device (for models that are not trained
    here, e.g. the untrained-backbone baselines, whose BatchNorm running statistics are otherwise the init's 0/1)."""
    device = resolve_device(config.device)
    model.to(device)
    recalibrate_batchnorm(model, _ImageSource(cache, device, config), np.sort(np.asarray(rows)), config, device, False)


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str(a.shape).encode())
    return h.hexdigest()[:16]


def _save(obj: dict[str, Any], path: Path) -> None:
    from musecl.storage import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _live(log_dir: str | None, history: list[dict[str, Any]]):
    """A fresh DVCLive run replaying `history` (so a resumed run's curves have each epoch exactly once)."""
    if log_dir is None:
        return None
    try:
        from dvclive import Live
    except ImportError:
        return None
    live = Live(str(log_dir), resume=False, report=None, save_dvc_exp=False, dvcyaml=False)
    for row in history:
        _log_epoch(live, row)
    return live


def _log_epoch(live, row: dict[str, Any]) -> None:
    if live is None:
        return
    live.step = int(row["epoch"])
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            live.log_metric(key.replace("_", "/", 1) if key != "lr" else "lr", float(value))
    live.next_step()


def _progress(total: int, initial: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    # a long refresh interval: in executed notebooks every refresh is a line of output
    return tqdm(total=total, initial=initial, desc=desc, unit="step", mininterval=10.0)


# ---- the trainer ------------------------------------------------------------------------------------------------
def _train_batches(
    model: torch.nn.Module,
    source: _ImageSource,
    rows: np.ndarray,
    batches: list[np.ndarray],
    config: TrainConfig,
    device: torch.device,
    channels_last: bool,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    bar=None,
) -> tuple[float, float, int]:
    """One training pass; returns (sum of batch-mean losses weighted by batch size, number correct, number of samples)."""
    loss_sum, correct_sum, count = 0.0, 0.0, 0
    ntxent = config.loss.kind == "ntxent"
    batch_rows = [rows[b] for b in batches]
    for positions, images in zip(batch_rows, source.batches(batch_rows)):
        b = len(positions)
        x = to_input(images, channels_last)
        if config.augment != "none":
            x = augment(x, config.augment, generator)
            if channels_last:  # rotations are strided views; give the convolutions the layout they expect
                x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, config.precision):
            z = model(x, project=ntxent)
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


def embed_rows(
    model: torch.nn.Module, source: _ImageSource, rows: np.ndarray, config: TrainConfig, device: torch.device,
    channels_last: bool,
) -> torch.Tensor:
    """Embeddings (float32, on the device) of cache rows `rows`, in eval mode, without augmentation."""
    model.eval()
    chunks = [rows[i : i + config.eval_batch_size].reshape(-1, 1) for i in range(0, len(rows), config.eval_batch_size)]
    out = []
    with torch.inference_mode():
        for images in source.batches(chunks):
            with autocast_context(device, config.precision):
                out.append(model(to_input(images, channels_last)).float())
    return torch.cat(out)


def validation_metrics(z: torch.Tensor, config: TrainConfig) -> tuple[float, float]:
    """(loss, triplet accuracy) of embedded samples z (n, 2|3, dim); pairs use the next sample's positive as negative."""
    a, p = z[:, 0], z[:, 1]
    n = z[:, 2] if z.shape[1] == 3 else torch.roll(p, 1, dims=0)
    loss, correct = triplet_loss(a, p, n, config.loss.margin, config.loss.norm_penalty)
    if config.loss.kind == "ntxent":  # NT-Xent of the pairs in training-sized batches (its value depends on batch size)
        parts = [ntxent_loss(a[i : i + config.batch_size], p[i : i + config.batch_size], config.loss.temperature)[0]
                 * len(a[i : i + config.batch_size]) for i in range(0, len(a), config.batch_size)]
        loss = torch.stack(parts).sum() / len(a)
    return float(loss), float(correct) / len(a)


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
    dist_ctx = _init_distributed(config.device)
    try:
        return _train(cache, train_samples, val_samples, config, out_dir, dist_ctx)
    finally:
        if dist_ctx.owned:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(cache, train_samples, val_samples, config: TrainConfig, out_dir: Path, dctx: _Dist) -> TrainResult:
    train_rows = sample_rows(cache, train_samples, "training samples")
    val_rows = sample_rows(cache, val_samples, "validation samples") if val_samples is not None else None
    if config.loss.kind == "triplet" and train_rows.shape[1] != 3:
        raise ValueError("the triplet loss needs a negative: training table has only anchor and positive")
    check_input_size(config.model, *cache.image_shape)
    if "rot90" in config.augment and cache.image_shape[0] != cache.image_shape[1]:
        raise ValueError(f"rot90 augmentation needs square images; the cache holds {cache.image_shape} images")

    device = resolve_device(config.device)
    if device.type == "cuda" and dctx.world > 1:
        device = torch.device("cuda", dctx.local_rank)
        torch.cuda.set_device(device)
    channels_last = config.channels_last == "yes" or (config.channels_last == "auto" and device.type == "cuda")
    deterministic = config.deterministic == "yes" or (config.deterministic == "auto" and device.type == "cpu")
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        return _train_loop(cache, train_rows, val_rows, config, out_dir, dctx, device, channels_last)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)


def _train_loop(cache, train_rows, val_rows, config, out_dir, dctx, device, channels_last) -> TrainResult:
    if config.loss.kind == "ntxent":
        train_rows = train_rows[:, :2]  # NT-Xent takes its negatives from the batch
    fingerprint = json.loads(json.dumps({
        "config": config.fingerprint(),
        "cache": cache.fingerprint or str(cache.image_shape),
        "train": _digest(train_rows),
        "val": _digest(val_rows) if val_rows is not None else "",
        "world_size": dctx.world,
    }))
    model = build_encoder(config.model, seed=config.seed)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, amsgrad=config.amsgrad
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs, gamma=config.lr_gamma)
    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "metric": float("nan")}
    start_epoch = 1
    last_path, best_path = out_dir / LAST, out_dir / BEST
    if last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=True)
        if state.get("format") == CHECKPOINT_FORMAT and state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history, best = state["history"], state["best"]
            start_epoch = int(state["epoch"]) + 1
        elif dctx.main:
            print(f"{last_path}: checkpoint of different inputs or settings; training from scratch")
    resumed_from = start_epoch - 1
    if config.compile:
        model_for_step: torch.nn.Module = torch.compile(model)
    else:
        model_for_step = model
    if dctx.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        unused = config.model.projection_dim > 0 and config.loss.kind != "ntxent"
        model_for_step = DistributedDataParallel(
            model_for_step, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused
        )
    source = _ImageSource(cache, device, config)
    live = _live(config.log_dir, history) if dctx.main else None

    train_images = np.unique(train_rows)

    def evaluate(epoch: int) -> tuple[float, float]:
        """Validation on every process alike: each distinct validation image is embedded once, then the samples'
        distances are compared (for RS, 2,000 triplets need only the few hundred tiles)."""
        if config.bn_recalibration:
            # the same images on every process, so all replicas end with identical statistics
            pick = np.random.default_rng([config.seed, epoch, 3]).permutation(train_images)[: config.bn_recalibration]
            recalibrate_batchnorm(model, source, np.sort(pick), config, device, channels_last)
        if val_rows is None:
            return float("nan"), float("nan")
        rows = val_rows if config.val_samples is None else val_rows[: config.val_samples]
        unique, inverse = np.unique(rows, return_inverse=True)
        z = embed_rows(model, source, unique, config, device, channels_last)
        return validation_metrics(z[torch.from_numpy(inverse.reshape(rows.shape)).to(z.device)], config)

    if start_epoch == 1:
        val_loss, val_acc = evaluate(0)  # the untrained model: the baseline the trained one must beat
        history.append({"epoch": 0, "train_loss": float("nan"), "train_accuracy": float("nan"), "val_loss": val_loss,
                        "val_accuracy": val_acc, "lr": float("nan"), "seconds": 0.0, "train_images_per_s": float("nan")})
        _log_epoch(live, history[-1])

    n_batches = len(_epoch_batches(len(train_rows), config, 1)) // dctx.world
    if n_batches == 0:
        raise ValueError(f"fewer training batches than processes ({dctx.world}); lower batch_size or add samples")
    stop_epoch = config.epochs
    if config.max_epochs_this_run is not None:
        stop_epoch = min(stop_epoch, start_epoch - 1 + config.max_epochs_this_run)
    done_early = _stopped_early(history, best, config)
    bar = _progress((config.epochs) * n_batches, (start_epoch - 1) * n_batches, config.progress and dctx.main,
                    f"{config.model.backbone} {cache.meta.get('modality', '')}".strip())
    try:
        for epoch in range(start_epoch, stop_epoch + 1):
            if done_early:
                break
            model.train()
            batches = _epoch_batches(len(train_rows), config, epoch)
            batches = batches[: n_batches * dctx.world][dctx.rank :: dctx.world]
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence([config.seed, epoch, 2, dctx.rank]).generate_state(1)[0]))
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            loss_sum, correct, count = _train_batches(
                model_for_step, source, train_rows, batches, config, device, channels_last, optimizer, generator, bar
            )
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            loss_sum, correct, count, images = dctx.all_sum([loss_sum, correct, float(count), float(count * train_rows.shape[1])], device)
            scheduler.step()
            val_loss, val_acc = evaluate(epoch)
            row = {"epoch": epoch, "train_loss": loss_sum / count, "train_accuracy": correct / count,
                   "val_loss": val_loss, "val_accuracy": val_acc, "lr": lr, "seconds": seconds,
                   "train_images_per_s": images / seconds}
            history.append(row)
            metric = val_acc if config.select_by == "val_accuracy" else -val_loss
            improved = val_rows is None or math.isnan(best["metric"]) or metric > best["metric"]
            if improved:
                best = {"epoch": epoch, "metric": float(metric)}
            if dctx.main:
                model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
                if improved:
                    _save({"format": CHECKPOINT_FORMAT, "spec": config.model.to_dict(), "model": model_state,
                           "epoch": epoch, "config": config.to_dict()}, best_path)
                _save({"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epoch": epoch, "model": model_state,
                       "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                       "history": history, "best": best}, last_path)
                _log_epoch(live, row)
            dctx.barrier()
            done_early = _stopped_early(history, best, config)
    finally:
        if bar is not None:
            bar.close()
        if live is not None:
            live.end()
    dctx.barrier()
    final = load_encoder(best_path)
    return TrainResult(final, pd.DataFrame(history), int(best["epoch"]), float(best["metric"]), out_dir, resumed_from, dctx.world)


def _stopped_early(history: list[dict[str, Any]], best: dict[str, Any], config: TrainConfig) -> bool:
    if config.patience is None or not history:
        return False
    return int(history[-1]["epoch"]) - int(best["epoch"]) >= config.patience


def load_encoder(path: str | Path) -> ImageEncoder:
    """The encoder saved in a `best.pt` checkpoint, in eval mode on the CPU (loaded with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder checkpoint {path} not found (train the encoder first)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT or "spec" not in state:
        raise ValueError(f"{path}: not an encoder checkpoint of format {CHECKPOINT_FORMAT}")
    spec = ModelSpec(**state["spec"])
    model = build_encoder(replace(spec, weights="none"), seed=0)  # the weights come from the checkpoint
    model.load_state_dict(state["model"])
    return model.eval()


# ---- command line (works under torchrun) -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Train a visual encoder on pair/triplet tables of an image cache. "
        "Multi-GPU: torchrun --nproc_per_node=N -m musecl.encoders.train ...",
    )
    parser.add_argument("--cache", required=True, help="image cache folder (musecl.encoders.image_cache)")
    parser.add_argument("--train", required=True, help="training pairs/triplets (parquet)")
    parser.add_argument("--val", default=None, help="validation pairs/triplets (parquet)")
    parser.add_argument("--config", default=None, help="trainer settings as JSON (TrainConfig fields; nested model/loss)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override one setting, e.g. --set epochs=3 --set model.backbone='\"resnet18\"'")
    parser.add_argument("--out", required=True, help="checkpoint folder")
    args = parser.parse_args(argv)
    settings: dict[str, Any] = json.loads(Path(args.config).read_text()) if args.config else {}
    for item in args.set:
        key, _, value = item.partition("=")
        target = settings
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = json.loads(value)
    config = TrainConfig.from_dict(settings)
    cache = ImageCache.open(args.cache)
    train = pd.read_parquet(args.train)
    val = pd.read_parquet(args.val) if args.val else None
    result = train_encoder(cache, train, val, config, args.out)
    if int(os.environ.get("RANK", "0")) == 0:
        last = result.history.iloc[-1]
        print(json.dumps({"best_epoch": result.best_epoch, "best_metric": result.best_metric,
                          "final_val_accuracy": float(last["val_accuracy"]), "world_size": result.world_size,
                          "checkpoint": str(result.best_path)}))


if __name__ == "__main__":
    main()
