"""The settings of an image-text run (UrbanCLIP or UrbanLN): :class:`ImageTextConfig`, with `from_dict` (params.yaml
sections; an unknown key is an error naming it) and size presets per model (`cpu`: trains on the CPU default city in
seconds; `paper`: the papers' sizes, for a GPU). docs/imagetext.md explains every key and where it comes from.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

MODELS = ("urbanclip", "urbanln")


@dataclass(frozen=True)
class ImageTextConfig:
    """Model sizes, optimisation and the UrbanLN options. Sizes: the image tower runs `layers` transformer blocks of
    `width` on the frozen trunk's tokens; the text tower `text_layers` blocks of `text_width`; CoCa's multimodal
    decoder `decoder_layers` blocks of `text_width` with cross-attention to `caption_queries` pooled image tokens."""

    # model sizes
    width: int = 128               # image tower width (trunk tokens are projected to it)
    layers: int = 1                # image tower transformer blocks on the trunk tokens (0: pooling only)
    heads: int = 4                 # image tower heads (and the attentional pooler's)
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    decoder_layers: int = 1        # CoCa multimodal decoder blocks (UrbanCLIP only)
    embed_dim: int = 128           # contrastive latent size
    caption_queries: int = 16      # CoCa: pooled image tokens the decoder attends to (+1 contrastive query)
    context_length: int = 77       # text positions (UrbanLN: of the short-caption phase; IPSI stretches it)
    # optimisation
    epochs: int = 10               # UrbanCLIP epochs; UrbanLN: epochs of the long-caption phase
    pretrain_epochs: int = 5       # UrbanLN: epochs of the short-caption phase (first sentence, context_length)
    batch_size: int = 64
    lr: float = 3e-4               # AdamW (UrbanCLIP code default); constant after `warmup_steps`
    weight_decay: float = 0.01     # AdamW; not on gains, biases and the logit scale (open_clip's rule)
    warmup_steps: int = 0          # linear learning-rate warm-up at the start of each phase
    init_temperature: float = 0.07  # τ at initialisation (logit scale ln(1/τ), learnable, clamped to [0, ln 100])
    caption_loss_weight: float = 1.0   # UrbanCLIP (its code: 1 and 1; original CoCa: 2 and 1)
    clip_loss_weight: float = 1.0
    # UrbanLN
    stretch: bool = True           # IPSI; false = the ablation "without stretching" (stay at context_length, truncate)
    ipsi_keep: int = 20            # positions copied unchanged
    ipsi_ratio: int = 4            # stretch factor λ (77 -> 4*77 - 3*20 = 248)
    ipsi_freeze_kept: bool = True  # Long-CLIP: the first ipsi_keep positions stay fixed while the rest trains
    distill: bool = True           # MSD; false = the ablation "without momentum self-distillation" (InfoNCE only)
    momentum: float = 0.995        # EMA teacher
    mu: float = 0.5                # weight of the KL term, ramped from 0 over the first distillation epoch
    queue_size: int = 256          # feature queues (multiple of batch_size, < training images; 0 = batch only)
    # the frozen trunk that makes the image tokens (musecl.imagetext.towers.image_tokens)
    backbone: str = "efficientnet_lite0"
    input_size: int = 128          # trunk input side (px): 128 -> a 4x4 token grid
    trunk_stages: int | None = None  # stages of the trunk run (None: all, the 1x1 head conv's 1280 channels)
    # where
    device: str = "auto"
    precision: str = "auto"        # bf16 autocast on CUDA (auto), fp32 elsewhere
    threads: int | None = None     # torch CPU threads during a fit (restored after); None: leave torch's setting

    def __post_init__(self) -> None:
        positive = ("width", "heads", "text_width", "text_layers", "text_heads", "embed_dim", "batch_size",
                    "caption_queries", "ipsi_ratio")
        for key in positive:
            if getattr(self, key) < 1:
                raise ValueError(f"imagetext config: {key} must be >= 1, got {getattr(self, key)}")
        for key in ("layers", "decoder_layers", "epochs", "pretrain_epochs", "warmup_steps", "queue_size", "ipsi_keep"):
            if getattr(self, key) < 0:
                raise ValueError(f"imagetext config: {key} must be >= 0, got {getattr(self, key)}")
        for key, heads in (("width", "heads"), ("text_width", "text_heads")):
            if getattr(self, key) % getattr(self, heads):
                raise ValueError(f"imagetext config: {key} {getattr(self, key)} must be a multiple of {heads} "
                                 f"{getattr(self, heads)}")
        if self.context_length < 3 or self.ipsi_keep > self.context_length - 2:
            raise ValueError(f"imagetext config: context_length {self.context_length} must be >= 3 and >= ipsi_keep "
                             f"{self.ipsi_keep} + 2")
        if not (0.0 <= self.momentum < 1.0 and 0.0 <= self.mu <= 1.0):
            raise ValueError(f"imagetext config: momentum must be in [0, 1) and mu in [0, 1], got {self.momentum}, "
                             f"{self.mu}")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 < self.init_temperature <= 1):
            raise ValueError("imagetext config: lr must be > 0, weight_decay >= 0, init_temperature in (0, 1]")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"imagetext config: threads must be >= 1 or null, got {self.threads}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"imagetext config: precision must be auto, fp32 or bf16, got {self.precision!r}")

    @property
    def init_logit_scale(self) -> float:
        return math.log(1.0 / self.init_temperature)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, base: "ImageTextConfig | None" = None) -> "ImageTextConfig":
        """`base` (default: the class defaults) with the keys of `data` replaced; unknown keys are an error naming
        them (and the known ones)."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"imagetext config: unknown key(s) {unknown}; known keys: {sorted(known)}")
        return replace(base or cls(), **data)

    @classmethod
    def preset(cls, name: str, model: str, overrides: dict[str, Any] | None = None) -> "ImageTextConfig":
        """The `cpu` or `paper` preset of `model` (urbanclip | urbanln), then `overrides` (from_dict's checks)."""
        if model not in MODELS:
            raise ValueError(f"unknown image-text model {model!r}; choose one of {list(MODELS)}")
        if name not in PRESETS:
            raise ValueError(f"unknown imagetext preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls.from_dict(overrides, cls.from_dict(PRESETS[name][model]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The settings a checkpoint must match to be resumed (everything but where it runs)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("device", "threads")}


# Sizes. cpu: measured on the 2-core CPU (docs/imagetext.md, benchmarks/imagetext_throughput.py); paper: UrbanCLIP
# fine-tunes open_clip's coca_ViT-L-14 (text 768 wide, 12 layers, 12 heads; decoder likewise; 256 caption queries;
# embed 768), UrbanLN a CLIP ViT-B/16 (text 512 wide, 12 layers, 8 heads; vision 768 wide, 12 layers; embed 512).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "cpu": {
        "urbanclip": dict(width=128, layers=1, heads=4, text_width=64, text_layers=2, text_heads=2, decoder_layers=1,
                          embed_dim=128, caption_queries=16, context_length=77, epochs=10, batch_size=32, lr=3e-4),
        "urbanln": dict(width=128, layers=1, heads=4, text_width=64, text_layers=1, text_heads=2, embed_dim=128,
                        context_length=77, pretrain_epochs=2, epochs=3, batch_size=64, lr=3e-4, queue_size=256),
    },
    "paper": {
        "urbanclip": dict(width=1024, layers=12, heads=16, text_width=768, text_layers=12, text_heads=12,
                          decoder_layers=12, embed_dim=768, caption_queries=256, context_length=77, epochs=100,
                          batch_size=128, lr=3e-4, warmup_steps=200, input_size=224),
        "urbanln": dict(width=768, layers=12, heads=12, text_width=512, text_layers=12, text_heads=8, embed_dim=512,
                        context_length=77, pretrain_epochs=10, epochs=10, batch_size=128, lr=1e-4, warmup_steps=200,
                        queue_size=1024, input_size=224),
    },
}
