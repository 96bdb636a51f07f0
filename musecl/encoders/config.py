"""The trainer's settings and result: `LossSpec` (which loss), `TrainConfig` (everything `train_encoder` needs besides
the data, with the authors' defaults; see docs/encoders.md) and `TrainResult` (what it returns). `TrainConfig` also
says which of its fields only change how fast training runs (`fingerprint` leaves them out), so the resume key and the
settings stored in `best.pt` stay the same whether a run had progress bars, DVCLive or was interrupted and resumed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Mapping

import pandas as pd

from musecl.encoders.checkpoints import BEST, LAST
from musecl.encoders.models import ImageEncoder, ModelSpec


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LossSpec:
        """Build from a params.yaml `loss` mapping (encoders.<modality>.loss, a baseline run's encoder.loss). Unknown
        keys fail."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown encoder loss setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))


# Fields that change how fast training runs but not what it computes; they stay out of the resume fingerprint.
_RUNTIME_FIELDS = ("num_workers", "progress", "data_on_device", "eval_batch_size", "log_dir", "max_epochs_this_run",
                   "trunk_dir")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `train_encoder` needs besides the data. Defaults = the authors' code (see docs/encoders.md)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    loss: LossSpec = field(default_factory=LossSpec)
    augment: Literal["none", "rot90", "hflip", "rot90+hflip", "crop", "crop+rot90"] = "none"
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
    trunk_cache: bool = True  # with model.frozen_stages > 0: compute the frozen trunk once per image and augmentation
    # variant and train the top on it (musecl.encoders.trunk); False: run the frozen stages on the pixels every step
    trunk_dir: str | None = None  # a folder where computed trunks are kept for other processes (stages) to load:
    # keyed by the frozen weights, the cache's content, input handling, precision and device (same values either way)
    progress: bool = True
    log_dir: str | None = None  # DVCLive folder (per-epoch loss and accuracy); None: no DVCLive
    max_epochs_this_run: int | None = None  # stop after this many epochs in this call; the next call resumes

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.augment not in ("none", "rot90", "hflip", "rot90+hflip", "crop", "crop+rot90"):
            raise ValueError(f"augment must be none, rot90, hflip, rot90+hflip, crop or crop+rot90 (musecl.encoders."
                             f"augment), got {self.augment!r}")
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
            data["loss"] = LossSpec.from_dict(data["loss"])
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)

    def fingerprint(self) -> dict[str, Any]:
        """`to_dict` without the runtime-only fields: the settings that determine the trained weights."""
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
