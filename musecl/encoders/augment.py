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

Random crops (`crop`, `crop+rot90`) are a finite set too, so that the cached trunk can hold every one: a window of
`CROP_FRACTION` of each side at one of `CROP_POSITIONS` (centre, then the four corners), resized back to the image's
size (bilinear), before the flip and the turn. The window is drawn uniformly among the positions; position 0 is the
whole image (what evaluation sees), never drawn in training. The authors' RS transform is `Resize(256)` +
`RandomCrop(256)` (docs/encoders.md): on a square tile that crop is the identity, on a hexagon's bounding box (aspect
2/sqrt(3)) it shifts a window of sqrt(3)/2 = 0.87 of the long side, whence 7/8.

A draw is (flip, spatial) with spatial = quarter turns + 4 x crop position (0 for kinds without crops, so the
rotation/flip kinds draw and index exactly as before).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KINDS = ("none", "rot90", "hflip", "rot90+hflip", "crop", "crop+rot90")
CROP_FRACTION = 0.875  # side of a crop window relative to the image's side
CROP_POSITIONS = ("whole", "centre", "top_left", "top_right", "bottom_left", "bottom_right")  # 0 = no crop


def draw_augmentation(n: int, kind: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (flip: bool, spatial: int = quarter turns + 4 x crop position) for `n` images; flips are drawn first,
    then turns, then crop windows (1..5: a crop kind always crops), kind permitting."""
    flip = torch.rand(n, generator=generator) < 0.5 if "hflip" in kind else torch.zeros(n, dtype=torch.bool)
    turns = torch.randint(0, 4, (n,), generator=generator) if "rot90" in kind else torch.zeros(n, dtype=torch.long)
    if "crop" in kind:
        turns = turns + 4 * torch.randint(1, len(CROP_POSITIONS), (n,), generator=generator)
    return flip, turns


def crop_windows(x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Per image of the NCHW batch `x`, the window `CROP_POSITIONS[position]` resized back to the full size
    (position 0: the image itself)."""
    n, _, h, w = x.shape
    ch, cw = max(1, round(CROP_FRACTION * h)), max(1, round(CROP_FRACTION * w))
    offsets = {1: ((h - ch) // 2, (w - cw) // 2), 2: (0, 0), 3: (0, w - cw), 4: (h - ch, 0), 5: (h - ch, w - cw)}
    position = position.to(x.device).view(n, 1, 1, 1)
    out = x
    for p, (top, left) in offsets.items():
        if bool((position == p).any()):
            window = F.interpolate(x[:, :, top : top + ch, left : left + cw], size=(h, w), mode="bilinear",
                                   align_corners=False)
            out = torch.where(position == p, window, out)
    return out


def apply_augmentation(x: torch.Tensor, flip: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Crop window (`turns // 4`), flip (width), then rotate by `turns % 4` quarter turns, per image of the NCHW batch
    `x`."""
    n = x.shape[0]
    turns = turns.long()
    if bool((turns >= 4).any()):
        x = crop_windows(x, turns // 4)
        turns = turns % 4
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
    """Per-image random 90-degree rotations (tiles), crop windows (tiles) and/or horizontal flips (street view); draws
    from `generator`."""
    if "rot90" in kind and x.shape[2] != x.shape[3]:
        raise ValueError(f"rot90 augmentation needs square images, got {x.shape[2]}x{x.shape[3]}")
    flip, turns = draw_augmentation(x.shape[0], kind, generator)
    return apply_augmentation(x, flip, turns)


def variants(kind: str) -> list[tuple[bool, int]]:
    """Every (flip, spatial) the augmentation `kind` can draw, plus the whole image; variant 0 is always the
    unaugmented image (crop kinds: the whole image is stored but never drawn in training)."""
    flips = (False, True) if "hflip" in kind else (False,)
    turns = (0, 1, 2, 3) if "rot90" in kind else (0,)
    crops = range(len(CROP_POSITIONS)) if "crop" in kind else (0,)
    return [(f, 4 * c + t) for f in flips for c in crops for t in turns]


def variant_index(flip: torch.Tensor, turns: torch.Tensor, kind: str) -> torch.Tensor:
    """Position in `variants(kind)` of each drawn (flip, spatial)."""
    n_turns = 4 if "rot90" in kind else 1
    n_crops = len(CROP_POSITIONS) if "crop" in kind else 1
    turns = turns.long()
    return flip.long() * (n_turns * n_crops) + (turns // 4) * n_turns + turns % 4
