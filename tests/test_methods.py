"""The one shape of representation methods (musecl.methods): registry, City inputs, and each method's fit/transform."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from musecl.config import load_params
from musecl.embeddings import to_frame
from musecl.methods import METHODS, City, FusedRegions, PoiText, RegionEmbedder, TripletEncoder, method_class, register_method


@pytest.fixture()
def params(tmp_path):
    p = copy.deepcopy(load_params())
    p["paths"] = {k: str(tmp_path / k) for k in ("bundle", "work", "models", "reports")}
    return p


def test_every_pipeline_method_is_registered_with_one_shape():
    assert set(METHODS) >= {"triplet_encoder", "backbone_features", "word2vec_poi_text", "attentive_fusion"}
    for kind, cls in METHODS.items():
        assert issubclass(cls, RegionEmbedder) and cls.kind == kind
        for verb in ("fit", "transform", "fit_transform", "save", "load"):
            assert callable(getattr(cls, verb)), (kind, verb)
    with pytest.raises(KeyError, match="registered: "):
        method_class("nope")


def test_registering_a_kind_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register_method("attentive_fusion")(type("Other", (FusedRegions,), {}))
    assert METHODS["attentive_fusion"] is FusedRegions


def test_city_reads_in_memory_tables_first_and_names_the_stage_of_a_missing_cache(params):
    table = to_frame(["a", "b"], np.ones((2, 3)))
    city = City(params, bundle=None, tables={"rs": table})
    assert city.embeddings("rs") is table
    with pytest.raises(FileNotFoundError, match="sv.parquet"):
        city.embeddings("sv")
    with pytest.raises(FileNotFoundError, match=r"dvc repro encoders@rs"):
        city.image_cache("rs")


def test_transform_before_fit_is_an_error(params):
    with pytest.raises(RuntimeError, match="fit"):
        TripletEncoder("rs", "rs", {}, params["paths"]["models"]).transform(City(params, None))
    with pytest.raises(ValueError, match="modality must be one of"):
        TripletEncoder("x", "satellite", {}, params["paths"]["models"])


def test_fused_regions_matches_the_fusion_function_and_saves_the_same_bytes(params, tmp_path):
    from musecl.fusion import FusionConfig, fuse_regions

    rng = np.random.default_rng(3)
    ids = [f"r{i}" for i in range(40)]
    tables = {name: to_frame(ids, rng.normal(size=(40, 8))) for name in ("rs", "sv", "poi_text")}
    cfg = {**params["fusion"], "epochs": 3}
    city = City(params, bundle=None, progress=False, tables=dict(tables))
    method = FusedRegions("musecl", cfg).fit(city)
    expected = fuse_regions(tables["rs"], tables["sv"], tables["poi_text"], FusionConfig.from_params(cfg, city.seed))
    pd.testing.assert_frame_equal(method.transform(city), expected.embeddings)
    pd.testing.assert_frame_equal(method.attention, expected.attention)
    a = method.save(tmp_path / "a")
    b = FusedRegions("musecl", cfg).fit(city).save(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    loaded = FusedRegions.load(tmp_path / "a")
    assert loaded.cfg["loss"] == cfg["loss"]


def test_poi_text_method_is_the_poi_text_chain(tiny_bundle, params, tmp_path):
    from musecl import text

    params["poi_text"]["word2vec"].update({"vector_size": 16, "epochs": 1})
    city = City(params, tiny_bundle, progress=False)
    method = PoiText.from_params(params).fit(city)
    table = method.transform(city)
    cfg = params["poi_text"]
    pois = tiny_bundle.pois()
    tokens = text.tokenize_pois(pois, split_han=cfg["tokenizer"]["split_han"])
    config = text.Word2VecConfig.from_params(cfg["word2vec"])
    run = text.train_word2vec(text.build_sentences(tokens, config.sentences), config, seed=city.seed)
    regions = tiny_bundle.regions()["region_id"]
    poi_regions = text.assign_pois_to_regions(pois, regions, tiny_bundle.h3_resolution)
    expected = text.region_text_embeddings(tokens, poi_regions, run.wv, regions, source=cfg["region_tokens"]).table
    pd.testing.assert_frame_equal(table, expected)
    # saved twice (two fits, same seed): the same bytes, so DVC sees no change on a rerun
    first = method.save(tmp_path / "a")
    second = PoiText.from_params(params).fit(city).save(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "a" / "training.json").read_bytes() == (tmp_path / "b" / "training.json").read_bytes()
    assert np.array_equal(PoiText.load(tmp_path / "a").model.wv.vectors, run.wv.vectors)
    small = PoiText.from_params(params, vector_size=8).fit_transform(city)
    assert small.shape[1] == 8
