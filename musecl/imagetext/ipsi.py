"""UrbanLN's Information-Preserved Stretching Interpolation (IPSI; Long-CLIP's knowledge-preserved stretching): a
text tower trained at 77 positions is given `ratio * 77 - (ratio - 1) * keep` positions (248 for keep 20, ratio 4)
so that long captions fit, without forgetting what its first positions learned.

The table (docs/method.md 3.3, implemented from that description): positions `p < keep` are copied; each interval
between old positions `keep + i` and `keep + i + 1` (i = 0 .. L - 2 - keep) becomes `ratio` new slots, new slot
`keep + ratio * i + j` = `(1 - j / ratio) * pe[keep + i] + (j / ratio) * pe[keep + i + 1]`; the last `ratio` slots
extrapolate linearly past the last position: `pe[L-1] + t / ratio * (pe[L-1] - pe[L-2])`, t = 0 .. ratio - 1.

:func:`stretch_text_context` applies it to an `open_clip.CLIP` model in place: the positional embedding, the causal
attention mask and the context length (248 then). Long-CLIP also keeps the first `keep` rows fixed while the rest
trains; :class:`KeptRows` does that (restored after every optimiser step), when `ipsi_freeze_kept` is set.
"""
from __future__ import annotations

import torch
from torch import nn


def stretched_length(length: int, keep: int = 20, ratio: int = 4) -> int:
    """Positions after stretching: `ratio * length - (ratio - 1) * keep` (77, 20, 4 -> 248)."""
    return ratio * length - (ratio - 1) * keep


def stretch_positional_embedding(pe: torch.Tensor, keep: int = 20, ratio: int = 4) -> torch.Tensor:
    """The stretched (ratio * L - (ratio - 1) * keep, D) table of a (L, D) positional embedding (see the module)."""
    if pe.ndim != 2:
        raise ValueError(f"positional embedding must be (positions, width), got shape {tuple(pe.shape)}")
    length = pe.shape[0]
    if not (0 <= keep <= length - 2) or ratio < 1:
        raise ValueError(f"IPSI needs 0 <= keep <= positions - 2 and ratio >= 1; got keep {keep}, ratio {ratio}, "
                         f"{length} positions")
    pe = pe.detach()
    frac = torch.arange(ratio, dtype=pe.dtype, device=pe.device) / ratio  # (ratio,)
    left, right = pe[keep:-1], pe[keep + 1 :]  # (L - 1 - keep, D) interval ends
    middle = left[:, None, :] + frac[None, :, None] * (right - left)[:, None, :]  # (L - 1 - keep, ratio, D)
    last = pe[-1] + frac[:, None] * (pe[-1] - pe[-2])  # (ratio, D)
    out = torch.cat([pe[:keep], middle.reshape(-1, pe.shape[1]), last])
    assert out.shape[0] == stretched_length(length, keep, ratio)
    return out


def causal_mask(length: int, device: torch.device | None = None) -> torch.Tensor:
    """open_clip's additive causal mask: 0 on and below the diagonal, -inf above."""
    return torch.full((length, length), float("-inf"), device=device).triu_(1)


def stretch_text_context(model: nn.Module, keep: int = 20, ratio: int = 4) -> int:
    """Stretch the text positions of an `open_clip.CLIP` model in place (positional embedding, causal mask, context
    length); returns the new context length."""
    pe = model.positional_embedding
    new = stretch_positional_embedding(pe.data, keep, ratio)
    model.positional_embedding = nn.Parameter(new.clone(), requires_grad=pe.requires_grad)
    model.attn_mask = causal_mask(new.shape[0], pe.device)
    model.context_length = new.shape[0]
    return int(new.shape[0])


class KeptRows:
    """The first `keep` rows of a parameter, held fixed: `restore()` after each optimiser step writes them back
    (Long-CLIP's frozen copy of the positions below `keep`; weight decay and Adam cannot move them)."""

    def __init__(self, param: nn.Parameter, keep: int) -> None:
        self.param = param
        self.keep = keep
        self.saved = param.detach()[:keep].clone()

    def restore(self) -> None:
        with torch.no_grad():
            self.param[: self.keep].copy_(self.saved)
