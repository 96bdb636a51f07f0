"""Training-time augmentation of whole batches on the device: per-image random 90-degree rotations (remote-sensing
tiles have no "up") and/or horizontal flips (street view), drawn from an explicit generator seeded by (seed, epoch,
rank), so a resumed run replays exactly the draws of an uninterrupted one.

Why not torchvision.transforms.v2: its RandomHorizontalFlip draws one decision per call from torch's *global* generator
(`torch.rand(1)`), so applied to a batch it flips all images or none; per-image draws would need one call per image
(a Python loop over the batch, slower) and still could not take our generator, and RandomRotation samples a continuous
angle and resamples instead of choosing among exact 90-degree turns. Neither reproduces these draws, so switching would
change the trained weights; this hand-written version is a few vectorised tensor ops and stays.
"""
from __future__ import annotations

import torch


def augment(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Per-image random 90-degree rotations (tiles) and/or horizontal flips (street view); draws from `generator`."""
    n = x.shape[0]
    if "hflip" in kind:
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    if "rot90" in kind:
        if x.shape[2] != x.shape[3]:
            raise ValueError(f"rot90 augmentation needs square images, got {x.shape[2]}x{x.shape[3]}")
        turns = torch.randint(0, 4, (n,), generator=generator).to(x.device).view(n, 1, 1, 1)
        out = x
        for k in (1, 2, 3):
            out = torch.where(turns == k, torch.rot90(x, k, dims=(2, 3)), out)
        x = out
    return x
