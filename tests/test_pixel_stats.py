"""The pixel-statistics reference rows (musecl.encoders.pixel_stats, musecl.methods.PixelStats, the `pixel_stats` kind
of a baselines run): known answers on synthetic images, region means and missing-region fill, determinism, the
method's fit / transform / save / load, and the run's settings."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from musecl.config import load_params
from musecl.encoders import cache_from_arrays
from musecl.encoders.embed import fill_missing
from musecl.encoders.pixel_stats import (PixelStatsConfig, cache_features, feature_names, gradient_magnitude,
                                         image_features, region_pixel_stats)
from musecl.methods import METHODS, City, PixelStats
from musecl.stages import baselines

NAMES = feature_names()


def col(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, NAMES.index(name)]


@pytest.fixture()
def params(tmp_path):
    p = copy.deepcopy(load_params())
    p["paths"] = {k: str(tmp_path / k) for k in ("bundle", "work", "models", "reports")}
    return p


def test_the_default_vector_has_34_named_columns():
    assert len(NAMES) == 34 == PixelStatsConfig().dim and len(set(NAMES)) == 34
    assert NAMES[:2] == ["hist_r0", "hist_r1"] and NAMES[23] == "hist_b7"
    assert NAMES[24:] == ["mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "edge_0.025", "edge_0.05",
                          "edge_0.1", "grad_mean"]
    assert feature_names(PixelStatsConfig(bins=4, edge_thresholds=(0.2,)))[-2:] == ["edge_0.2", "grad_mean"]


def test_a_flat_grey_image_has_one_histogram_bin_no_spread_and_no_edges():
    image = np.full((1, 16, 12, 3), 100, dtype=np.uint8)
    f = image_features(image)
    assert f.shape == (1, 34) and f.dtype == np.float32
    for c in "rgb":
        hist = np.array([col(f, f"hist_{c}{k}")[0] for k in range(8)])
        assert hist[100 // 32] == 1.0 and hist.sum() == 1.0
        assert col(f, f"mean_{c}")[0] == pytest.approx(100 / 255) and col(f, f"std_{c}")[0] == 0.0
    for name in ("edge_0.025", "edge_0.05", "edge_0.1", "grad_mean"):
        assert col(f, name)[0] == pytest.approx(0.0, abs=1e-6)


def test_a_half_black_half_white_image_has_two_bins_and_one_vertical_edge():
    h, w = 8, 10
    image = np.zeros((1, h, w, 3), dtype=np.uint8)
    image[:, :, w // 2:] = 255
    f = image_features(image)
    for c in "rgb":
        hist = np.array([col(f, f"hist_{c}{k}")[0] for k in range(8)])
        np.testing.assert_allclose(hist, [0.5, 0, 0, 0, 0, 0, 0, 0.5])
        assert col(f, f"mean_{c}")[0] == pytest.approx(0.5) and col(f, f"std_{c}")[0] == pytest.approx(0.5)
    # Sobel / 8 of a unit step: 0.5 on the two interior columns beside it, 0 elsewhere (interior: w - 2 columns)
    magnitude = gradient_magnitude(image)[0]
    assert magnitude.shape == (h - 2, w - 2)
    np.testing.assert_allclose(magnitude[:, [w // 2 - 2, w // 2 - 1]], 0.5, atol=1e-6)
    assert np.delete(magnitude, [w // 2 - 2, w // 2 - 1], axis=1).max() == pytest.approx(0.0, abs=1e-6)
    for t in ("0.025", "0.05", "0.1"):
        assert col(f, f"edge_{t}")[0] == pytest.approx(2 / (w - 2))
    assert col(f, "grad_mean")[0] == pytest.approx(2 * 0.5 / (w - 2))
    # a horizontal edge gives the same magnitude (the operator is isotropic for axis-aligned steps)
    rotated = np.ascontiguousarray(np.swapaxes(image, 1, 2))
    assert col(image_features(rotated), "grad_mean")[0] == pytest.approx(2 * 0.5 / (w - 2))


def test_thresholds_separate_weak_from_strong_edges_and_bad_inputs_are_refused():
    image = np.zeros((1, 6, 6, 3), dtype=np.uint8)
    image[:, :, 3:] = 20  # a step of 20/255 ~ 7.8 % contrast: magnitude ~0.039
    f = image_features(image)
    assert col(f, "edge_0.025")[0] > 0 and col(f, "edge_0.05")[0] == 0 and col(f, "edge_0.1")[0] == 0
    with pytest.raises(ValueError, match="uint8"):
        image_features(image.astype(np.float32))
    with pytest.raises(ValueError, match="3 x 3"):
        image_features(np.zeros((1, 2, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="bins"):
        PixelStatsConfig(bins=0)
    with pytest.raises(ValueError, match=r"runs\.x\.features has unknown key"):
        PixelStatsConfig.from_dict({"bin": 8}, "baselines.runs.x.features")


def test_features_are_deterministic_and_independent_of_the_chunk_size(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(11, 16, 16, 3), dtype=np.uint8)
    cache = cache_from_arrays(images, [f"i{k}" for k in range(11)], [f"r{k % 3}" for k in range(11)], tmp_path / "c")
    whole = cache_features(cache)
    np.testing.assert_array_equal(whole, image_features(images))
    np.testing.assert_array_equal(cache_features(cache, chunk_pixels=3 * 16 * 16), whole)  # chunks of 3 images
    np.testing.assert_array_equal(cache_features(cache, chunk_pixels=1), whole)  # one image at a time
    np.testing.assert_array_equal(cache_features(cache), whole)
    hist = whole[:, :24].reshape(11, 3, 8)
    np.testing.assert_allclose(hist.sum(axis=2), 1.0, rtol=1e-6)


def test_region_vectors_are_image_means_and_missing_regions_follow_the_policy(tiny_bundle, tmp_path):
    regions = tiny_bundle.regions()["region_id"].astype(str).to_numpy(dtype=object)
    rng = np.random.default_rng(1)
    have = regions[: len(regions) // 2]  # half the regions have images, one to three each
    image_regions = np.concatenate([np.repeat(have, 1 + np.arange(len(have)) % 3)])
    images = rng.integers(0, 256, size=(len(image_regions), 12, 12, 3), dtype=np.uint8)
    cache = cache_from_arrays(images, [f"i{k}" for k in range(len(images))], image_regions, tmp_path / "c")
    per_image = image_features(images)
    for policy in ("neighbours", "mean", "zeros"):
        table, counts = region_pixel_stats(cache, regions, missing=policy)
        assert list(table.index) == list(regions) and table.shape == (len(regions), 34)
        assert list(table.columns[:2]) == ["e000", "e001"] and (table.dtypes == np.float32).all()
        assert (counts.loc[have] == 1 + np.arange(len(have)) % 3).all() and (counts.drop(have) == 0).all()
        first = have[2]  # three images
        np.testing.assert_allclose(table.loc[first].to_numpy(), per_image[image_regions == first].mean(axis=0),
                                   rtol=1e-5)
        means = np.zeros((len(regions), 34), dtype=np.float32)
        means[: len(have)] = table.loc[have].to_numpy()
        expected = fill_missing(means, counts.to_numpy(), pd.Index(regions), policy)
        np.testing.assert_allclose(table.to_numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="regions have no image"):
        region_pixel_stats(cache, regions, missing="error")


def test_the_method_fits_transforms_saves_and_loads(tiny_bundle, params, tmp_path):
    assert METHODS["pixel_stats"] is PixelStats
    regions = tiny_bundle.regions()["region_id"].astype(str).to_numpy(dtype=object)
    rng = np.random.default_rng(2)
    image_regions = np.concatenate([regions, regions[:5]])  # every region, five of them twice
    images = rng.integers(0, 256, size=(len(image_regions), 16, 20, 3), dtype=np.uint8)
    cache = cache_from_arrays(images, [f"s{k}" for k in range(len(images))], image_regions, tmp_path / "c")
    city = City(params, tiny_bundle, progress=False, caches={"sv": cache})
    method = PixelStats("pixel_stats_sv", "sv", {"bins": 8, "edge_thresholds": [0.025, 0.05, 0.1]})
    with pytest.raises(RuntimeError, match="fit"):
        method.transform(city)
    table = method.fit(city).transform(city)
    assert method.n_images == len(images) and method.image_shape == [16, 20]
    assert table.shape == (len(regions), 34) and (method.counts > 0).all()
    expected, _ = region_pixel_stats(cache, regions)
    pd.testing.assert_frame_equal(table, expected)
    # saved settings: same bytes for the same settings and cache, and loaded back to the same table
    first = method.save(tmp_path / "a")
    second = PixelStats("pixel_stats_sv", "sv", {}).fit(city).save(tmp_path / "b")  # {} = the defaults
    assert first.name == "pixel_stats.json" and first.read_bytes() == second.read_bytes()
    loaded = PixelStats.load(tmp_path / "a")
    assert loaded.config == method.config and loaded.name == "pixel_stats_sv" and loaded.modality == "sv"
    pd.testing.assert_frame_equal(loaded.transform(city), table)
    path = method.write(table, city)
    assert path.name == "pixel_stats_sv.parquet"
    with pytest.raises(FileNotFoundError, match="pixel_stats.json"):
        PixelStats.load(tmp_path / "nothing")


def test_pixel_stats_runs_resolve_from_params(params):
    for name, modality in (("pixel_stats_rs", "rs"), ("pixel_stats_sv", "sv")):
        run = baselines.baseline_run(params, name)
        assert run.kind == "pixel_stats" and not run.train and run.modality == modality
        method = baselines.run_method(params, run)
        assert isinstance(method, PixelStats) and method.config == PixelStatsConfig()
        assert baselines.saved_file(params, run).name == "pixel_stats.json"
        assert baselines.run_metrics(run) == {"modality": modality, "kind": "pixel_stats", "trained": False}
    table = baselines.run_table(params)
    assert table.loc["pixel_stats_rs", "backbone"] == "none: 34 pixel statistics"
    assert baselines.baseline_run(params, "rs_imagenet").kind == "backbone_features"
    assert baselines.baseline_run(params, "tile2vec").kind == "triplet_encoder"
    runs = params["baselines"]["runs"]
    runs["pixel_stats_rs"]["train"] = True
    with pytest.raises(ValueError, match=r"pixel_stats_rs: train: True contradicts kind: pixel_stats"):
        baselines.baseline_run(params, "pixel_stats_rs")
    runs["tile2vec"]["features"] = {"bins": 4}
    with pytest.raises(ValueError, match=r"tile2vec.features applies to kind: pixel_stats only"):
        baselines.baseline_run(params, "tile2vec")
    runs["pixel_stats_sv"]["kind"] = "pixels"
    with pytest.raises(ValueError, match=r"pixel_stats_sv.kind must be one of"):
        baselines.baseline_run(params, "pixel_stats_sv")


def test_the_reference_rows_are_floors_not_the_ceiling(params):
    from musecl.evaluation.checks import CheckSettings
    from musecl.evaluation.representations import RepresentationRegistry

    registry = RepresentationRegistry.from_params(params)
    assert {"Pixel stats RS", "Pixel stats SV", "Oracle"} <= set(registry.with_role("reference"))
    assert registry.specs["Pixel stats SV"].embeddings == ("pixel_stats_sv.parquet",)
    assert registry.specs["Pixel stats RS"].stage == "baselines@pixel_stats_rs"
    assert CheckSettings.from_config(params["evaluation"]["checks"]).ceiling == "Oracle"


def test_floors_and_the_ceiling_are_shown_apart_and_only_the_oracle_is_a_ceiling():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import to_hex

    from musecl.evaluation.checks import ceiling_flags
    from musecl.evaluation.figures import metric_bars
    from musecl.evaluation.stats import compare_to_best_baseline, summarise
    from musecl.evaluation.tables import table1

    rng = np.random.default_rng(4)
    level = {"Tile2Vec": 0.3, "MuseCL": 0.4, "Pixel stats RS": 0.5, "Pixel stats SV": 0.2, "Oracle": 0.9}
    roles = {"Tile2Vec": "baseline", "MuseCL": "ours", "Pixel stats RS": "reference", "Pixel stats SV": "reference",
             "Oracle": "reference"}
    rows = [{"protocol": "kfold", "regressor": "ridge", "method": m, "indicator": "crime", "repeat": 0, "fold": f,
             "r2": r2 + 0.01 * rng.normal(), "rmse": 1 - r2, "mae": 1 - r2, "mape": 1 - r2, "n_train": 80, "n_test": 20}
            for m, r2 in level.items() for f in range(5)]
    results = pd.DataFrame(rows)
    summary = summarise(results)
    comparison = compare_to_best_baseline(results, "MuseCL", ["Tile2Vec"])
    assert set(comparison["best_baseline"]) == {"Tile2Vec"}  # a floor is never the best baseline
    lines = table1(summary, comparison, roles, "kfold", "ridge").to_markdown().splitlines()
    names = [line.split("|")[1].strip() for line in lines if line.startswith("| ")]
    assert names.index("*Pixel stats RS*") > names.index("p (Wilcoxon)")  # after the statistics rows, in italics
    assert names[-3:] == ["*Pixel stats RS*", "*Pixel stats SV*", "*Oracle*"]
    floor = next(line for line in lines if line.startswith("| *Pixel stats RS*"))
    assert "**" not in floor  # above ours in R², still never bold
    assert "**" in next(line for line in lines if line.startswith("| MuseCL"))
    # the floors are not ceilings: a row above a floor is not flagged, only rows above the Oracle would be
    assert ceiling_flags(results, "Oracle").empty
    # one grey shade per reference row, so the legend tells floor and ceiling apart
    fig = metric_bars(summary, roles, "kfold", "ridge")
    colours = {c.get_label(): to_hex(c.patches[0].get_facecolor()) for c in fig.axes[0].containers
               if hasattr(c, "patches")}
    greys = [colours[m] for m in ("Pixel stats RS", "Pixel stats SV", "Oracle")]
    assert len(set(greys)) == 3 and all(g[1:3] == g[3:5] == g[5:7] for g in greys)
