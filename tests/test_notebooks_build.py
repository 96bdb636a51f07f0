"""The build tutorial (notebooks/01b_build_city) runs, and a city built from open-data-shaped files goes through
`prepare` (data.source: build) and the later stages on the tiny settings."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import NOTEBOOK_ORDER, ROOT, TinyPipeline

from musecl.config import deep_merge


def ran_to_the_end(executed: Path) -> bool:
    """Every code cell of the executed notebook ran (the last one holds each notebook's checks) and none failed."""
    import nbformat

    code = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"]
    return all(c.get("execution_count") is not None for c in code) and not any(
        out.get("output_type") == "error" for c in code for out in c.get("outputs", []))


def checks_passed(executed: Path) -> bool:
    """The notebook ran to the end and its last cell printed 'all checks passed' (its output, not its source)."""
    import nbformat

    last = [c for c in nbformat.read(executed, as_version=4).cells if c.cell_type == "code"][-1]
    return ran_to_the_end(executed) and any("all checks passed" in out.get("text", "")
                                            for out in last.get("outputs", []))


@pytest.mark.notebook
def test_build_tutorial_notebook_runs(tmp_path):
    from musecl.notebooks import run_notebook

    paths = {key: str(tmp_path / key) for key in ("bundle", "work", "models", "reports")}
    executed = run_notebook("01b_build_city", ROOT / "params.yaml", {"paths": paths},
                            output=tmp_path / "executed" / "01b_build_city.ipynb", progress=False)
    assert checks_passed(executed)
    reports = tmp_path / "reports" / "01b_build_city"
    for name in ("build_report.md", "build_report.tex", "data_overview.png", "indicator_maps.png",
                 "image_samples.png"):
        assert (reports / name).is_file(), name
    assert (tmp_path / "work" / "01b_build_city" / "city" / "city.json").is_file()


# The built city's street-view encoder is the default one (frozen ImageNet EfficientNet-Lite0 trunk), not the tiny
# configuration's end-to-end Inception-v3 that the synthetic tiny pipeline already covers: a user's city gets the
# default, and six Inception-v3 checkpoints with their optimiser state would take 2 GB of disk.
BUILT_CITY_SV = {"backbone": "efficientnet_lite0", "weights": "imagenet", "frozen_stages": 7, "image_size": 32,
                 "input_size": 32}


@pytest.fixture(scope="module")
def built_city_pipeline(tmp_path_factory, request) -> TinyPipeline:
    """The tiny pipeline with `prepare` building the example city instead of generating the synthetic one. Its folder
    is deleted after the module's tests when none of them failed (kept for inspection otherwise)."""
    import shutil

    from musecl.opendata import example_inputs

    root = tmp_path_factory.mktemp("built_city")
    config = example_inputs(root / "inputs", seed=0)
    pipeline = TinyPipeline(root / "pipeline")
    pipeline.overrides = deep_merge(pipeline.overrides, {"data": {"source": "build", "build_config": str(config)},
                                                         "encoders": {"sv": BUILT_CITY_SV}})
    pipeline.allowed_paths.append(root)  # the example inputs live beside the pipeline's folder
    failed_before = request.session.testsfailed
    yield pipeline
    if request.session.testsfailed == failed_before:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.notebook
def test_prepare_builds_and_validates_the_city(built_city_pipeline):
    from musecl.data import CityBundle

    executed = built_city_pipeline.run("01_data_preparation")
    assert checks_passed(executed)
    bundle = CityBundle(built_city_pipeline.paths["bundle"])
    assert bundle.meta["source"] == "build" and bundle.name == "helsinki-centre-example"
    assert bundle.latents() is None and len(bundle.regions()) > 50
    assert (built_city_pipeline.paths["reports"] / "01_data_preparation" / "dataset_statistics.md").is_file()


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("stage", NOTEBOOK_ORDER[1:])
def test_later_stages_run_on_the_built_city(built_city_pipeline, stage):
    executed = built_city_pipeline.run(stage)
    assert ran_to_the_end(Path(executed)), stage
