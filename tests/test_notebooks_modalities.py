"""A city with a modality missing runs the numbered notebooks 01-07 on the tiny configuration: three synthetic cities
(`data.synthetic.modalities`): no POIs, no mobility, and only images (remote sensing + street view) and indicators.
Each notebook runs to the end (its final checks pass on the skipped outputs), and what was skipped says why.

To keep the added time small, these pipelines run lighter settings than the main tiny pipeline (`LIGHT`): no extra
training seeds, the default frozen-trunk street-view encoder at 32 px instead of an end-to-end Inception v3, 120/60
triplets per modality, three baseline runs (one that needs POIs, one with random positives, one pixel-statistics run),
two fusion variants (one without text, one on the random-positive encoder) and one image-text run.
Stages 06-07 (evaluation, sensitivity, figures) read the skipped tables and show them as "not run: reason"; they run
on the images-only city alone, which skips everything the other two skip (the POI text, MuseCL's fusion, the
similarity-positive baselines) and more: the evaluation side has nothing a city without POIs or without mobility adds
(a city with both runs 06-07 in the main tiny pipeline).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import NOTEBOOK_ORDER, TinyPipeline

from musecl.config import deep_merge

CITIES = {
    "no_poi": ["rs", "sv", "mobility"],
    "no_mobility": ["rs", "sv", "poi"],
    "images_only": ["rs", "sv"],
}
LIGHT = {
    "training_seeds": {"extra": 0},
    # the default street-view encoder (a frozen ImageNet EfficientNet-Lite0 trunk) on 32 px, not the tiny pipeline's
    # end-to-end Inception v3 (covered there): the same choice as the built city's pipeline (test_notebooks_build)
    "encoders": {"sv": {"backbone": "efficientnet_lite0", "weights": "imagenet", "frozen_stages": 7, "image_size": 32,
                        "input_size": 32}},
    "pairs": {"modalities": {"rs": {"n_train": 120, "n_val": 60}, "sv": {"n_train": 120, "n_val": 60}}},
    "baselines": {"selected": ["pg_simclr", "rs_random", "pixel_stats_sv"],
                  "selected_variants": ["fusion_svrv", "musecl_no_poi_pairs"]},
    "imagetext": {"selected": ["urbanclip"]},
}
UPSTREAM = NOTEBOOK_ORDER[: NOTEBOOK_ORDER.index("05c_training_seeds") + 1]
DOWNSTREAM = NOTEBOOK_ORDER[len(UPSTREAM):]  # 06, 06b, 07: the evaluation side (reads the skipped tables)


def ran_to_the_end(executed: Path) -> bool:
    """Every code cell ran (a skipped stage's cells run as no-ops) and none failed."""
    import nbformat

    code = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    return all(c.get("execution_count") is not None for c in code) and not any(
        out.get("output_type") == "error" for c in code for out in c.get("outputs", []))


def printed(executed: Path) -> str:
    import nbformat

    return "\n".join(out.get("text", "") for c in nbformat.read(executed, as_version=4).cells
                     if c.cell_type == "code" for out in c.get("outputs", []))


@pytest.fixture(scope="module", params=list(CITIES))
def city_pipeline(request, tmp_path_factory) -> TinyPipeline:
    """The tiny pipeline on a synthetic city with only the modalities of `CITIES[param]`. Its folder is deleted after
    the city's tests when none of them failed (kept for inspection otherwise)."""
    root = tmp_path_factory.mktemp(f"modalities_{request.param}")
    pipeline = TinyPipeline(root)
    pipeline.overrides = deep_merge(pipeline.overrides, deep_merge(
        LIGHT, {"data": {"synthetic": {"modalities": CITIES[request.param]}}}))
    pipeline.city = request.param
    failed_before = request.session.testsfailed
    yield pipeline
    if request.session.testsfailed == failed_before:
        shutil.rmtree(root, ignore_errors=True)


DOWNSTREAM_CITY = "images_only"


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("stage", UPSTREAM)
def test_notebooks_run_without_a_modality(city_pipeline, stage):
    _runs_to_the_end(city_pipeline, stage)


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("city_pipeline", [DOWNSTREAM_CITY], indirect=True)
@pytest.mark.parametrize("stage", DOWNSTREAM)
def test_evaluation_notebooks_run_on_images_only(city_pipeline, stage):
    _runs_to_the_end(city_pipeline, stage)


def _runs_to_the_end(city_pipeline, stage):
    executed = city_pipeline.run(stage)
    assert ran_to_the_end(Path(executed)), f"{city_pipeline.city}: {stage}"
    # 05c with no extra seeds prints nothing of its own; 06 and 07 assert their checks without a closing line
    if stage not in ("05c_training_seeds", "06_evaluation", "07_paper_figures"):
        assert "all checks passed" in printed(Path(executed)), f"{city_pipeline.city}: {stage}"


@pytest.mark.notebook
@pytest.mark.slow
def test_skipped_outputs_say_why(city_pipeline):
    from musecl.embeddings import skipped_reason
    from musecl.stages.skips import skipped_output_reason

    city_pipeline.run("05b_fusion_variants")
    embeddings = city_pipeline.paths["work"] / "embeddings"
    executed = {name: printed(path) for name, path in city_pipeline.executed.items()}
    if city_pipeline.city in ("no_poi", "images_only"):
        assert "the city has no POIs (pois.parquet absent)" in skipped_reason(embeddings / "poi_text.parquet")
        assert "04_poi_word2vec: skipped" in executed["04_poi_word2vec"]
        reason = skipped_reason(embeddings / "musecl.parquet")
        assert reason.startswith("MuseCL's attentive fusion needs rs, sv, poi_text; not run: poi_text (")
        assert skipped_output_reason(city_pipeline.paths["models"] / "fusion" / "fusion.pt") == reason
        assert "its positive rule 'similarity+neighbours' needs poi similarity" in skipped_reason(
            embeddings / "pg_simclr.parquet")
        assert skipped_reason(embeddings / "fusion_svrv.parquet") is None  # no text needed: it runs
        assert "rule 'neighbours' instead of 'similarity'" in executed["02_contrastive_pairs"]
    else:
        assert skipped_reason(embeddings / "poi_text.parquet") is None
        assert skipped_reason(embeddings / "musecl.parquet") is None
    if city_pipeline.city in ("no_mobility", "images_only"):
        plan = (city_pipeline.paths["reports"] / "02_contrastive_pairs" / "pairs_plan.md").read_text()
        assert "the city has no mobility data (trips.parquet / trajectories.parquet absent)" in plan


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("city_pipeline", [DOWNSTREAM_CITY], indirect=True)
def test_tables_say_what_was_not_run(city_pipeline):
    """The paper tables of a city without POIs carry MuseCL's row as 'not run: <reason>' (with POIs they carry its
    scores: the main tiny pipeline's tests)."""
    city_pipeline.run("07_paper_figures")
    table1 = (city_pipeline.paths["reports"] / "07_paper_figures" / "tables" / "table1_paper_ridge.md").read_text()
    musecl_rows = [line for line in table1.splitlines() if line.startswith("| MuseCL |")]
    assert len(musecl_rows) == 1, table1
    assert "not run: " in musecl_rows[0] and "no POIs" in musecl_rows[0]
    pg_rows = [line for line in table1.splitlines() if line.startswith("| PG-SimCLR |")]
    assert len(pg_rows) == 1 and "not run: " in pg_rows[0], table1
