"""Notebooks 04 (POI Word2Vec) and 05 (attentive fusion) on the tiny configuration."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from musecl.data import CityBundle
from musecl.embeddings import read_embeddings

pytestmark = pytest.mark.notebook


def test_poi_word2vec_notebook(tiny_pipeline) -> None:
    executed = tiny_pipeline.run("04_poi_word2vec")
    assert executed.is_file()
    paths = tiny_pipeline.paths
    bundle = CityBundle(paths["bundle"])
    regions = bundle.regions()["region_id"]
    table = read_embeddings(paths["work"] / "embeddings" / "poi_text.parquet")
    assert set(table.index) == set(regions)
    assert table.shape[1] == 128
    assert (np.linalg.norm(table.to_numpy(), axis=1) > 0).mean() > 0.5  # most tiny regions have POIs
    assert (paths["models"] / "word2vec" / "word2vec.model").is_file()
    metrics = json.loads((paths["reports"] / "poi_text.json").read_text())
    assert metrics["word2vec"]["mode"] == "deterministic" and metrics["word2vec"]["words_per_second"] > 0
    assert metrics["regions"]["regions"] == len(regions)
    report = paths["reports"] / "04_poi_word2vec"
    nearest = (report / "nearest_words.md").read_text()
    assert nearest.count("\n") >= 2 + 3  # header, rule and the tiny config's 3 categories
    for name in ("text_embedding_projection.png", "text_components_map.png", "word2vec_throughput.tex"):
        assert (report / name).stat().st_size > 0, name


def test_fusion_notebook(tiny_pipeline) -> None:
    executed = tiny_pipeline.run("05_fusion")
    assert executed.is_file()
    paths = tiny_pipeline.paths
    embeddings = paths["work"] / "embeddings"
    rs = read_embeddings(embeddings / "rs.parquet")
    sv = read_embeddings(embeddings / "sv.parquet")
    fused = read_embeddings(embeddings / "musecl.parquet")
    assert set(fused.index) == set(rs.index) | set(sv.index)
    assert fused.shape[1] == rs.shape[1]  # params default output: image
    attention = pd.read_parquet(embeddings / "musecl_attention.parquet").set_index("region_id")
    np.testing.assert_allclose(attention["alpha_rs"] + attention["alpha_sv"], 1.0, atol=1e-6)
    # the fused vector is the attention-weighted sum of the two image vectors
    common = rs.index.intersection(sv.index)
    a = attention.loc[common, "alpha_rs"].to_numpy()[:, None]
    expected = a * rs.loc[common].to_numpy() + (1 - a) * sv.loc[common].to_numpy()
    scale = max(np.abs(rs.to_numpy()).max(), np.abs(sv.to_numpy()).max())  # float32 rounding grows with the inputs
    np.testing.assert_allclose(fused.loc[common].to_numpy(), expected, rtol=1e-4, atol=1e-6 * scale)
    assert (paths["models"] / "fusion" / "fusion.pt").is_file()
    metrics = json.loads((paths["reports"] / "fusion.json").read_text())
    assert metrics["config"]["epochs"] == 5 and np.isfinite(metrics["final_loss"])
    curve = pd.read_csv(paths["reports"] / "05_fusion" / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv",
                        sep="\t")
    assert len(curve) == 5
    for name in ("training_curve.png", "attention_map.png", "attention_summary.md"):
        assert (paths["reports"] / "05_fusion" / name).stat().st_size > 0, name
