"""Training-time augmentation of whole batches on the device: per-image random 90-degree rotations (remote-sensing
tiles have no "up") and/or horizontal flips (street view), drawn from an explicit generator seeded by (seed, epoch,
rank), so a resumed run replays exactly the draws of an uninterrupted one.

The draws (`draw_augmentation`) are separate from applying them (`apply_augmentation`): a trainer with a frozen,
cached trunk (`musecl.encoders.trunk`) draws the same flips and turns and looks up the cached trunk output of that
variant of the image (`variant_index`) instead of transforming pixels.

Why not torchvision.transforms.v2: its RandomHorizontalFlip draws one decision per call from torch's *global* generator
(`torch.rand(1)`), so applied to a batch it flips all images or none; per-image draws would need one call per image
(a Python loop over the batch, slower) and still could not take our generator, and RandomRotation samples a continuous
angle and resamples instead of choosing among exact 90-degree turns. Neither reproduces these draws, so switching would
change the trained weights; this hand-written version is a few vectorised tensor ops and stays.
"""
from __future__ import annotations

import torch

KINDS = ("none", "rot90", "hflip", "rot90+hflip")


def draw_augmentation(n: int, kind: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (flip: bool, turns: int in 0..3) for `n` images; flips are drawn first, then turns (kind permitting)."""
    flip = torch.rand(n, generator=generator) < 0.5 if "hflip" in kind else torch.zeros(n, dtype=torch.bool)
    turns = torch.randint(0, 4, (n,), generator=generator) if "rot90" in kind else torch.zeros(n, dtype=torch.long)
    return flip, turns


def apply_augmentation(x: torch.Tensor, flip: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Flip (width) then rotate by `turns` quarter turns, per image of the NCHW batch `x`."""
    n = x.shape[0]
    if bool(flip.any()):
        x = torch.where(flip.to(x.device).view(n, 1, 1, 1), x.flip(3), x)
    if bool(turns.any()):
        if x.shape[2] != x.shape[3]:
            raise ValueError(f"rot90 augmentation needs square images, got {x.shape[2]}x{x.shape[3]}")
        turns = turns.to(x.device).view(n, 1, 1, 1)
        out = x
        for k in (1, 2, 3):
            out = torch.where(turns == k, torch.rot90(x, k, dims=(2, 3)), out)
        x = out
    return x


def augment(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Per-image random 90-degree rotations (tiles) and/or horizontal flips (street view); draws from `generator`."""
    if "rot90" in kind and x.shape[2] != x.shape[3]:
        raise ValueError(f"rot90 augmentation needs square images, got {x.shape[2]}x{x.shape[3]}")
    flip, turns = draw_augmentation(x.shape[0], kind, generator)
    return apply_augmentation(x, flip, turns)


def variants(kind: str) -> list[tuple[bool, int]]:
    """Every (flip, turns) the augmentation `kind` can draw; variant 0 is always the unaugmented image."""
    flips = (False, True) if "hflip" in kind else (False,)
    turns = (0, 1, 2, 3) if "rot90" in kind else (0,)
    return [(f, t) for f in flips for t in turns]


def variant_index(flip: torch.Tensor, turns: torch.Tensor, kind: str) -> torch.Tensor:
    """Position in `variants(kind)` of each drawn (flip, turns)."""
    n_turns = 4 if "rot90" in kind else 1
    return flip.long() * n_turns + turns.long()
