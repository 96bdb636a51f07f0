"""Notebooks 04b (captions, consensus) and 04c (UrbanCLIP, UrbanLN and its ablations) on the tiny configuration."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from musecl.data import CityBundle
from musecl.embeddings import read_embeddings

pytestmark = pytest.mark.notebook

RUNS = ("urbanclip", "urbanln_si", "urbanln_sv", "urbanln_sv_no_ipsi", "urbanln_sv_no_msd", "urbanln_sv_no_consensus",
        "urbanln_sv_no_refine")


def test_captions_notebook(tiny_pipeline) -> None:
    executed = tiny_pipeline.run("04b_captions")
    assert "all checks passed" in executed.read_text()
    paths = tiny_pipeline.paths
    bundle = CityBundle(paths["bundle"])
    candidates = bundle.read("captions")
    images = candidates[["modality", "image_id"]].drop_duplicates()
    for name in ("consensus", "random"):
        chosen = pd.read_parquet(paths["work"] / "captions" / f"{name}.parquet")
        assert len(chosen) == len(images)
        assert set(chosen["captioner"]) <= set(candidates["captioner"])
    metrics = json.loads((paths["reports"] / "captions.json").read_text())
    assert metrics["captions"] == len(candidates) and 0 <= metrics["share_over_77_tokens"] <= 1
    assert set(metrics["hallucination_rate"]) >= {"consensus", "random captioner"}
    report = paths["reports"] / "04b_captions"
    for name in ("caption_lengths.png", "caption_quality.png", "captioners.md", "caption_quality.tex"):
        assert (report / name).stat().st_size > 0, name


def test_image_text_notebook(tiny_pipeline) -> None:
    executed = tiny_pipeline.run("04c_image_text")
    text = executed.read_text()
    assert "all checks passed" in text and "What this shows" in text
    paths = tiny_pipeline.paths
    regions = CityBundle(paths["bundle"]).regions()["region_id"]
    for run in RUNS:
        table = read_embeddings(paths["work"] / "embeddings" / f"{run}.parquet")
        assert set(table.index) == set(regions) and np.isfinite(table.to_numpy()).all(), run
        assert (paths["models"] / "imagetext" / run / "model.pt").is_file(), run
    metrics = json.loads((paths["reports"] / "imagetext.json").read_text())
    assert set(metrics) == set(RUNS)
    assert all(0 <= m["i2t_R@10"] <= 1 for m in metrics.values())
    report = paths["reports"] / "04c_image_text"
    for name in ("training_curves.png", "retrieval.png", "runs.md"):
        assert (report / name).stat().st_size > 0, name


def test_runs_sharing_captions_share_one_refinement(tiny_pipeline, tmp_path, monkeypatch) -> None:
    """The stage refines the captions once per (modality, captions): a second run gets the first one's table, and
    it is what refining again with the shared short-caption model gives."""
    from musecl.config import deep_merge, load_params, repo_root
    from musecl.methods import City, ImageTextEmbedder
    from musecl.stages import imagetext as stage

    tiny_pipeline.run("04c_image_text")  # the tiny city's captions and image caches
    params = load_params(repo_root() / "params.yaml", deep_merge(tiny_pipeline.overrides, {
        "paths": {"models": str(tmp_path / "models")},
        "imagetext": {"selected": ["urbanln_sv", "urbanln_sv_no_msd"]}}))
    monkeypatch.setattr(ImageTextEmbedder, "write", lambda self, table, city: None)  # keep the pipeline's tables
    calls = []
    original = ImageTextEmbedder.refine
    monkeypatch.setattr(ImageTextEmbedder, "refine", lambda self, *a: calls.append(self.name) or original(self, *a))
    bundle = CityBundle(params["paths"]["bundle"])
    results = stage.run_all(params, bundle)
    assert calls == ["urbanln_sv"]
    first, second = results["urbanln_sv"].method, results["urbanln_sv_no_msd"].method
    assert second.refined is first.refined and second.pretrained is first.pretrained
    city = City(params, bundle, progress=False)
    rows, table, _ = second.training_rows(city)
    again = original(second, second.pretrained, second.tokens(city)[np.array(rows, dtype=np.int64)], table)
    pd.testing.assert_frame_equal(again, second.refined)
    mismatched = ImageTextEmbedder(second.run, second.config, second.settings, second.captions,
                                   pretrained=second.pretrained, refined=second.refined.iloc[::-1])
    with pytest.raises(ValueError, match="not those of this run's images"):
        mismatched.fit(city)
