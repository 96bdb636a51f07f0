"""The synthetic city generator: determinism, sizes, geometry, latents, indicators and mobility rules (tiny preset)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musecl.data import assign_points_to_regions, schema
from musecl.synthetic import LATENT_NAMES, generate_city, preset
from musecl.synthetic import generate as generate_module
from musecl.synthetic.indicators import INDICATOR_NAMES, taxi_entries
from musecl.synthetic.pois import CATEGORIES, GROUP_WORDS


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ---- presets ---------------------------------------------------------------------------------------------------------
def test_unknown_preset_and_field_are_clear_errors():
    with pytest.raises(ValueError, match="unknown synthetic city preset 'huge'.*tiny"):
        preset("huge")
    with pytest.raises(ValueError, match=r"unknown synthetic city config field\(s\) \['n_region'\]"):
        preset("tiny", n_region=3)
    with pytest.raises(ValueError, match="sv_size_px must be >= 75"):
        preset("tiny", sv_size_px=64)


def test_presets_scale_up_and_keep_overrides():
    tiny, default, paper = preset("tiny"), preset("default"), preset("paper")
    assert tiny.target_regions < default.target_regions < paper.target_regions
    assert (tiny.rs_size_px, tiny.sv_size_px) == (32, 80)
    assert (default.rs_size_px, default.sv_size_px) == (64, 96)
    assert (paper.rs_size_px, paper.sv_size_px) == (256, 299)
    assert tiny.sv_per_region < default.sv_per_region < paper.sv_per_region
    changed = preset("default", h3_resolution=7, gps_interval_s=[20, 40])
    assert changed.h3_resolution == 7 and changed.gps_interval_s == (20.0, 40.0) and changed.preset == "default"
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.seed = 3  # type: ignore[attr-defined]


# ---- determinism and atomicity ---------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_bundle_whatever_the_workers(tmp_path, monkeypatch):
    config = preset("tiny", target_regions=12, sv_per_region=2.0, n_trips=500)  # smaller still: three runs
    first = generate_city(config, tmp_path / "a", seed=11, progress=False, workers=1)
    # force the 2-process pool even at tiny size: images must not depend on order or worker count
    monkeypatch.setattr(generate_module, "INLINE_RENDER_BELOW", 0)
    generate_city(config, tmp_path / "b", seed=11, progress=False, workers=2)
    generate_city(config, tmp_path / "c", seed=12, progress=False, workers=1)
    a, b, c = _hashes(tmp_path / "a"), _hashes(tmp_path / "b"), _hashes(tmp_path / "c")
    assert len(a) == 12 + first["counts"]["remote_sensing_images"] + first["counts"]["street_view_images"]
    assert a == b
    changed = (schema.BOUNDARY_FILE, schema.POIS_FILE, schema.TRIPS_FILE, schema.INDICATORS_FILE, schema.LATENTS_FILE)
    for file in changed:
        assert a[file] != c[file], f"{file} identical for two seeds"


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(generate_module, "render_images", broken)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        generate_city(preset("tiny"), tmp_path / "city", seed=1, progress=False)
    assert list(tmp_path.iterdir()) == []


# ---- the bundle ------------------------------------------------------------------------------------------------
def test_bundle_passes_validation_and_has_tiny_sizes(tiny_bundle):
    from musecl.data.validate import validate_bundle

    report = validate_bundle(tiny_bundle.root, progress=False)
    assert report.ok and not report.warnings
    meta = tiny_bundle.meta
    assert meta["source"] == "synthetic" and meta["seed"] == 7 and meta["generator"]["preset"] == "tiny"
    assert meta["generator"]["config"] == json.loads(json.dumps(dataclasses.asdict(preset("tiny"))))
    assert set(meta["indicators"]) == set(INDICATOR_NAMES)
    assert all(spec["transform"] == "log1p" for spec in meta["indicators"].values())
    n_regions = len(tiny_bundle.regions())
    assert 20 <= n_regions <= 45
    assert 800 <= len(tiny_bundle.pois()) <= 3000
    assert meta["counts"]["regions"] == n_regions
    assert len(tiny_bundle.remote_sensing()) == preset("tiny").rs_per_region * n_regions
    assert meta["counts"]["remote_sensing_images"] == len(tiny_bundle.remote_sensing())
    assert tiny_bundle.pois()["category"].nunique() >= 15
    assert len({c.name for c in CATEGORIES}) >= 40
    # Baidu's ~20 first-level categories (the paper's K), each with its words
    level1 = {c.name.split(";")[0] for c in CATEGORIES}
    assert len(level1) == 20 and level1 == set(GROUP_WORDS)


def test_points_fall_in_regions_and_inside_the_boundary(tiny_bundle):
    import shapely

    regions = tiny_bundle.regions()
    boundary = tiny_bundle.boundary().geometry.iloc[0]
    ids = regions[schema.REGION_ID].to_numpy()
    res = tiny_bundle.h3_resolution
    pois = tiny_bundle.pois()
    sv = tiny_bundle.street_view()
    trips = tiny_bundle.trips()
    for name, lon, lat in (
        ("pois", pois["lon"], pois["lat"]),
        ("street_view", sv["lon"], sv["lat"]),
        ("trip origins", trips["origin_lon"], trips["origin_lat"]),
        ("trip destinations", trips["dest_lon"], trips["dest_lat"]),
    ):
        region = assign_points_to_regions(lon.to_numpy(), lat.to_numpy(), ids, res)
        assert not pd.isna(region).any(), f"{name}: points outside every region"
        assert shapely.contains_xy(boundary, lon.to_numpy(), lat.to_numpy()).all(), f"{name}: outside the boundary"
    # street-view index: its region column is right, every region has images, headings in [0, 360)
    region = assign_points_to_regions(sv["lon"].to_numpy(), sv["lat"].to_numpy(), ids, res)
    assert (region == sv[schema.REGION_ID].to_numpy()).all()
    assert set(sv[schema.REGION_ID]) == set(ids)
    assert ((sv["heading"] >= 0) & (sv["heading"] < 360)).all()


def test_images_have_the_preset_sizes(tiny_bundle):
    config = preset("tiny")
    rs, sv = tiny_bundle.remote_sensing(), tiny_bundle.street_view()
    assert set(rs[schema.REGION_ID]) == set(tiny_bundle.regions()[schema.REGION_ID])
    for path in rs["path"].iloc[:3]:
        assert tiny_bundle.image(path).shape == (config.rs_size_px, config.rs_size_px, 3)
    for path in sv["path"].iloc[:3]:
        assert tiny_bundle.image(path).shape == (config.sv_size_px, config.sv_size_px, 3)
    # the tile covers the whole hexagon
    extent = tiny_bundle.meta["images"]["remote_sensing"]["extent_m"]
    assert 900 <= extent <= 1300


def test_several_tiles_per_region_tile_major(tiny_bundle):
    """rs_per_region tiles per region: tile 0 on the cell centre (rows 0..n-1, the one-tile city's images), the others
    at points of the hexagon, ids rs_<region>_<k>, every image distinct."""
    regions = tiny_bundle.regions()
    rs = tiny_bundle.remote_sensing()
    k, n = preset("tiny").rs_per_region, len(regions)
    assert k >= 2 and len(rs) == k * n
    assert (rs.groupby(schema.REGION_ID).size() == k).all()
    ids = regions[schema.REGION_ID].to_numpy()
    assert list(rs[schema.REGION_ID]) == list(np.tile(ids, k))
    assert list(rs["image_id"].iloc[:n]) == [f"rs_{r}_0" for r in ids]
    assert rs["image_id"].is_unique and rs["path"].is_unique
    first = rs.iloc[:n]
    np.testing.assert_allclose(first["lon"].to_numpy(), regions["lon"].to_numpy())
    np.testing.assert_allclose(first["lat"].to_numpy(), regions["lat"].to_numpy())
    others = rs.iloc[n:]
    region = assign_points_to_regions(others["lon"].to_numpy(), others["lat"].to_numpy(), ids,
                                      tiny_bundle.h3_resolution)
    assert (region == others[schema.REGION_ID].to_numpy()).all()
    assert (np.hypot(others["lon"].to_numpy() - np.tile(regions["lon"].to_numpy(), k - 1),
                     others["lat"].to_numpy() - np.tile(regions["lat"].to_numpy(), k - 1)) > 0).all()
    digests = {hashlib.sha256(tiny_bundle.image(p).tobytes()).hexdigest() for p in rs["path"]}
    assert len(digests) == len(rs)


def test_one_tile_per_region_is_tile_zero(tmp_path):
    """rs_per_region only adds tiles: the tables of a one-tile city are the first rows of the three-tile city's."""
    from musecl.synthetic.generate import build_city_tables

    one = build_city_tables(preset("tiny", rs_per_region=1), seed=3)
    three = build_city_tables(preset("tiny", rs_per_region=3), seed=3)
    n = len(one.regions)
    assert len(one.remote_sensing) == n and len(three.remote_sensing) == 3 * n
    assert list(one.remote_sensing["image_id"]) == list(three.remote_sensing["image_id"].iloc[:n])
    pd.testing.assert_frame_equal(one.street_view, three.street_view)
    pd.testing.assert_frame_equal(one.pois, three.pois)
    with pytest.raises(ValueError, match="rs_per_region must be an integer >= 1"):
        preset("tiny", rs_per_region=0)


def test_latents_in_unit_interval_and_aligned(tiny_bundle):
    latents = tiny_bundle.latents()
    assert list(latents.columns[: len(LATENT_NAMES)]) == list(LATENT_NAMES)
    values = latents.to_numpy(dtype=np.float64)
    assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()
    assert list(latents.index) == list(tiny_bundle.regions()[schema.REGION_ID])
    # every latent varies across the city (no degenerate field)
    assert (latents[list(LATENT_NAMES)].drop(columns="water").std() > 0.05).all()


def test_indicators_finite_nonnegative_and_counted_from_the_bundle(tiny_bundle):
    raw = tiny_bundle.indicators(transformed=False)
    assert list(raw.columns) == list(INDICATOR_NAMES)
    assert np.isfinite(raw.to_numpy()).all() and (raw.to_numpy() >= 0).all()
    ids = raw.index.to_numpy()
    pois = tiny_bundle.pois()
    res = tiny_bundle.h3_resolution
    poi_region = assign_points_to_regions(pois["lon"].to_numpy(), pois["lat"].to_numpy(), ids, res)
    counted = pd.Series(1, index=poi_region).groupby(level=0).sum().reindex(ids, fill_value=0)
    comments = pois["n_comments"].groupby(poi_region).sum().reindex(ids, fill_value=0)
    np.testing.assert_array_equal(raw["poi_count"].to_numpy(), counted.to_numpy())
    np.testing.assert_array_equal(raw["comment_count"].to_numpy(), comments.to_numpy())
    traj = tiny_bundle.trajectories()
    fix_region = assign_points_to_regions(traj["lon"].to_numpy(), traj["lat"].to_numpy(), ids, res)
    idx = pd.Index(ids).get_indexer(fix_region)
    entries = taxi_entries(idx, pd.factorize(traj["vehicle_id"])[0], len(ids))
    np.testing.assert_array_equal(raw["mobility_count"].to_numpy(), entries)
    logged = tiny_bundle.indicators()
    np.testing.assert_allclose(logged.to_numpy(), np.log1p(raw.to_numpy()))


def test_taxi_entries_follow_musecl_rule():
    # taxi 0: A A B B (out of city) B A -> A:2, B:2 ; taxi 1 starts in B -> B:+1
    region = np.array([0, 0, 1, 1, -1, 1, 0, 1])
    vehicle = np.array([0, 0, 0, 0, 0, 0, 0, 1])
    assert taxi_entries(region, vehicle, 3).tolist() == [2, 3, 0]


def test_trajectories_and_trips_obey_their_rules(tiny_bundle):
    config = preset("tiny")
    traj = tiny_bundle.trajectories()
    assert traj["vehicle_id"].nunique() == config.n_taxis
    assert traj.equals(traj.sort_values(["vehicle_id", "time"], kind="stable"))
    same = traj["vehicle_id"].to_numpy()[1:] == traj["vehicle_id"].to_numpy()[:-1]
    dt = np.diff(traj["time"].to_numpy().astype("datetime64[ms]").astype(np.int64)) / 1000.0
    lo, hi = config.gps_interval_s
    assert (dt[same] >= lo - 1).all()  # gaps only where fixes outside the city were dropped
    assert np.median(dt[same]) <= hi + 1
    assert np.mean((dt[same] >= lo - 1) & (dt[same] <= hi + 1)) > 0.9
    x = traj["lon"].to_numpy() * 111.32 * np.cos(np.radians(traj["lat"].to_numpy()))
    y = traj["lat"].to_numpy() * 110.574
    speed = np.hypot(np.diff(x), np.diff(y))[same] / (dt[same] / 3600.0)
    assert np.percentile(speed, 99) < 80 and speed.max() < 150  # km/h, GPS noise included
    shift = (traj.groupby("vehicle_id")["time"].agg(lambda t: t.max() - t.min()).dt.total_seconds() / 3600.0)
    assert (shift <= config.taxi_shift_hours + 0.01).all() and shift.median() > 0.8 * config.taxi_shift_hours

    trips = tiny_bundle.trips()
    assert len(trips) == config.n_trips and trips["trip_id"].is_unique
    duration = (trips["end_time"] - trips["start_time"]).dt.total_seconds() / 60.0
    assert (duration > 0).all() and duration.median() < 60
    start = pd.Timestamp(config.start_date)
    assert (trips["start_time"] >= start).all() and (trips["start_time"] < start + pd.Timedelta(days=8)).all()
    # weekday mornings carry the commute peak
    weekday = trips["start_time"].dt.day_of_week < 5
    hour = trips.loc[weekday, "start_time"].dt.hour
    assert (hour.between(7, 9)).mean() > 2 * (hour.between(2, 4)).mean()


def test_poi_text_shares_vocabulary_across_a_group(tiny_bundle):
    pois = tiny_bundle.pois()
    assert pois["poi_id"].is_unique
    assert (pois["n_comments"] >= 0).all() and pois["name"].str.len().gt(0).all()
    words = {
        cat: set(" ".join(group["text"]).split()) for cat, group in pois.groupby("category") if len(group) >= 5
    }
    # related categories share words, unrelated ones share fewer
    food = [c for c in words if c.startswith("food;")]
    assert len(food) >= 2
    shared_food = len(words[food[0]] & words[food[1]]) / len(words[food[0]] | words[food[1]])
    others = [c for c in words if c.split(";")[0] not in ("food", "nightlife", "shopping")]
    shared_other = np.mean([len(words[food[0]] & words[o]) / len(words[food[0]] | words[o]) for o in others])
    assert shared_food > shared_other


def test_latent_field_samples_any_shape():
    from musecl.synthetic.frame import build_frame
    from musecl.synthetic.latents import build_latent_field

    config = preset("tiny")
    frame = build_frame(config, np.random.default_rng(0))
    field = build_latent_field(config, frame, np.random.default_rng(1))
    assert field.names == LATENT_NAMES
    lon = config.center_lon + np.linspace(-0.05, 0.05, 12).reshape(3, 4)
    lat = np.full((3, 4), config.center_lat)
    out = field.sample(lon, lat)
    assert set(out) == set(LATENT_NAMES)
    for values in out.values():
        assert values.shape == (3, 4) and (values >= 0).all() and (values <= 1).all()
    # at a raster cell centre, bilinear sampling returns the raster value
    X, Y = field.grid_xy()
    r, c = field.shape[0] // 2, field.shape[1] // 3
    clon, clat = field.projection.to_lonlat(X[r, c], Y[r, c])
    at = field.sample(np.array(clon), np.array(clat))
    assert at["residential"].shape == ()
    assert at["residential"] == pytest.approx(field.rasters["residential"][r, c], abs=1e-5)


def test_city_latent_field_is_the_bundles_field(tiny_bundle):
    from musecl.synthetic import city_latent_field
    from musecl.synthetic.frame import build_frame
    from musecl.synthetic.generate import FRAME
    from musecl.synthetic.latents import region_latents

    config = preset("tiny")
    field = city_latent_field(config, seed=7)
    frame = build_frame(config, np.random.default_rng([7, FRAME]))
    means = region_latents(field, frame, tiny_bundle.regions(), config.h3_resolution).set_index(schema.REGION_ID)
    stored = tiny_bundle.latents()
    np.testing.assert_allclose(means[stored.columns].to_numpy(), stored.to_numpy())
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        city_latent_field(config, seed=-1)
