"""Visual encoders: a torchvision backbone (ResNet-18 for remote sensing, Inception-v3 for street view, as in MuseCL)
with a linear head to the embedding (128-d), and optionally SimCLR's 2-layer projection head (PG-SimCLR baseline).

ImageNet weights are optional and are only ever read from the local torch hub cache (`torch.hub.get_dir()/checkpoints/`,
where torchvision stores its downloads); asking for them when the file is absent is an error, never a silent random init.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

# backbone -> (feature width, torchvision checkpoint file name, smallest input side)
BACKBONES: dict[str, tuple[int, str, int]] = {
    "resnet18": (512, "resnet18-f37072fd.pth", 32),
    "inception_v3": (2048, "inception_v3_google-0cc3c7bd.pth", 75),
}
# Input normalisations: MuseCL's RS code feeds raw [0, 1] pixels, its SV code normalises with mean = std = 0.5.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class ModelSpec:
    """What to build. `weights`: `none` (random init from the seed) or `imagenet` (local torchvision checkpoint)."""

    backbone: Literal["resnet18", "inception_v3"] = "resnet18"
    embedding_dim: int = 128
    weights: Literal["none", "imagenet"] = "none"
    normalize: Literal["none", "half", "imagenet"] = "none"
    projection_dim: int = 0  # > 0: add a 2-layer projection head (Linear-ReLU-Linear) used only by the loss
    init: Literal["torchvision", "kaiming"] = "torchvision"  # random init (weights: none) of Inception-v3's convolutions:
    # torchvision's truncated normal (std 0.1, from the TF port) or He/Kaiming normal as ResNets use; ResNet-18 is always He

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

    def forward(self, x: torch.Tensor, project: bool = False) -> torch.Tensor:
        """Embeddings of a batch; with `project=True` (and a projection head) the projections the loss works on."""
        x = (x - self.mean) / self.std
        z = self.head(self.backbone(x))
        if project and self.projector is not None:
            return self.projector(z)
        return z


def imagenet_checkpoint(backbone: str) -> Path:
    """Where torchvision keeps the ImageNet weights of `backbone` (`torch.hub.get_dir()/checkpoints/<file>`)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES[backbone][1]


def _load_imagenet(model: nn.Module, backbone: str) -> None:
    path = imagenet_checkpoint(backbone)
    if not path.is_file():
        raise FileNotFoundError(
            f"ImageNet weights for {backbone} were requested (encoders.*.weights: imagenet) but {path} does not exist. "
            f"Download {Path(path).name} from https://download.pytorch.org/models/ into {path.parent} "
            f"(or set TORCH_HOME), or use weights: none to train from a random initialisation."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    model.load_state_dict(state, strict=True)  # strict: a partial load would be a silent random init


def build_encoder(spec: ModelSpec, seed: int = 0) -> ImageEncoder:
    """Build the encoder; random parts (everything without ImageNet weights, and the heads) are drawn from `seed`."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.backbone == "resnet18":
            net = torchvision.models.resnet18(weights=None)
        else:
            net = torchvision.models.inception_v3(
                weights=None, aux_logits=False, transform_input=False,
                init_weights=spec.weights == "none" and spec.init == "torchvision",
            )
            if spec.weights == "none" and spec.init == "kaiming":
                for m in net.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    elif isinstance(m, nn.BatchNorm2d):
                        nn.init.ones_(m.weight)
                        nn.init.zeros_(m.bias)
        if spec.weights == "imagenet":
            _load_imagenet(net, spec.backbone)
        net.fc = nn.Identity()
        if spec.backbone == "inception_v3":
            net.dropout = nn.Identity()  # the authors' SV encoder used the pooled features without dropout
        return ImageEncoder(spec, net)


def check_input_size(spec: ModelSpec, height: int, width: int) -> None:
    smallest = BACKBONES[spec.backbone][2]
    if min(height, width) < smallest:
        raise ValueError(
            f"{spec.backbone} needs images of at least {smallest} px per side, the cache holds {height}x{width} px; "
            f"raise the modality's image_size"
        )
