"""The attentive fusion module (eqs. 8-10), its alignment losses (eq. 11) and its settings (`FusionConfig`).

Per region, a score s_m = u . tanh(e_m W + b) for each image modality m, softmax over the two scores (masked where a
modality is missing), and the weighted sum of the two embeddings. This module and `musecl.fusion.train` import only
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

    @classmethod
    def from_params(cls, section: Mapping[str, Any], seed: int) -> "FusionConfig":
        """Build from the params.yaml `fusion` section (keys other than the config's fields are ignored)."""
        known = {f.name for f in fields(cls)} - {"seed"}
        values = {k: v for k, v in dict(section).items() if k in known}
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
        scores = self.scores(modalities)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        fused = (weights.unsqueeze(-1) * modalities).sum(dim=1)
        return fused, weights


def alignment_loss(fused: torch.Tensor, text: torch.Tensor, loss: str, temperature: float = 0.5) -> torch.Tensor:
    """Eq. 11: `mse` (mean over regions and dimensions) or symmetric `infonce` over the rows of the batch."""
    if loss == "mse":
        return torch.mean((fused - text) ** 2)
    if loss == "infonce":
        logits = nn.functional.normalize(fused, dim=1) @ nn.functional.normalize(text, dim=1).T / temperature
        target = torch.arange(fused.shape[0], device=fused.device)
        return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))
    raise ValueError(f"no alignment loss {loss!r} (expected 'mse' or 'infonce')")
