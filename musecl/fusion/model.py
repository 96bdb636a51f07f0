"""The attentive fusion module (eqs. 8-10), its alignment losses (eq. 11) and its settings (`FusionConfig`).

Per region, a score s_m = u . tanh(e_m W + b) for each image modality m, softmax over the two scores (masked where a
modality is missing), and the weighted sum of the two embeddings. Two options show what the per-region attention
does (params.yaml `fusion`, docs/text_and_fusion.md): `attention: global` replaces the scores by one learned pair shared
by every region (:class:`GlobalAttentionFusion`), and `normalize_inputs: true` fuses the L2-normalised vectors, so
the weights can no longer follow the vectors' norms. This module and `musecl.fusion.train` import only
torch, numpy, pandas and the standard-library `musecl.contract`, so fusion trains on a bare GPU machine (no geopandas,
h3, gensim or matplotlib); the constants come from `musecl.contract` for the same reason.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn

LOSSES = ("mse", "infonce", "none")
OUTPUTS = ("image", "image+text")
ATTENTIONS = ("per_region", "global")


@dataclass(frozen=True)
class FusionConfig:
    """Fusion training settings (params.yaml `fusion`)."""

    loss: str = "mse"
    output: str = "image"
    temperature: float = 0.5  # infonce only
    epochs: int = 50
    lr: float = 1e-3
    batch_size: int | None = 64  # None = all regions in one batch
    skip_empty_text: bool = True  # leave regions whose text vector is all zeros out of the loss
    seed: int = 0
    attention: str = "per_region"  # per_region: eqs. 8-9 (MuseCL) | global: one learned weight pair for all regions
    normalize_inputs: bool = False  # L2-normalise e_RS, e_SV (and e_POI in the loss) per region before fusing

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"fusion.loss is {self.loss!r}; expected one of {LOSSES}")
        if self.output not in OUTPUTS:
            raise ValueError(f"fusion.output is {self.output!r}; expected one of {OUTPUTS}")
        if not self.temperature > 0:
            raise ValueError(f"fusion.temperature must be > 0, got {self.temperature!r}")
        if int(self.epochs) < 0:
            raise ValueError(f"fusion.epochs must be >= 0, got {self.epochs!r}")
        if not self.lr > 0:
            raise ValueError(f"fusion.lr must be > 0, got {self.lr!r}")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"fusion.batch_size must be >= 1 or null, got {self.batch_size!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"fusion.attention is {self.attention!r}; expected one of {ATTENTIONS}")
        if not isinstance(self.normalize_inputs, bool):
            raise ValueError(f"fusion.normalize_inputs must be true or false, got {self.normalize_inputs!r}")

    @classmethod
    def from_params(cls, section: Mapping[str, Any], seed: int) -> "FusionConfig":
        """Build from the params.yaml `fusion` section; an unknown key is an error. The global `seed` wins over a
        `seed` key in the section (a saved config, `dataclasses.asdict(config)`, carries one)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"params.yaml fusion: unknown setting(s) {unknown}; known: {sorted(known - {'seed'})}")
        values = {k: v for k, v in dict(section).items() if k != "seed"}
        return cls(**values, seed=int(seed))


class AttentiveFusion(nn.Module):
    """Eqs. 8-10 for a batch of regions: inputs (n, 2, d) with a (n, 2) availability mask."""

    def __init__(self, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(dim, dim))
        self.b = nn.Parameter(torch.zeros(dim))
        self.u = nn.Parameter(torch.empty(dim, 1))
        nn.init.xavier_uniform_(self.W, generator=generator)
        nn.init.xavier_uniform_(self.u, generator=generator)

    def scores(self, modalities: torch.Tensor) -> torch.Tensor:
        """s_m = u . tanh(e_m W + b), shape (n, 2)."""
        return (torch.tanh(modalities @ self.W + self.b) @ self.u).squeeze(-1)

    def forward(self, modalities: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused vectors (n, d) and attention weights (n, 2); a False in `mask` gives that modality weight 0."""
        return weighted_sum(self.scores(modalities), modalities, mask)


class GlobalAttentionFusion(nn.Module):
    """The same weighted sum with ONE pair of scores shared by every region (`fusion.attention: global`).

    The two scores start at zero (weights ½, ½: the plain average) and train like W, b, u would; a region missing one
    modality still gets weight 1 on the other (the same masked softmax). The fused vector is then a fixed linear map of
    [e_RS ; e_SV], so a linear regressor downstream loses nothing through a per-region reweighting.
    """

    def __init__(self, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.dim = int(dim)  # kept for symmetry with AttentiveFusion; the scores do not depend on the vectors
        self.logits = nn.Parameter(torch.zeros(2))

    def scores(self, modalities: torch.Tensor) -> torch.Tensor:
        """The shared pair of scores, repeated for every region: shape (n, 2)."""
        return self.logits.expand(modalities.shape[0], 2)

    def forward(self, modalities: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused vectors (n, d) and attention weights (n, 2), as :meth:`AttentiveFusion.forward`."""
        return weighted_sum(self.scores(modalities), modalities, mask)


def weighted_sum(scores: torch.Tensor, modalities: torch.Tensor,
                 mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 10: softmax over the two scores (masked: a False gives weight 0) and the weighted sum of the modalities."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=1)
    fused = (weights.unsqueeze(-1) * modalities).sum(dim=1)
    return fused, weights


def fusion_module(config: FusionConfig, dim: int, generator: torch.Generator | None = None) -> nn.Module:
    """The attention module `config.attention` names: :class:`AttentiveFusion` (per region, MuseCL) or
    :class:`GlobalAttentionFusion`. The per-region module draws W and u from `generator` exactly as before the option
    existed, so the default config gives the same numbers."""
    if config.attention == "global":
        return GlobalAttentionFusion(dim, generator)
    return AttentiveFusion(dim, generator)


def prepare_modalities(modalities: torch.Tensor, config: FusionConfig) -> torch.Tensor:
    """The image inputs as the attention sees them: unchanged, or each region's e_RS and e_SV divided by its L2 norm
    (`fusion.normalize_inputs`; a missing modality's zero vector stays zero)."""
    return nn.functional.normalize(modalities, dim=-1) if config.normalize_inputs else modalities


def prepare_text(text: torch.Tensor | None, config: FusionConfig) -> torch.Tensor | None:
    """The text vectors as the alignment loss sees them: unchanged, or L2-normalised per region with
    `fusion.normalize_inputs` (the zero vector stays zero). The `image+text` output appends the stored vectors."""
    if text is None or not config.normalize_inputs:
        return text
    return nn.functional.normalize(text, dim=-1)


def alignment_loss(fused: torch.Tensor, text: torch.Tensor, loss: str, temperature: float = 0.5) -> torch.Tensor:
    """Eq. 11: `mse` (mean over regions and dimensions) or symmetric `infonce` over the rows of the batch."""
    if loss == "mse":
        return torch.mean((fused - text) ** 2)
    if loss == "infonce":
        logits = nn.functional.normalize(fused, dim=1) @ nn.functional.normalize(text, dim=1).T / temperature
        target = torch.arange(fused.shape[0], device=fused.device)
        return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))
    raise ValueError(f"no alignment loss {loss!r} (expected 'mse' or 'infonce')")
