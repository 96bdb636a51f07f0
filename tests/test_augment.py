"""Augmentation: the random-crop kinds (`crop`, `crop+rot90`) as a finite set of variants, so the frozen-trunk path
(`musecl.encoders.trunk`) trains exactly what the pixel path trains (the training run itself:
tests/test_backbones.py); the rotation/flip kinds draw as before."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from musecl.encoders import TrainConfig
from musecl.encoders.augment import (CROP_FRACTION, CROP_POSITIONS, apply_augmentation, augment, draw_augmentation,
                                     variant_index, variants)


def expected_crop(img: torch.Tensor, position: int) -> torch.Tensor:
    """The crop window `position` of one CHW image, written out by hand."""
    _, h, w = img.shape
    ch, cw = round(CROP_FRACTION * h), round(CROP_FRACTION * w)
    top, left = {0: (0, 0), 1: ((h - ch) // 2, (w - cw) // 2), 2: (0, 0), 3: (0, w - cw), 4: (h - ch, 0),
                 5: (h - ch, w - cw)}[position]
    if position == 0:
        return img
    window = img[None, :, top : top + ch, left : left + cw]
    return F.interpolate(window, size=(h, w), mode="bilinear", align_corners=False)[0]


@pytest.mark.parametrize("kind", ["crop", "crop+rot90"])
def test_crop_variants_match_the_pixel_augmentation(kind):
    x = torch.rand(40, 3, 16, 16)
    pixel = augment(x, kind, torch.Generator().manual_seed(4))
    flip, spatial = draw_augmentation(40, kind, torch.Generator().manual_seed(4))
    index = variant_index(flip, spatial, kind)
    table = variants(kind)
    assert table[0] == (False, 0) and len(table) == len(CROP_POSITIONS) * (4 if "rot90" in kind else 1)
    assert len(set(table)) == len(table)
    drawn_crops = set()
    for i in range(40):
        f, s = table[int(index[i])]
        assert (f, s) == (bool(flip[i]), int(spatial[i]))
        assert s // 4 >= 1  # training always crops; the whole image (position 0) is what evaluation sees
        drawn_crops.add(s // 4)
        expected = torch.rot90(expected_crop(x[i], s // 4), s % 4, dims=(1, 2))
        assert torch.allclose(pixel[i], expected, atol=1e-6)
        one = apply_augmentation(x[i : i + 1], torch.tensor([f]), torch.tensor([s]))  # batch-independent
        assert torch.allclose(one[0], pixel[i], atol=1e-6)
    assert drawn_crops == set(range(1, len(CROP_POSITIONS)))


def test_rotation_and_flip_kinds_draw_as_before():
    """Adding crops must not change the draws of the existing kinds (the trained weights of rot90/hflip runs)."""
    for kind in ("rot90", "hflip", "rot90+hflip"):
        g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        flip, turns = draw_augmentation(50, kind, g1)
        ref_flip = torch.rand(50, generator=g2) < 0.5 if "hflip" in kind else torch.zeros(50, dtype=torch.bool)
        ref_turns = torch.randint(0, 4, (50,), generator=g2) if "rot90" in kind else torch.zeros(50, dtype=torch.long)
        assert torch.equal(flip, ref_flip) and torch.equal(turns, ref_turns)
        assert variants(kind) == [(f, t) for f in ((False, True) if "hflip" in kind else (False,))
                                  for t in ((0, 1, 2, 3) if "rot90" in kind else (0,))]


def test_config_accepts_the_crop_kinds():
    assert TrainConfig(augment="crop+rot90").augment == "crop+rot90"
    with pytest.raises(ValueError, match="crop\\+rot90"):
        TrainConfig(augment="crop+hflip")
