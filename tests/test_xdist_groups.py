"""`make test` runs the suite in pytest-xdist workers grouped by tests/conftest.py: each tiny pipeline in one worker."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import MODALITY_CITIES, check_groups, xdist_group


def test_groups_of_test_ids():
    assert xdist_group("tests/test_notebooks_evaluation.py::test_evaluation_notebook") == "tiny_pipeline"
    assert xdist_group("tests/test_seeds.py::test_settings") == "tiny_pipeline"  # its file holds a pipeline test
    modalities = "tests/test_notebooks_modalities.py::"
    assert xdist_group(modalities + "test_notebooks_run_without_a_modality[no_poi-02_contrastive_pairs]") == \
        "modalities_no_poi"
    assert xdist_group(modalities + "test_evaluation_notebooks_run_on_images_only[06_evaluation-images_only]") == \
        "modalities_images_only"
    assert xdist_group(modalities + "test_skipped_outputs_say_why[no_mobility]") == "modalities_no_mobility"
    assert xdist_group("tests/test_notebooks_build.py::test_later_stages_run_on_the_built_city[02_contrastive_pairs]") \
        == "tests/test_notebooks_build.py"
    assert xdist_group("tests/test_pairs.py::test_indicator_agreement") == "tests/test_pairs.py"


def test_modality_cities_are_those_of_the_modalities_tests():
    from test_notebooks_modalities import CITIES

    assert set(MODALITY_CITIES) == set(CITIES)


def test_a_pipeline_test_outside_its_group_is_refused():
    item = SimpleNamespace(nodeid="tests/test_new.py::test_uses_the_pipeline", fixturenames=["tiny_pipeline"])
    with pytest.raises(pytest.UsageError, match="test_new.py.*TINY_PIPELINE_FILES"):
        check_groups([item])
    city = SimpleNamespace(nodeid="tests/test_notebooks_modalities.py::test_x[no_rs-01_data_preparation]",
                           fixturenames=["city_pipeline"], callspec=SimpleNamespace(params={"city_pipeline": "no_rs"}))
    with pytest.raises(pytest.UsageError, match="MODALITY_CITIES"):
        check_groups([city])
    check_groups([SimpleNamespace(nodeid="tests/test_pairs.py::test_x", fixturenames=["tmp_path"])])  # no pipeline


def test_workers_are_one_per_core_as_memory_allows():
    from conftest import WORKER_MEMORY_GB, auto_workers

    assert auto_workers(2, 20.0) == 2
    assert auto_workers(2, None) == 2  # memory unknown: the cores decide
    assert auto_workers(16, 3 * WORKER_MEMORY_GB + 0.1) == 3
    assert auto_workers(2, WORKER_MEMORY_GB - 0.5) == 1  # never fewer than one
