"""Augmentation: the random-crop kinds (`crop`, `crop+rot90`) as a finite set of variants, so the frozen-trunk path
(`musecl.encoders.trunk`) trains exactly what the pixel path trains; the rotation/flip kinds draw as before."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from musecl.encoders import ModelSpec, TrainConfig, cache_from_arrays, train_encoder
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


def test_trunk_cache_trains_what_the_pixel_path_trains_with_crops(tmp_path):
    """crop+rot90: the cached-trunk run (24 variants per image) and the pixel run end alike."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(24, 32, 32, 3), dtype=np.uint8)
    cache = cache_from_arrays(images, [f"i{i}" for i in range(24)], [f"r{i // 3}" for i in range(24)], tmp_path / "c")
    trip = np.stack([rng.permutation(24)[:3] for _ in range(40)])
    spec = ModelSpec("efficientnet_lite0", embedding_dim=8, frozen_stages=7, normalize="half", input_size=32)
    config = TrainConfig(model=spec, epochs=2, batch_size=8, augment="crop+rot90", seed=1, progress=False,
                         bn_recalibration=16, select_by="val_loss")
    cached = train_encoder(cache, trip, trip[:16], config, tmp_path / "cached")
    pixels = train_encoder(cache, trip, trip[:16], replace(config, trunk_cache=False), tmp_path / "pixels")
    x = torch.from_numpy(images[:5]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        a, b = cached.model.eval()(x), pixels.model.eval()(x)
    assert torch.allclose(a, b, atol=1e-3, rtol=1e-3), (a - b).abs().max()
    assert np.allclose(cached.history["train_loss"].to_numpy()[1:], pixels.history["train_loss"].to_numpy()[1:],
                       rtol=1e-3)
