"""A city with any non-empty subset of the four modalities: the bundle says which it has, the validator accepts a
partial set (a warning naming them) and refuses none, the pairs fall back to a documented rule when a similarity
source is missing, degenerate similarities are refused with their cause, and skipped outputs hold their reason."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from musecl.data import CityBundle, schema
from musecl.data.bundle import BundleError


@pytest.fixture()
def city_copy(tiny_bundle, tmp_path):
    """A writable copy of the tiny synthetic city (all four modalities)."""
    root = tmp_path / "city"
    shutil.copytree(tiny_bundle.root, root)
    return root


def drop(root, *tables):
    for table in tables:
        (root / schema.TABLES[table].file).unlink()
    return CityBundle(root)


def test_bundle_names_its_modalities(city_copy):
    assert CityBundle(city_copy).modalities == ("rs", "sv", "poi", "mobility")
    bundle = drop(city_copy, "pois", "trips", "trajectories")
    assert bundle.modalities == ("rs", "sv") and bundle.missing_modalities() == ("poi", "mobility")
    with pytest.raises(BundleError, match=r"the city has no POIs \(modality 'poi': pois.parquet absent\)"):
        bundle.pois()


def test_validator_accepts_a_partial_city_and_refuses_an_empty_one(city_copy):
    from musecl.data.validate import validate_bundle

    drop(city_copy, "pois", "trips", "trajectories")
    report = validate_bundle(city_copy, check_images=False, progress=False)
    assert report.ok
    assert any(w.startswith("modalities: the city has rs, sv; missing poi (pois.parquet), mobility "
                            "(trips.parquet / trajectories.parquet)") for w in report.warnings), report.warnings
    drop(city_copy, "remote_sensing", "street_view")
    report = validate_bundle(city_copy, check_images=False, progress=False, raise_on_error=False)
    assert any(e.startswith("no modality: remote_sensing.parquet, street_view.parquet, pois.parquet") and
               "expected at least one of the modalities" in e for e in report.errors), report.errors


def test_synthetic_modalities_option(tmp_path):
    from musecl.synthetic import generate_city
    from musecl.synthetic.presets import preset

    with pytest.raises(ValueError, match="data.synthetic.modalities: unknown modality"):
        generate_city(preset("tiny"), tmp_path / "x", seed=1, progress=False, modalities=["rs", "lidar"])
    with pytest.raises(ValueError, match="data.synthetic.modalities is empty"):
        generate_city(preset("tiny"), tmp_path / "x", seed=1, progress=False, modalities=[])


# ---- pairs: fallback and degenerate similarities --------------------------------------------------------------------
CFG = {"similarity": {"poi": "cosine", "mobility": "log_l2"}, "val_fraction": 0.2}
SPEC = {"indicator": "poi", "rule": "similarity", "top_k": 1}


def counts(values) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(values, dtype=float), index=pd.Index([f"r{i}" for i in range(len(values))]))


def test_missing_source_falls_back_to_neighbours_with_a_warning():
    from musecl.pairs import resolve_spec

    with pytest.warns(UserWarning, match=r"the city has no poi data \(pois.parquet absent\): positives by rule "
                                         r"'neighbours' instead of 'similarity'"):
        spec, note = resolve_spec(SPEC, {"mobility": counts([[1, 2], [3, 4]])}, CFG, "pairs.modalities.rs")
    assert spec["rule"] == "neighbours" and spec["indicator"] is None and "pairs.fallback_rule" in note
    with pytest.warns(UserWarning, match="rule 'random'"):
        spec, _ = resolve_spec(SPEC, {}, {**CFG, "fallback_rule": "random"}, "pairs.modalities.rs")
    assert spec["rule"] == "random"
    with pytest.raises(ValueError, match="pairs.fallback_rule must be one of"):
        resolve_spec(SPEC, {}, {**CFG, "fallback_rule": "nearest"}, "pairs.modalities.rs")


def test_rules_without_similarity_and_healthy_sources_are_unchanged():
    from musecl.pairs import resolve_spec

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_spec({**SPEC, "rule": "random"}, {}, CFG, "x") == ({**SPEC, "rule": "random"}, "")
        assert resolve_spec(SPEC, {"poi": counts([[1, 0], [0, 1], [2, 1]])}, CFG, "x") == (SPEC, "")


def test_degenerate_poi_similarity_is_an_error_naming_the_cause_and_the_option():
    from musecl.pairs import resolve_spec

    one_category = {"poi": counts([[3], [1], [7], [2]])}  # placeholder POIs: one category, every cosine 1.0
    with pytest.raises(ValueError, match=r"pairs.modalities.rs: λ\^POI is degenerate: every one of the 4 regions has "
                                         r"the same poi vector under 'cosine'.*all POIs share one category.*set "
                                         r"pairs.on_degenerate: fallback"):
        resolve_spec(SPEC, one_category, CFG, "pairs.modalities.rs")
    with pytest.warns(UserWarning, match=r"λ\^POI is degenerate.*rule 'neighbours'"):
        spec, _ = resolve_spec(SPEC, one_category, {**CFG, "on_degenerate": "fallback"}, "pairs.modalities.rs")
    assert spec["rule"] == "neighbours"


def test_degenerate_causes():
    from musecl.pairs import degenerate_cause

    assert "only 1 of 3 regions have a non-zero poi vector" in degenerate_cause(
        [[0, 0], [0, 0], [1, 0]], "cosine", "poi")
    assert "same mobility vector under 'log_l2'" in degenerate_cause(np.zeros((5, 2)), "log_l2", "mobility")
    assert "same poi vector" in degenerate_cause([[1, 2], [2, 4], [3, 6]], "cosine", "poi")  # proportional: ties
    assert degenerate_cause([[1, 2], [2, 1], [3, 6]], "cosine", "poi") is None
    assert "no columns" in degenerate_cause(np.zeros((3, 0)), "cosine", "poi")


def test_pairs_without_poi_use_neighbours_and_report_it(city_copy):
    from musecl.config import load_params
    from musecl.pairs import modality_triplets, pairs_plan, region_indicator_tables, skipped_modalities

    bundle = drop(city_copy, "pois", "street_view")
    cfg = load_params(overrides={"pairs": {"modalities": {"rs": {"n_train": 50, "n_val": 10},
                                                          "sv": {"n_train": 50, "n_val": 10}}}})["pairs"]
    tables = region_indicator_tables(bundle, cfg)
    assert set(tables) == {"mobility"}
    with pytest.warns(UserWarning, match="pairs.modalities.rs: the city has no poi data"):
        sets = modality_triplets(bundle, tables, cfg, seed=0)
    assert set(sets) == {"rs"} and sets["rs"].rule == "neighbours" and len(sets["rs"].train) == 50
    skipped = skipped_modalities(bundle, cfg)
    assert skipped == {"sv": "the city has no street-view images (street_view.parquet absent)"}
    plan = pairs_plan(sets, skipped, cfg)
    assert plan.loc["rs", "used"] == "neighbours" and plan.loc["sv", "used"] == "skipped: no triplets"


# ---- skipped outputs ------------------------------------------------------------------------------------------------
def test_skipped_outputs_round_trip(tmp_path):
    from musecl.embeddings import SkippedRepresentation, read_embeddings
    from musecl.stages.skips import check_skipped, skipped_output_reason, write_skipped_outputs

    paths = [tmp_path / "e.parquet", tmp_path / "m.json", tmp_path / "f.pt", tmp_path / "folder"]
    write_skipped_outputs(paths, "the city has no POIs")
    assert [skipped_output_reason(p) for p in paths] == ["the city has no POIs"] * 4
    check_skipped({"x": (paths, "the city has no POIs")})
    with pytest.raises(AssertionError, match="should be a skipped output"):
        check_skipped({"x": ([tmp_path / "absent.json"], "why")})
    with pytest.raises(SkippedRepresentation, match="not run: the city has no POIs"):
        read_embeddings(paths[0])


def test_baseline_runs_that_need_a_missing_input_are_skipped(city_copy):
    from musecl.config import load_params
    from musecl.stages.baselines import baseline_run, skip_reason

    params = load_params()
    bundle = drop(city_copy, "pois")
    assert "its positive rule 'similarity+neighbours' needs poi similarity" in skip_reason(
        params, baseline_run(params, "pg_simclr"), bundle)
    assert skip_reason(params, baseline_run(params, "rs_random"), bundle) is None
    assert skip_reason(params, baseline_run(params, "tile2vec"), bundle) is None
    bundle = drop(city_copy, "street_view")
    assert skip_reason(params, baseline_run(params, "pixel_stats_sv"), bundle) == \
        "the city has no street-view images (street_view.parquet absent)"


def test_skip_rest_of_notebook_runs_only_the_final_checks():
    from IPython.core.interactiveshell import InteractiveShell

    from musecl.stages import skips

    shell = InteractiveShell.instance()
    try:
        shell.run_cell("from musecl.stages import skips\nskips.skip_rest_of_notebook('04_x', 'the city has no POIs')")
        shell.run_cell("later = 1")
        shell.run_cell(f"{skips.CHECKS_MARKER} (run also when the stage is skipped)\nchecked = 2")
        assert "later" not in shell.user_ns and shell.user_ns["checked"] == 2
    finally:
        shell.input_transformers_cleanup[:] = [t for t in shell.input_transformers_cleanup
                                               if getattr(t, "__name__", "") != "musecl_skip"]
        InteractiveShell.clear_instance()


def test_image_text_runs_on_a_missing_modality_are_skipped(city_copy, tmp_path):
    from musecl.config import load_params
    from musecl.stages import imagetext
    from musecl.stages.skips import skipped_output_reason

    paths = {key: str(tmp_path / key) for key in ("work", "models", "reports")}
    params = load_params(overrides={"paths": paths})
    bundle = drop(city_copy, "street_view")
    with pytest.warns(UserWarning, match="04c_image_text: .* not run: the city has no street-view images"):
        skipped = imagetext.skip_runs(params, bundle)
    sv_runs = {r.name for r in imagetext.runs(params) if r.modality == "sv"}
    assert set(skipped) == sv_runs and sv_runs
    for name in sv_runs:
        assert all(skipped_output_reason(p) == skipped[name] for p in imagetext.skipped_paths(params, name))
