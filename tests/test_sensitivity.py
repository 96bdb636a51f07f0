"""The sensitivity grid (params.yaml `sensitivity`) and notebook 06b on the tiny configuration."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from musecl.stages import sensitivity
from musecl.config import load_params


@pytest.fixture()
def params():
    return copy.deepcopy(load_params())


def test_grid_varies_one_parameter_at_a_time_and_runs_the_base_point_once(params):
    params["sensitivity"].update({"embedding_dim": [32, 128, 256], "margin": [1.0, 5.0]})
    base = sensitivity.base_setting(params)
    assert (base.embedding_dim, base.margin) == (128, 5.0)
    points = sensitivity.grid(params)
    assert [(p, v) for p, v, _ in points] == [("embedding_dim", 32.0), ("embedding_dim", 128.0),
                                              ("embedding_dim", 256.0), ("margin", 1.0), ("margin", 5.0)]
    assert all(s.margin == 5.0 for p, _, s in points if p == "embedding_dim")
    assert all(s.embedding_dim == 128 for p, _, s in points if p == "margin")
    assert [s.name for s in sensitivity.settings_to_run(params)] == ["d32_m5", "d128_m5", "d256_m5", "d128_m1"]


def test_setting_params_change_both_encoders_word2vec_and_the_budget_only(params):
    params["sensitivity"]["budget"] = {"rs": {"epochs": 2}, "sv": {"epochs": 1}}
    p = sensitivity.setting_params(params, sensitivity.Setting(64, 1.0))
    for m in ("rs", "sv"):
        assert p["encoders"][m]["embedding_dim"] == 64 and p["encoders"][m]["loss"]["margin"] == 1.0
        assert p["encoders"][m]["lr"] == params["encoders"][m]["lr"]
    assert (p["encoders"]["rs"]["epochs"], p["encoders"]["sv"]["epochs"]) == (2, 1)
    assert p["poi_text"]["word2vec"]["vector_size"] == 64
    assert params["encoders"]["rs"]["embedding_dim"] == 128  # the input is not modified


def test_mismatched_encoder_settings_are_refused(params):
    params["encoders"]["sv"]["embedding_dim"] = 64
    with pytest.raises(ValueError, match="embedding_dim"):
        sensitivity.base_setting(params)
    params["encoders"]["sv"]["embedding_dim"] = 128
    params["sensitivity"]["margin"] = [0.0]
    with pytest.raises(ValueError, match="sensitivity.margin"):
        sensitivity.grid(params)


@pytest.mark.notebook
def test_sensitivity_notebook(tiny_pipeline):
    from test_notebooks_build import checks_passed

    executed = tiny_pipeline.run("06b_sensitivity")
    assert checks_passed(executed)
    table = pd.read_parquet(tiny_pipeline.paths["work"] / "sensitivity" / "results.parquet")
    assert set(zip(table["parameter"], table["value"])) == {("embedding_dim", 32.0), ("embedding_dim", 128.0),
                                                           ("margin", 5.0), ("margin", 10.0)}
    base = table[(table["parameter"] == "embedding_dim") & (table["value"] == 128.0)].drop(columns=["parameter", "value"])
    same = table[(table["parameter"] == "margin") & (table["value"] == 5.0)].drop(columns=["parameter", "value"])
    assert np.array_equal(base["r2"].to_numpy(), same["r2"].to_numpy())  # the base point is one run on both curves
    assert (tiny_pipeline.paths["reports"] / "06b_sensitivity" / "sensitivity.png").is_file()


def test_r2_table_gives_mean_and_std_over_folds_per_setting_method_and_indicator():
    rows = [{"parameter": "margin", "value": 5.0, "method": m, "indicator": i, "fold": f, "r2": r}
            for m, i, f, r in [("MuseCL", "pd", 0, 0.5), ("MuseCL", "pd", 1, 0.7), ("RS", "pd", 0, 0.1),
                               ("RS", "pd", 1, 0.3), ("MuseCL", "hd", 0, 0.2), ("MuseCL", "hd", 1, 0.2)]]
    wide = sensitivity.r2_table(pd.DataFrame(rows))
    assert wide.loc[("margin", 5.0, "MuseCL"), "pd"] == "0.600 ± 0.141"
    assert wide.loc[("margin", 5.0, "MuseCL"), "hd"] == "0.200 ± 0.000"
    assert wide.loc[("margin", 5.0, "RS"), "pd"] == "0.200 ± 0.141"
    assert list(wide.columns) == ["pd", "hd"]  # indicators in the order they come
