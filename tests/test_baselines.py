"""Baseline runs and fusion variants: settings resolution (params.yaml `baselines`) and the untrained-feature encoder
(musecl.methods.BackboneFeatures, which the runs with `train: false` are)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from musecl.config import load_params
from musecl.methods import BackboneFeatures, City, resolve_weights
from musecl.stages import baselines, variants


@pytest.fixture()
def params():
    return copy.deepcopy(load_params())


def test_runs_inherit_their_modality_settings_and_override_only_what_they_say(params):
    run = baselines.baseline_run(params, "tile2vec")
    assert run.modality == "rs" and run.train
    assert run.pairs["rule"] == "neighbours" and run.pairs["negative_min_ring"] == 2
    assert run.pairs["n_train"] == params["pairs"]["modalities"]["rs"]["n_train"]  # inherited
    assert run.encoder["loss"] == {"kind": "triplet", "margin": 10.0, "norm_penalty": 0.01}
    for key in ("epochs", "samples_per_epoch", "lr", "batch_size", "image_size", "backbone"):
        assert run.encoder[key] == params["encoders"]["rs"][key], key
    sv = baselines.baseline_run(params, "sv_random")
    assert sv.pairs["rule"] == "random" and sv.encoder == params["encoders"]["sv"]


def test_every_configured_run_and_variant_resolves(params):
    assert baselines.run_names(params) == list(params["baselines"]["runs"])
    table = baselines.run_table(params)
    assert list(table.index) == list(params["baselines"]["runs"])
    assert not table.loc["rs_imagenet", "trained"] and not table.loc["sv_imagenet", "trained"]
    for name in variants.variant_names(params):
        v = variants.fusion_variant(params, name)
        assert set(v.fusion) >= set(params["fusion"])
    assert variants.fusion_variant(params, "fusion_svrv").fusion["loss"] == "none"
    assert variants.fusion_variant(params, "musecl_no_poi_pairs").rs == "rs_random"


def test_bad_run_settings_name_the_params_key(params):
    with pytest.raises(KeyError, match="baselines.runs has no entry .nope."):
        baselines.baseline_run(params, "nope")
    params["baselines"]["runs"]["tile2vec"]["modality"] = "xx"
    with pytest.raises(ValueError, match=r"baselines.runs.tile2vec.modality"):
        baselines.baseline_run(params, "tile2vec")
    params["baselines"]["runs"]["tile2vec"]["modality"] = "rs"
    params["baselines"]["runs"]["tile2vec"]["encoder"]["image_size"] = 999
    with pytest.raises(ValueError, match="image cache"):
        baselines.baseline_run(params, "tile2vec")
    params["baselines"]["runs"]["tile2vec"]["colour"] = 1
    with pytest.raises(ValueError, match="unknown key"):
        baselines.baseline_run(params, "tile2vec")
    params["baselines"]["selected"] = ["tile2vec", "missing"]
    with pytest.raises(KeyError, match="missing"):
        baselines.run_names(params)


def test_weights_auto_uses_imagenet_only_when_the_file_exists(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert resolve_weights("auto", "resnet18") == "none"
    assert resolve_weights("none", "resnet18") == "none"
    from musecl.encoders import imagenet_checkpoint

    path = imagenet_checkpoint("resnet18")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert resolve_weights("auto", "resnet18") == "imagenet"


def test_feature_encoder_gives_pooled_backbone_features_with_recalibrated_batchnorm(params, tmp_path):
    from musecl.encoders import cache_from_arrays, embed_images

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(12, 32, 32, 3), dtype=np.uint8)
    cache = cache_from_arrays(images, [f"i{k}" for k in range(12)], [f"r{k % 4}" for k in range(12)], tmp_path / "c")
    params["encoders"]["rs"]["image_size"] = 32
    params["baselines"]["runs"]["resnet18_features"] = {
        "modality": "rs", "train": False, "encoder": {"backbone": "resnet18", "weights": "none", "bn_recalibration": 12,
                                                      "frozen_stages": 0, "input_size": None, "normalize": "none"}}
    params["encoders"]["runtime"]["device"] = "cpu"
    run = baselines.baseline_run(params, "resnet18_features")
    method = baselines.run_method(params, run)
    assert isinstance(method, BackboneFeatures)
    city = City(params, bundle=None, progress=False, caches={"rs": cache})
    model, weights = method.fit(city).model, method.weights
    assert weights == "none" and not model.training
    z = embed_images(model, cache, batch_size=5, device="cpu")
    assert z.shape == (12, 512) and np.isfinite(z).all()
    bn = model.backbone.bn1
    assert not np.allclose(bn.running_mean.numpy(), 0.0)  # estimated on the images, not the init's zeros
    again = BackboneFeatures(run.name, "rs", run.encoder).fit(city).model
    assert np.array_equal(embed_images(again, cache, batch_size=5, device="cpu"), z)  # seeded
    # saved as tensors only, byte-identical for the same seed and images, and loads back to the same features
    first, second = method.save(tmp_path / "a"), BackboneFeatures(run.name, "rs", run.encoder).fit(city).save(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    loaded = BackboneFeatures.load(tmp_path / "a", settings=run.encoder)
    assert np.array_equal(embed_images(loaded.model, cache, batch_size=5, device="cpu"), z)


def test_feature_encoder_upsamples_images_smaller_than_the_backbone_needs(params, tmp_path):
    from musecl.encoders import cache_from_arrays, embed_images

    images = np.random.default_rng(1).integers(0, 255, size=(4, 64, 64, 3), dtype=np.uint8)
    cache = cache_from_arrays(images, [f"i{k}" for k in range(4)], ["r0", "r0", "r1", "r1"], tmp_path / "c")
    params["encoders"]["sv"]["image_size"] = 64
    params["encoders"]["runtime"]["device"] = "cpu"
    params["baselines"]["runs"]["inception_v3_features"] = {
        "modality": "sv", "train": False, "encoder": {"backbone": "inception_v3", "weights": "none", "bn_recalibration": 4,
                                                      "frozen_stages": 0, "input_size": None}}
    run = baselines.baseline_run(params, "inception_v3_features")
    city = City(params, bundle=None, progress=False, caches={"sv": cache})
    method = BackboneFeatures(run.name, "sv", run.encoder).fit(city)
    model = method.model
    assert method.input_size(city) == [75, 75]
    z = embed_images(model, cache, batch_size=4, device="cpu")
    assert z.shape == (4, 2048) and np.isfinite(z).all()
