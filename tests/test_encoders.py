"""Encoders: models, the image cache, losses, the trainer (loss decreases, resume = uninterrupted) and region embeddings."""
from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from musecl.encoders import (
    ImageCache,
    LossSpec,
    ModelSpec,
    TrainConfig,
    build_encoder,
    build_image_cache,
    cache_from_arrays,
    imagenet_checkpoint,
    region_embeddings,
    sample_rows,
    train_encoder,
)
from musecl.encoders.embed import fill_missing, region_means
from musecl.encoders.train import augment, ntxent_loss, triplet_loss
from musecl.storage import save_torch

N_REGIONS, PER_REGION, SIZE = 16, 3, 32


def toy_images(seed: int = 0) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """Regions of 4 kinds; a kind is a stripe orientation/frequency; colours and noise vary per image."""
    rng = np.random.default_rng(seed)
    kind = np.arange(N_REGIONS) % 4
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images, ids, regions = [], [], []
    for r in range(N_REGIONS):
        for k in range(PER_REGION):
            freq = 2 + 2 * (kind[r] // 2)
            wave = np.sin(2 * np.pi * freq * (xx if kind[r] % 2 else yy) / SIZE)
            colour = rng.uniform(60, 200, size=3)
            img = colour + 50 * wave[..., None] + rng.normal(0, 25, size=(SIZE, SIZE, 3))
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            ids.append(f"r{r:02d}-{k}")
            regions.append(f"r{r:02d}")
    return np.stack(images), ids, regions, kind


def toy_triplets(n: int, seed: int, kind: np.ndarray) -> pd.DataFrame:
    """Positive: a random other region of the same kind; negative: a random region of another kind."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, N_REGIONS, n)
    p = (a + 4 * rng.integers(1, N_REGIONS // 4, n)) % N_REGIONS
    neg = (a + rng.integers(1, 4, n)) % N_REGIONS
    img = lambda regions: [f"r{r:02d}-{k}" for r, k in zip(regions, rng.integers(0, PER_REGION, len(regions)))]
    return pd.DataFrame({"anchor_image": img(a), "positive_image": img(p), "negative_image": img(neg)})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    images, ids, regions, kind = toy_images()
    cache = cache_from_arrays(images, ids, regions, tmp_path_factory.mktemp("toy") / "cache")
    return cache, toy_triplets(64, 1, kind), toy_triplets(32, 2, kind)


def small_config(**kw) -> TrainConfig:
    base = dict(model=ModelSpec("resnet18", embedding_dim=16), epochs=3, batch_size=16, augment="rot90", seed=3,
                progress=False)
    base.update(kw)
    return TrainConfig(**base)


# ---- models -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backbone,size,init", [("resnet18", 32, "torchvision"), ("inception_v3", 75, "torchvision"),
                                               ("inception_v3", 75, "kaiming")])
def test_encoder_output_shape_and_seeded_init(backbone, size, init):
    spec = ModelSpec(backbone, embedding_dim=128, init=init)
    a, b, c = build_encoder(spec, seed=1), build_encoder(spec, seed=1), build_encoder(spec, seed=2)
    x = torch.rand(2, 3, size, size)
    assert a.eval()(x).shape == (2, 128)
    assert torch.equal(a.head.weight, b.head.weight) and not torch.equal(a.head.weight, c.head.weight)


def test_projection_head():
    model = build_encoder(ModelSpec("resnet18", embedding_dim=32, projection_dim=8), seed=0).eval()
    x = torch.rand(3, 3, 32, 32)
    assert model(x).shape == (3, 32) and model(x, project=True).shape == (3, 8)


def test_imagenet_weights_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        build_encoder(ModelSpec("resnet18", weights="imagenet"))


@pytest.mark.parametrize("backbone", ["resnet18", "inception_v3"])
def test_imagenet_weights_are_loaded_from_the_hub_cache(tmp_path, monkeypatch, backbone):
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    torch.manual_seed(5)
    if backbone == "resnet18":
        reference = torchvision.models.resnet18(weights=None)
    else:  # torchvision's file has the auxiliary classifier too
        reference = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = imagenet_checkpoint(backbone)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = build_encoder(ModelSpec(backbone, weights="imagenet"), seed=0)
    first_conv = "conv1.weight" if backbone == "resnet18" else "Conv2d_1a_3x3.conv.weight"
    assert torch.equal(model.backbone.state_dict()[first_conv], reference.state_dict()[first_conv])


# ---- image cache ------------------------------------------------------------------------------------------------
def test_build_image_cache_from_files(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i, (w, h) in enumerate([(60, 40), (60, 40), (90, 60), (40, 40)]):
        arr = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / f"img{i}.png")
        rows.append({"image_id": f"i{i}", "region_id": f"r{i % 2}", "path": f"img{i}.png"})
    table = pd.DataFrame(rows)
    cache = build_image_cache(table, tmp_path, tmp_path / "cache", image_size=20, progress=False)
    assert cache.images.shape == (4, 20, 30, 3) and cache.images.dtype == np.uint8  # common aspect 3:2, short side 20
    assert cache.image_shape == (20, 30)
    reopened = ImageCache.open(tmp_path / "cache")
    assert np.array_equal(reopened.images, cache.images) and list(reopened.index["image_id"]) == ["i0", "i1", "i2", "i3"]
    assert list(cache.rows(["i2", "i0"])) == [2, 0]
    with pytest.raises(KeyError, match="i9"):
        cache.rows(["i9"])


def test_broken_image_leaves_no_cache(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    table = pd.DataFrame({"image_id": ["a", "b"], "region_id": ["r", "r"], "path": ["ok.png", "bad.png"]})
    with pytest.raises(ValueError, match="bad.png"):
        build_image_cache(table, tmp_path, tmp_path / "cache", image_size=8, progress=False)
    assert not (tmp_path / "cache").exists()


def test_sample_rows_accepts_ids_or_rows(toy):
    cache, train, _ = toy
    rows = sample_rows(cache, train)
    assert rows.shape == (len(train), 3)
    as_ints = pd.DataFrame(rows, columns=["anchor", "positive", "negative"])
    assert np.array_equal(sample_rows(cache, as_ints), rows)
    with pytest.raises(ValueError, match="expected columns"):
        sample_rows(cache, pd.DataFrame({"a": [1]}))
    with pytest.raises(KeyError, match="positive_image"):
        sample_rows(cache, train.assign(positive_image="missing"))


# ---- losses and augmentation ------------------------------------------------------------------------------------
def test_triplet_loss_by_hand():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # d_ap = 5, 1
    n = torch.tensor([[6.0, 8.0], [0.0, 2.0]])  # d_an = 10, 2
    loss, correct = triplet_loss(a, p, n, margin=5.0)
    assert loss.item() == pytest.approx((0.0 + 4.0) / 2, abs=1e-4) and correct.item() == 2
    loss_pen, _ = triplet_loss(a, p, n, margin=5.0, norm_penalty=0.1)
    assert loss_pen.item() == pytest.approx(2.0 + 0.1 * ((5 + 10) + (1 + 2)) / 2, abs=1e-4)


def test_ntxent_loss_prefers_matching_views():
    z = torch.randn(8, 16)
    good, correct = ntxent_loss(z, z + 0.01 * torch.randn(8, 16), temperature=0.5)
    bad, _ = ntxent_loss(z, torch.randn(8, 16), temperature=0.5)
    assert good < bad and correct.item() == 8


def test_augment_is_seeded_and_shape_preserving():
    x = torch.rand(10, 3, 8, 8)
    a = augment(x, "rot90+hflip", torch.Generator().manual_seed(1))
    b = augment(x, "rot90+hflip", torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    # every output image is one of the 8 symmetries of its input
    for i in range(10):
        variants = [torch.rot90(v, k, dims=(1, 2)) for v in (x[i], x[i].flip(2)) for k in range(4)]
        assert any(torch.equal(a[i], v) for v in variants)
    with pytest.raises(ValueError, match="square"):
        augment(torch.rand(2, 3, 8, 6), "rot90", torch.Generator())


# ---- trainer ----------------------------------------------------------------------------------------------------
def test_training_lowers_the_loss(toy, tmp_path):
    cache, train, val = toy
    result = train_encoder(cache, train, val, small_config(epochs=4, log_dir=str(tmp_path / "live")), tmp_path / "ckpt")
    h = result.history.set_index("epoch")
    assert list(h.index) == [0, 1, 2, 3, 4]
    assert h.loc[4, "train_loss"] < h.loc[1, "train_loss"]
    assert h["val_loss"].iloc[1:].min() < h.loc[0, "val_loss"]  # better than the untrained model
    assert result.best_epoch == int(h["val_accuracy"].iloc[1:].idxmax())
    assert (tmp_path / "ckpt" / "best.pt").is_file() and (tmp_path / "ckpt" / "last.pt").is_file()
    assert result.model.spec.embedding_dim == 16 and not result.model.training
    # DVCLive wrote one row per epoch (0 = untrained)
    acc = pd.read_csv(tmp_path / "live" / "plots" / "metrics" / "val" / "accuracy.tsv", sep="\t")
    assert acc["step"].tolist() == [0, 1, 2, 3, 4]


def test_interrupted_then_resumed_equals_uninterrupted(toy, tmp_path):
    cache, train, val = toy
    config = small_config(epochs=3, samples_per_epoch=32, val_samples=16)
    whole = train_encoder(cache, train, val, config, tmp_path / "whole")
    part = train_encoder(cache, train, val, replace(config, max_epochs_this_run=1), tmp_path / "split")
    assert part.history["epoch"].max() == 1
    resumed = train_encoder(cache, train, val, config, tmp_path / "split")
    assert resumed.resumed_from_epoch == 1
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(whole.history.drop(columns=["seconds", "train_images_per_s"]),
                                  resumed.history.drop(columns=["seconds", "train_images_per_s"]))
    assert whole.best_epoch == resumed.best_epoch
    # a finished run is not trained again
    again = train_encoder(cache, train, val, config, tmp_path / "whole")
    assert again.resumed_from_epoch == 3


def test_checkpoints_are_byte_identical_for_the_same_seed(toy, tmp_path):
    """Same seed, data and settings -> the same best.pt and last.pt bytes, also when the run was interrupted and
    resumed or logged to DVCLive (runtime-only settings and wall-clock timings stay out); another seed, other bytes."""
    cache, train, val = toy
    config = small_config(epochs=2, samples_per_epoch=32, val_samples=16)
    train_encoder(cache, train, val, config, tmp_path / "a")
    interrupted = replace(config, max_epochs_this_run=1, log_dir=str(tmp_path / "live"))
    train_encoder(cache, train, val, interrupted, tmp_path / "b")
    resumed = train_encoder(cache, train, val, config, tmp_path / "b")
    train_encoder(cache, train, val, replace(config, seed=4), tmp_path / "c")
    sha = lambda folder, name: hashlib.sha256((tmp_path / folder / name).read_bytes()).hexdigest()
    for name in ("best.pt", "last.pt"):
        assert sha("a", name) == sha("b", name), name
        assert sha("a", name) != sha("c", name), name
    # the timings: in the returned history for the epochs run in this process, never in the checkpoint
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert all("seconds" not in row and "train_images_per_s" not in row for row in state["history"])
    h = resumed.history.set_index("epoch")
    assert resumed.resumed_from_epoch == 1 and math.isnan(h.loc[1, "seconds"]) and h.loc[2, "seconds"] > 0
    assert h.loc[2, "train_images_per_s"] > 0 and math.isnan(h.loc[1, "train_images_per_s"])


def test_save_torch_bytes_do_not_depend_on_the_file_name(tmp_path):
    obj = {"w": torch.arange(6.0).reshape(2, 3), "history": [{"epoch": 1, "loss": 0.5}]}
    save_torch(obj, tmp_path / "one.pt")
    save_torch(obj, tmp_path / "sub" / "two.pt")
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "sub" / "two.pt").read_bytes()
    loaded = torch.load(tmp_path / "sub" / "two.pt", weights_only=True)
    assert torch.equal(loaded["w"], obj["w"]) and loaded["history"] == obj["history"]
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
    # equal values held by distinct objects (as after reading a checkpoint back) pickle to the same bytes
    rows = [{"epoch": 0}, {"epoch": 1}]
    rebuilt = [{"".join(["ep", "och"]): 0}, {"".join(["ep", "och"]): 1}]
    save_torch(rows, tmp_path / "rows.pt")
    save_torch(rebuilt, tmp_path / "rebuilt.pt")
    assert (tmp_path / "rows.pt").read_bytes() == (tmp_path / "rebuilt.pt").read_bytes()


def test_changed_settings_restart_instead_of_resuming(toy, tmp_path):
    cache, train, val = toy
    train_encoder(cache, train, val, small_config(epochs=1, samples_per_epoch=16, val_samples=16), tmp_path / "c")
    other = train_encoder(cache, train, val, small_config(epochs=1, samples_per_epoch=16, val_samples=16, lr=1e-3), tmp_path / "c")
    assert other.resumed_from_epoch == 0


def test_ntxent_pairs_train(toy, tmp_path):
    cache, train, val = toy
    config = small_config(epochs=2, samples_per_epoch=32, val_samples=16,
                          model=ModelSpec("resnet18", embedding_dim=16, projection_dim=8),
                          loss=LossSpec("ntxent", temperature=0.5), augment="rot90+hflip")
    result = train_encoder(cache, train[["anchor_image", "positive_image"]], val, config, tmp_path / "simclr")
    assert np.isfinite(result.history["train_loss"].iloc[1:]).all()
    assert result.model(torch.rand(2, 3, SIZE, SIZE)).shape == (2, 16)


def test_triplet_loss_needs_negatives(toy, tmp_path):
    cache, train, val = toy
    with pytest.raises(ValueError, match="needs a negative"):
        train_encoder(cache, train[["anchor_image", "positive_image"]], val, small_config(), tmp_path / "x")


def test_config_round_trip_and_unknown_keys():
    config = small_config(loss=LossSpec("triplet", margin=10.0, norm_penalty=0.01))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown trainer setting"):
        TrainConfig.from_dict({"epoch": 3})


# ---- region embeddings ------------------------------------------------------------------------------------------
def test_region_means_and_missing_regions():
    emb = np.array([[1.0, 1.0], [3.0, 3.0], [10.0, 0.0]], dtype=np.float32)
    means, counts = region_means(emb, np.array(["a", "a", "b"], dtype=object), ["a", "b", "c"])
    assert np.allclose(means, [[2, 2], [10, 0], [0, 0]]) and counts.tolist() == [2, 1, 0]
    assert np.allclose(fill_missing(means, counts, ["a", "b", "c"], "mean")[2], [6, 1])
    with pytest.raises(ValueError, match="have no image"):
        fill_missing(means, counts, ["a", "b", "c"], "error")


def test_region_embeddings_fill_from_h3_neighbours():
    import h3

    centre = h3.latlng_to_cell(39.9, 116.4, 8)
    ring = sorted(h3.grid_ring(centre, 1))
    far = sorted(h3.grid_ring(centre, 4))[0]
    ids = [centre, *ring[:2], far]
    means = np.array([[0, 0], [2, 2], [4, 4], [100, 100]], dtype=np.float32)
    filled = fill_missing(means, np.array([0, 1, 1, 1]), ids, "neighbours")
    assert np.allclose(filled[0], [3, 3])  # mean of its two neighbours with images, not the far region


def test_region_embeddings_table(toy, tmp_path):
    cache, train, val = toy
    model = build_encoder(ModelSpec("resnet18", embedding_dim=8), seed=0)
    regions = [f"r{r:02d}" for r in range(N_REGIONS)] + ["r99"]
    table, counts = region_embeddings(model, cache, regions, missing="mean", batch_size=10)
    assert table.shape == (N_REGIONS + 1, 8) and table.index.name == "region_id"
    assert list(table.columns[:2]) == ["e000", "e001"] and counts["r99"] == 0 and counts["r00"] == PER_REGION
    assert np.isfinite(table.to_numpy()).all()


def test_training_code_needs_only_the_core_packages():
    """musecl.encoders and the benchmark import without geopandas, h3, dvclive, matplotlib (bare GPU machine)."""
    code = (
        "import sys\n"
        "for name in ('geopandas', 'h3', 'dvclive', 'matplotlib', 'shapely', 'sklearn', 'scipy'):\n"
        "    sys.modules[name] = None\n"
        "import musecl.encoders, musecl.encoders.train, musecl.encoders.embed\n"
        "import runpy; runpy.run_path('benchmarks/train_throughput.py', run_name='not_main')\n"
    )
    from musecl.config import repo_root

    done = subprocess.run([sys.executable, "-c", code], cwd=repo_root(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_inception_init_choices():
    deep = lambda m: m.backbone.Mixed_7c.branch3x3dbl_2.conv.weight  # 448 -> 384, 3x3
    tv = deep(build_encoder(ModelSpec("inception_v3", init="torchvision"), seed=0))
    he = deep(build_encoder(ModelSpec("inception_v3", init="kaiming"), seed=0))
    assert abs(tv.std().item() - 0.1) < 0.02  # truncated normal, std 0.1 before truncation
    assert abs(he.std().item() - (2 / (384 * 9)) ** 0.5) < 0.003  # He normal, fan_out
