"""The ideal-encoder fusion experiment (musecl/fusion/ideal.py) on the tiny city: the machinery, and what holds whatever
the fusion does (no test here says which fusion wins; docs/text_and_fusion.md reports the measured numbers)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from musecl.fusion import FusionConfig
from musecl.fusion.ideal import (
    CONCAT_ROW,
    FUSIONS,
    GROUPS,
    L2_CONCAT_ROW,
    LATENT_ROW,
    IdealSettings,
    ideal_encoders,
    run_ideal_experiment,
    standardised_latents,
)

FUSION = FusionConfig(epochs=5, batch_size=16, seed=7)  # tests/tiny_params.yaml's fusion budget
SETTINGS = IdealSettings(dim=16, k=3, repeats=1, seed=7)


@pytest.fixture(scope="module")
def city(tiny_bundle):
    return tiny_bundle.latents(), tiny_bundle.indicators()


@pytest.fixture(scope="module")
def result(city):
    return run_ideal_experiment(*city, FUSION, SETTINGS)


def test_ideal_encoders_hold_exactly_their_latents(city):
    latents, _ = city
    encoders = ideal_encoders(latents, SETTINGS)
    z = standardised_latents(latents)
    for name, group in GROUPS.items():
        table = encoders[name]
        assert table.shape == (len(latents), SETTINGS.dim) and table.index.equals(latents.index)
        own = z[list(group)].to_numpy()
        coef, *_ = np.linalg.lstsq(own, table.to_numpy(np.float64), rcond=None)
        np.testing.assert_allclose(own @ coef, table.to_numpy(np.float64), atol=1e-4)  # a linear map of its latents
        assert np.linalg.matrix_rank(table.to_numpy(np.float64), tol=1e-3) == len(group)  # that loses none of them
    other = ideal_encoders(latents, IdealSettings(dim=16, seed=8))
    assert not np.allclose(other["rs"].to_numpy(), encoders["rs"].to_numpy())  # the seed draws the projections


def test_every_row_indicator_and_fold_is_reported(result, city):
    _, indicators = city
    table = result.table()
    expected = [LATENT_ROW, "RS", "SV", "text", CONCAT_ROW, L2_CONCAT_ROW, *FUSIONS]
    assert list(table.index) == expected
    assert list(table.columns) == list(indicators.columns) + ["mean"]
    assert result.r2.groupby("representation").size().eq(SETTINGS.k * SETTINGS.repeats * indicators.shape[1]).all()
    assert np.isfinite(result.r2["r2"]).all()
    assert list(result.attention.index) == list(FUSIONS)
    assert result.attention.loc["MSE fusion, global α", "alpha_sv_std"] == 0.0  # one weight pair for all regions
    assert (result.attention["alpha_sv_mean"].between(0, 1)).all()
    text = result.markdown()
    assert all(name in text for name in expected) and "dim 16" in text
    assert set(result.seconds) == set(FUSIONS) | {"total"}


def test_concatenated_ideal_encoders_reach_the_linear_ceiling(result):
    """[RS;SV] is an injective linear map of all the latents, so ridge on it predicts what ridge on the latents does
    (up to the penalty, which acts in another basis); the latents determine the indicators, so that is high."""
    table = result.table()
    assert table.loc[LATENT_ROW, "population_density"] > 0.6
    assert table.loc[CONCAT_ROW, "mean"] > table.loc[LATENT_ROW, "mean"] - 0.03
    assert (table.loc[CONCAT_ROW].drop("mean") > table.loc[LATENT_ROW].drop("mean") - 0.08).all()


def test_without_penalty_linear_maps_of_the_latents_predict_alike(city):
    """Least squares (a negligible ridge penalty, no clipping) depends only on the span of the features: the latents,
    [RS;SV] and the global-α fusion (α_RS e_RS + α_SV e_SV with both weights in (0, 1): still an injective linear map of
    all seven latents) give the same predictions, hence the same R², whatever the fusion learnt."""
    exact = run_ideal_experiment(*city, FUSION, IdealSettings(dim=16, k=3, repeats=1, seed=7, alphas=(1e-9,),
                                                               clip=False))
    table = exact.table()
    np.testing.assert_allclose(table.loc[CONCAT_ROW], table.loc[LATENT_ROW], atol=1e-4)
    np.testing.assert_allclose(table.loc["MSE fusion, global α"], table.loc[LATENT_ROW], atol=1e-4)


def test_the_experiment_is_deterministic(result, city):
    again = run_ideal_experiment(*city, FUSION, SETTINGS)
    pd.testing.assert_frame_equal(again.r2, result.r2)
    pd.testing.assert_frame_equal(again.attention, result.attention)


def test_errors_name_the_problem(city):
    latents, indicators = city
    with pytest.raises(ValueError, match="'rs'.*'height'\\] not in latents.parquet"):
        ideal_encoders(latents, IdealSettings(groups={**GROUPS, "rs": ("height",)}))
    with pytest.raises(ValueError, match="lack \\['text'\\]"):
        IdealSettings(groups={"rs": ("green",), "sv": ("commercial",)})
    broken = indicators.copy()
    broken.iloc[0, 0] = np.nan
    with pytest.raises(ValueError, match=f"indicators \\['{broken.columns[0]}'\\] have missing"):
        run_ideal_experiment(latents, broken, FUSION, SETTINGS)
