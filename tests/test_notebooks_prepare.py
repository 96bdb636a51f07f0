"""Notebook 01 runs top to bottom on the tiny city and leaves the bundle, tables, figures and oracle metrics."""
import json

import pytest

from musecl.data import CityBundle


@pytest.mark.notebook
def test_data_preparation_notebook_runs_on_tiny(tiny_pipeline):
    executed = tiny_pipeline.run("01_data_preparation")
    assert executed.is_file()
    text = executed.read_text()
    assert "all checks passed" in text
    bundle = CityBundle(tiny_pipeline.paths["bundle"])
    assert len(bundle.regions()) > 0
    reports = tiny_pipeline.paths["reports"]
    for name in ("dataset_statistics.md", "dataset_statistics.tex", "indicator_maps.png", "latent_maps.png",
                 "land_use_examples.png", "oracle_r2.md"):
        assert (reports / "01_data_preparation" / name).is_file(), name
    oracle = json.loads((reports / "oracle.json").read_text())
    assert oracle["available"] is True
    assert set(oracle["oracle_r2"]) == set(bundle.indicators().columns)
