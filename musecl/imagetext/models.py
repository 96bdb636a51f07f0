"""UrbanCLIP and UrbanLN as open_clip models on trunk tokens: :func:`build_model` makes an `open_clip.CoCa`
(UrbanCLIP) or `open_clip.CLIP` (UrbanLN) with a compact vocabulary and replaces its `visual` by
:class:`~musecl.imagetext.towers.TokenTower`; :func:`image_latent` / :func:`text_latent` are the contrastive latents
both training and retrieval use; :func:`model_state` / :func:`load_model` save and rebuild a model.

What is changed on the open_clip models, and why:
* `visual` is the token tower (no ViT weights exist offline; a tiny ViT is built and dropped).
* CoCa's text tower gets `correct_cls_mask = True`: the appended CLS token and the padding are masked at their real
  positions (open_clip keeps a shifted mask only for compatibility with released CoCa weights; nothing is loaded here).
* CoCa's multimodal decoder's output projection is initialised (normal, std width^-0.5): open_clip leaves it as
  `torch.empty`, whose content is whatever memory held (not reproducible from a seed).
* CLIP pools the text at the first end-of-text token (`pool_type="eos"`; the compact end id is not the largest id),
  and :func:`text_latent` runs the text tower only up to the batch's last end-of-text token. With the causal mask the
  latent is exactly the same (tests check it); long captions in a 248-position context cost what they hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from musecl.imagetext.config import MODELS, ImageTextConfig
from musecl.imagetext.ipsi import stretch_text_context, stretched_length
from musecl.imagetext.tokens import EOT, PAD, Vocabulary
from musecl.imagetext.towers import TokenTower

MODEL_FORMAT = 1
_TINY_VISION = dict(layers=1, width=64, head_width=64, patch_size=8, image_size=8)  # built, then replaced


@dataclass
class ModelInfo:
    """What a model is, enough to rebuild it: kind, settings, vocabulary, token grid, text positions."""

    kind: str
    config: ImageTextConfig
    vocab: Vocabulary
    n_tokens: int
    token_dim: int
    stretched: bool = False  # UrbanLN after IPSI: the text context is `stretched_length(...)`

    @property
    def context_length(self) -> int:
        c = self.config
        return stretched_length(c.context_length, c.ipsi_keep, c.ipsi_ratio) if self.stretched else c.context_length

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "config": self.config.to_dict(), "vocab": self.vocab.to_dict(),
                "n_tokens": self.n_tokens, "token_dim": self.token_dim, "stretched": self.stretched}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelInfo":
        return cls(str(data["kind"]), ImageTextConfig.from_dict(data["config"]), Vocabulary.from_dict(data["vocab"]),
                   int(data["n_tokens"]), int(data["token_dim"]), bool(data["stretched"]))


def info_of(model: nn.Module) -> ModelInfo:
    info = getattr(model, "imagetext_info", None)
    if not isinstance(info, ModelInfo):
        raise TypeError("not an image-text model of musecl.imagetext (build it with build_model or load_model)")
    return info


def build_model(kind: str, config: ImageTextConfig, vocab: Vocabulary, n_tokens: int, token_dim: int,
                seed: int = 0) -> nn.Module:
    """An untrained UrbanCLIP (`kind="urbanclip"`: open_clip CoCa) or UrbanLN (`"urbanln"`: open_clip CLIP) model for
    tokens of shape (T = n_tokens, C = token_dim); every random draw from `seed` (the global RNG is left untouched)."""
    if kind not in MODELS:
        raise ValueError(f"unknown image-text model {kind!r}; choose one of {list(MODELS)}")
    import open_clip

    c = config
    text_cfg = dict(context_length=c.context_length, vocab_size=vocab.size, width=c.text_width, heads=c.text_heads,
                    layers=c.text_layers, pad_id=PAD)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "urbanclip":
            decoder_cfg = dict(context_length=c.context_length, vocab_size=vocab.size, width=c.text_width,
                               heads=c.text_heads, layers=c.decoder_layers)
            model = open_clip.CoCa(c.embed_dim, decoder_cfg, {**text_cfg, "embed_cls": True, "output_tokens": True},
                                   _TINY_VISION, init_logit_scale=c.init_logit_scale, pad_id=PAD)
            model.text.correct_cls_mask = True
            nn.init.normal_(model.text_decoder.text_projection, std=c.text_width**-0.5)
            model.visual = TokenTower(n_tokens, token_dim, c.width, c.layers, c.heads, c.embed_dim,
                                      caption_queries=c.caption_queries, decoder_width=c.text_width)
        else:
            model = open_clip.CLIP(c.embed_dim, _TINY_VISION, {**text_cfg, "pool_type": "eos", "eos_id": EOT},
                                   init_logit_scale=c.init_logit_scale)
            model.visual = TokenTower(n_tokens, token_dim, c.width, c.layers, c.heads, c.embed_dim)
    model.imagetext_info = ModelInfo(kind, config, vocab, n_tokens, token_dim)
    return model


def stretch_model(model: nn.Module) -> int:
    """IPSI on an UrbanLN model (in place, once); returns the new context length."""
    info = info_of(model)
    if info.kind != "urbanln":
        raise ValueError("IPSI stretches UrbanLN's (CLIP's) text positions; this is an UrbanCLIP model")
    if info.stretched:
        return info.context_length
    length = stretch_text_context(model, info.config.ipsi_keep, info.config.ipsi_ratio)
    info.stretched = True
    return length


def image_latent(model: nn.Module, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The contrastive image latent (B, embed_dim) of trunk tokens (B, T, C)."""
    return model.encode_image(tokens, normalize=normalize)


def image_pooled(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The image tower's pooled feature before the contrastive projection (B, width or text_width)."""
    return model.visual.pooled(tokens)


def text_latent(model: nn.Module, ids: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The contrastive text latent (B, embed_dim) of token ids (B, context_length). CLIP: run up to the batch's last
    end-of-text token (same result, see the module); CoCa: its text tower as is (the CLS token is appended after the
    full context, so its position must not depend on the batch)."""
    if info_of(model).kind == "urbanclip":
        return model.encode_text(ids, normalize=normalize)
    from open_clip.transformer import text_global_pool

    length = int((ids == EOT).int().argmax(dim=1).max()) + 1
    ids = ids[:, :length]
    x = model.token_embedding(ids) + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = text_global_pool(model.ln_final(x), ids, "eos", eos_token_id=EOT)
    x = x @ model.text_projection
    return F.normalize(x, dim=-1) if normalize else x


def clamp_logit_scale(model: nn.Module, max_scale: float = 100.0) -> None:
    """Keep the learnable logit scale in [0, ln max_scale] (CLIP's and UrbanCLIP's clamp)."""
    import math

    with torch.no_grad():
        model.logit_scale.clamp_(0.0, math.log(max_scale))


def model_state(model: nn.Module) -> dict[str, Any]:
    """Everything :func:`load_model` needs: format, `ModelInfo` as plain data, and the weights (CPU tensors)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"format": MODEL_FORMAT, "info": info_of(model).to_dict(), "state": state}


def load_model(state: dict[str, Any]) -> nn.Module:
    """The model of a :func:`model_state` dictionary (eval mode, CPU)."""
    if state.get("format") != MODEL_FORMAT or "info" not in state:
        raise ValueError(f"not an image-text model state of format {MODEL_FORMAT}")
    info = ModelInfo.from_dict(state["info"])
    model = build_model(info.kind, info.config, info.vocab, info.n_tokens, info.token_dim, seed=0)
    if info.stretched:
        stretch_model(model)
    model.load_state_dict(state["state"])
    return model.eval()


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices, none on gains, biases and the logit scale (open_clip's
    rule)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
