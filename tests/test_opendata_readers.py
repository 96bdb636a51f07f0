"""musecl.opendata readers for data as it is actually released: pre-cut tiles per region, panoramas of any aspect
ratio, indicators at another grid's points, inputs in other datums (GCJ-02, BD-09, any CRS), and regions chosen by the
modalities they have. Every input is made here, small, in tmp_path."""
from __future__ import annotations

import warnings

import h3
import numpy as np
import pandas as pd
import pytest
import shapely

from musecl.opendata import BuildError, ConfigError, build_bundle, city_config_from_dict
from musecl.opendata.config import IndicatorConfig, RemoteSensingConfig, StreetViewConfig, TilesTableConfig
from musecl.opendata.points import RegionAssigner
from musecl.opendata.report import BuildWarning
from musecl.data.regions import regions_from_boundary

RES = 9
BOX = (116.30, 39.85, 116.36, 39.90)  # a small piece of Beijing


@pytest.fixture(scope="module")
def grid():
    regions = regions_from_boundary(shapely.box(*BOX), RES)
    return regions, RegionAssigner(regions["region_id"].to_numpy(), RES)


def _png(path, width, height, value=100, mode="RGB"):
    from PIL import Image

    if mode == "I;16":
        Image.fromarray(np.full((height, width), value, dtype=np.uint16)).save(path)
    else:
        arr = np.full((height, width, 3), value, dtype=np.uint8)
        arr[:, : width // 2, 0] = 250  # left half red: shows which part a crop kept
        Image.fromarray(arr).save(path)


# ---- pre-cut tiles per region --------------------------------------------------------------------------------------
def test_tiles_table_by_point_counts_every_loss_and_crops_or_pads(tmp_path, grid):
    from PIL import Image

    from musecl.opendata.tiles_table import read_tiles_table

    regions, _ = grid
    folder = tmp_path / "tiles"
    (folder / "r0").mkdir(parents=True)
    _png(folder / "r0" / "square.png", 32, 32)
    _png(folder / "wide.png", 60, 30)
    _png(folder / "deep.png", 32, 32, value=65535 // 2, mode="I;16")
    (folder / "broken.png").write_bytes(b"not a png")
    lon, lat = regions["lon"].to_numpy(), regions["lat"].to_numpy()
    table = pd.DataFrame({
        "image": ["r0/square.png", "wide.png", "deep.png", "broken.png", "gone.png", "wide.png", None],
        "x": [lon[0], lon[1], lon[2], lon[3], lon[4], 10.0, lon[5]],
        "y": [lat[0], lat[1], lat[2], lat[3], lat[4], 10.0, lat[5]],
    })
    table.to_csv(folder / "tiles.csv", index=False)
    tiles = TilesTableConfig(table=folder / "tiles.csv", path="image", lon="x", lat="y")
    config = RemoteSensingConfig(tiles=tiles, tile_pixels=16)
    with pytest.warns(BuildWarning) as caught:
        index, report = read_tiles_table(config, regions, RES, tmp_path / "bundle", progress=False)
    messages = [str(w.message) for w in caught]
    assert report.read == 7 and report.kept == 3
    assert report.dropped == {"unreadable image": 2, "outside the regions": 1, "no image path": 1}
    unreadable = "2 tiles of tiles.csv missing or undecodable (1 cannot decode (UnidentifiedImageError), 1 missing file)"
    assert any(unreadable in m for m in messages)
    assert any("1 of 3 tiles are not square (e.g. wide.png: 60x30 px)" in m and "centre-cropped" in m
               for m in messages)
    assert index["region_id"].tolist() == regions["region_id"][:3].tolist()
    wide = np.asarray(Image.open(tmp_path / "bundle" / index["path"][1]))
    assert wide.shape == (16, 16, 3)
    # the centre 30x30 of a 60x30 image whose left half is red: the left half of the crop is red, the right not
    assert wide[:, :6, 0].mean() > 240 and wide[:, 10:, 0].mean() < 110
    deep = np.asarray(Image.open(tmp_path / "bundle" / index["path"][2]))
    assert abs(int(deep.mean()) - 127) <= 1  # 16-bit mid-grey scaled to 8 bits, not clipped to white
    assert any("1 tiles converted: 16-bit grey" in n for n in report.notes)

    padded = RemoteSensingConfig(tiles=TilesTableConfig(**{**tiles.__dict__, "non_square": "pad"}), tile_pixels=16)
    with pytest.warns(BuildWarning) as caught:  # the unreadable tiles are reported again
        index, _ = read_tiles_table(padded, regions, RES, tmp_path / "bundle_pad", progress=False)
    assert any("padded with black" in str(w.message) for w in caught)
    wide = np.asarray(Image.open(tmp_path / "bundle_pad" / index["path"][1]))
    assert wide[:3].max() <= 5 and wide[-3:].max() <= 5 and wide[6:10].max() > 200  # black bands above and below
    strict = RemoteSensingConfig(tiles=TilesTableConfig(**{**tiles.__dict__, "non_square": "error"}), tile_pixels=16)
    with pytest.raises(BuildError, match=r"wide.png: tile is 60x30 px, not square"), warnings.catch_warnings():
        warnings.simplefilter("ignore", BuildWarning)
        read_tiles_table(strict, regions, RES, tmp_path / "bundle_err", progress=False)


def test_tiles_table_by_h3_id(tmp_path, grid):
    from musecl.opendata.tiles_table import read_tiles_table

    regions, _ = grid
    ids = regions["region_id"].tolist()
    _png(tmp_path / "a.png", 20, 20)
    child = h3.cell_to_center_child(ids[1], RES + 2)
    table = pd.DataFrame({"cell": [ids[0].upper(), child, h3.cell_to_parent(ids[2], RES - 1), "nonsense", ids[0]],
                          "path": ["a.png"] * 5})
    table.to_csv(tmp_path / "tiles.csv", index=False)
    config = RemoteSensingConfig(tiles=TilesTableConfig(table=tmp_path / "tiles.csv", region_id="cell"),
                                 tile_pixels=20)
    index, report = read_tiles_table(config, regions, RES, tmp_path / "bundle", progress=False)
    assert report.dropped == {"not an H3 cell id": 1, "H3 cell coarser than h3_resolution": 1}
    # upper-case ids are H3 ids; a finer cell belongs to its parent; a region may have several tiles
    assert index["region_id"].tolist() == [ids[0], ids[1], ids[0]]
    assert index["image_id"].tolist() == [ids[0], ids[1], f"{ids[0]}_1"]


# ---- panoramas of any aspect ratio -----------------------------------------------------------------------------------
def test_panoramas_that_are_not_two_to_one_are_split_with_a_warning(tmp_path, grid):
    from musecl.opendata.street_view import read_street_view

    regions, assigner = grid
    folder = tmp_path / "sv"
    folder.mkdir()
    _png(folder / "full.png", 80, 40)
    _png(folder / "cut.png", 90, 30)
    pd.DataFrame({"path": ["full.png", "cut.png"], "lon": regions["lon"][:2], "lat": regions["lat"][:2]}).to_csv(
        folder / "meta.csv", index=False)
    config = StreetViewConfig(metadata=folder / "meta.csv", folder=folder, panoramas=True)
    with pytest.warns(BuildWarning, match=r"1 of 2 panoramas are not 2:1 \(e.g. cut.png: 90x30 px, 3.00:1\)"):
        index, report = read_street_view(config, assigner, tmp_path / "bundle", progress=False)
    assert len(index) == 8 and any("each was still cut into four quarter-width views" in n for n in report.notes)
    config = StreetViewConfig(metadata=folder / "meta.csv", folder=folder, panoramas=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BuildWarning)  # plain photos: no panorama warning
        read_street_view(config, assigner, tmp_path / "bundle2", progress=False)


# ---- indicators at another grid's points ----------------------------------------------------------------------------
def _source_grid(tmp_path, west_only=False):
    """Centroids of a coarser H3 grid (resolution RES - 1) with a smooth value, as a header-less CSV."""
    cells = regions_from_boundary(shapely.box(BOX[0] - 0.01, BOX[1] - 0.01, BOX[2] + 0.01, BOX[3] + 0.01), RES - 1)
    if west_only:
        cells = cells[cells["lon"] < (BOX[0] + BOX[2]) / 2]
    value = 100 + 1000 * (cells["lon"] - BOX[0]) + 500 * (cells["lat"] - BOX[1])
    frame = pd.DataFrame({"a": cells["lon"], "b": cells["lat"], "v": value})
    path = tmp_path / ("west.csv" if west_only else "grid.csv")
    frame.to_csv(path, index=False, header=False)
    return path, dict(zip(cells["region_id"], value))


def _points_config(path, **kw):
    base = dict(name="income", kind="points", file=path, lon="lon", lat="lat", value="value", header=False,
                columns=("lon", "lat", "value"), transform="identity", missing="error")
    return IndicatorConfig(**{**base, **kw})


def _centres(regions):
    from musecl.opendata.boundary import local_metric_crs

    crs = local_metric_crs(shapely.box(*BOX))
    c = regions.to_crs(crs).centroid
    return crs, np.column_stack([c.x, c.y])


def test_sum_of_another_grids_values_warns_and_other_aggregates_recover_them(tmp_path, grid):
    from musecl.opendata.indicators import count_points
    from musecl.opendata.indicators_points import aggregate_point_values

    regions, assigner = grid
    crs, centres = _centres(regions)
    path, truth = _source_grid(tmp_path)
    parent = np.array([truth[h3.cell_to_parent(r, RES - 1)] for r in regions["region_id"]])
    summed = _points_config(path, aggregate="sum", value=None)
    with pytest.warns(BuildWarning, match="set aggregate: nearest, mean or area_weighted"):
        values, report = count_points(summed, assigner)
    assert (values == 0).mean() > 0.6
    assert not any("swapped" in n for n in report.notes)
    rng = np.random.default_rng(1)  # scattered events as sparse as the grid: zeros, but no grid warning
    pd.DataFrame({"lon": rng.uniform(BOX[0], BOX[2], 50), "lat": rng.uniform(BOX[1], BOX[3], 50)}).to_csv(
        tmp_path / "events.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BuildWarning)
        values, report = count_points(IndicatorConfig(name="crime", kind="points", file=tmp_path / "events.csv",
                                                      lon="lon", lat="lat"), assigner)
    assert (values == 0).mean() > 0.8 and "regions hold no point (value 0)" in report.notes[0]
    h3_cells = {"source_cells": "h3", "source_h3_resolution": RES - 1}
    for aggregate, extra in (("nearest", {}), ("area_weighted", h3_cells), ("area_weighted", {}),
                             ("mean", {"missing": "nearest"})):
        config = _points_config(path, aggregate=aggregate, **extra)
        values, report = aggregate_point_values(config, regions, assigner, crs, centres)
        error = np.abs(values - parent)
        tolerance = 0.2 * np.ptp(parent)
        # nearest and area-weighted follow the source cell the region lies in (H3 children stick out of their parent
        # a little, and Voronoi cells of a projected lattice are close to, not exactly, its hexagons)
        assert np.median(error) < (tolerance if aggregate == "mean" else 0.05 * np.ptp(parent)), (aggregate, extra)
        account = " ".join(report.notes)
        assert f"aggregate {aggregate}" in account and "regions" in account
    assert "distance median" in aggregate_point_values(_points_config(path, aggregate="nearest"), regions, assigner,
                                                       crs, centres)[1].notes[0]


def test_regions_without_a_value_follow_the_missing_policy(tmp_path, grid):
    from musecl.opendata.indicators_points import aggregate_point_values

    regions, assigner = grid
    crs, centres = _centres(regions)
    path, _ = _source_grid(tmp_path, west_only=True)
    config = _points_config(path, aggregate="mean")
    with pytest.raises(BuildError, match=r"indicator 'income' does not cover \d+ regions, e.g. "):
        aggregate_point_values(config, regions, assigner, crs, centres)
    dropped, report = aggregate_point_values(_points_config(path, aggregate="mean", missing="drop"), regions, assigner,
                                             crs, centres)
    assert np.isnan(dropped).sum() > len(regions) / 3
    assert any("dropped from the bundle" in n for n in report.notes)
    area, report = aggregate_point_values(_points_config(path, aggregate="area_weighted", missing="zero"), regions,
                                          assigner, crs, centres)
    assert np.isfinite(area).all() and (area == 0).sum() > len(regions) / 4
    assert any("overlap no cell (missing: zero)" in n for n in report.notes)


def test_lon_lat_swap_is_blamed_only_when_swapping_fits(tmp_path, grid):
    from musecl.opendata.indicators import count_points

    regions, assigner = grid
    swapped = pd.DataFrame({"lon": regions["lat"], "lat": regions["lon"]})
    swapped.to_csv(tmp_path / "swapped.csv", index=False)
    elsewhere = pd.DataFrame({"lon": regions["lon"] + 1.0, "lat": regions["lat"]})
    elsewhere.to_csv(tmp_path / "elsewhere.csv", index=False)
    base = dict(name="crime", kind="points", lon="lon", lat="lat")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BuildWarning)
        _, report = count_points(IndicatorConfig(**base, file=tmp_path / "swapped.csv"), assigner)
        assert any("the lon and lat columns look swapped" in n for n in report.notes)
        _, report = count_points(IndicatorConfig(**base, file=tmp_path / "elsewhere.csv"), assigner)
    assert not any("swapped" in n for n in report.notes)
    assert any("another datum or CRS" in n for n in report.notes)


@pytest.mark.parametrize("edit, message", [
    ({"aggregate": "mean"}, "aggregate mean needs the column holding the values"),
    ({"header": False}, "name the file's columns in order"),
    ({"aggregate": "nearest", "value": "v", "missing": "zero"}, "missing applies to mean and area_weighted"),
    ({"aggregate": "area_weighted", "value": "v", "source_cells": "h3"}, "needs the source grid's H3 resolution"),
    ({"crs": "not-a-crs"}, "neither WGS84, GCJ-02, BD-09 nor a CRS pyproj knows"),
])
def test_point_indicator_config_errors_name_the_key(tmp_path, edit, message):
    (tmp_path / "p.csv").write_text("lon,lat,v\n116.3,39.86,1\n")
    spec = {"kind": "points", "file": "p.csv", "lon": "lon", "lat": "lat", **edit}
    data = {"name": "x", "h3_resolution": RES, "boundary": {"bbox": list(BOX)},
            "pois": {"table": {"file": "p.csv", "columns": {"lon": "lon", "lat": "lat", "category": "v"}}},
            "trips": {"files": "p.csv", "columns": {"start_time": "v", "origin_lon": "lon", "origin_lat": "lat",
                                                    "dest_lon": "lon", "dest_lat": "lat"}},
            "remote_sensing": {"geotiff": "p.csv"}, "street_view": {"metadata": "p.csv"},
            "indicators": {"crime": spec}}
    with pytest.raises(ConfigError, match="indicators.crime"):
        try:
            city_config_from_dict(data, tmp_path)
        except ConfigError as err:
            assert message in str(err)
            raise


# ---- coordinate systems ----------------------------------------------------------------------------------------------
def test_gcj02_and_bd09_round_trip_error_is_below_centimetres():
    from musecl.opendata.crs import to_wgs84, wgs84_to_chinese

    rng = np.random.default_rng(0)
    lon, lat = rng.uniform(100, 122, 2000), rng.uniform(21, 41, 2000)  # south-west to north-east China
    metres = np.array([111_320 * np.cos(np.radians(lat)), np.full(len(lat), 110_540)])
    for datum, limit in (("GCJ-02", 0.01), ("BD-09", 0.05)):
        x, y = wgs84_to_chinese(lon, lat, datum)
        offset = np.hypot((x - lon) * metres[0], (y - lat) * metres[1])
        assert np.median(offset) > 100  # the datum shifts points by hundreds of metres ...
        back_lon, back_lat = to_wgs84(x, y, datum)
        error = np.hypot((back_lon - lon) * metres[0], (back_lat - lat) * metres[1])
        print(f"{datum}: offset median {np.median(offset):.0f} m; round-trip error max {error.max() * 1000:.2f} mm, "
              f"99th percentile {np.percentile(error, 99) * 1000:.2f} mm")
        assert error.max() < limit  # ... and the iterative inverse undoes it to millimetres


def test_every_point_reader_converts_its_crs(tmp_path, grid):
    from pyproj import Transformer

    from musecl.opendata.config import BoundaryConfig, TablePoisConfig
    from musecl.opendata.boundary import read_boundary
    from musecl.opendata.crs import wgs84_to_chinese
    from musecl.opendata.indicators import count_points
    from musecl.opendata.pois_table import read_table_pois

    regions, assigner = grid
    lon, lat = regions["lon"].to_numpy(), regions["lat"].to_numpy()
    g_lon, g_lat = wgs84_to_chinese(lon, lat, "GCJ-02")
    b_lon, b_lat = wgs84_to_chinese(lon, lat, "BD-09")
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32650", always_xy=True).transform(lon, lat)
    for crs, (a, b) in (("GCJ-02", (g_lon, g_lat)), ("bd09", (b_lon, b_lat)), ("EPSG:32650", (x, y))):
        pd.DataFrame({"lon": a, "lat": b, "cat": "food;cafe"}).to_csv(tmp_path / "p.csv", index=False)
        counts, report = count_points(IndicatorConfig(name="n", kind="points", file=tmp_path / "p.csv", lon="lon",
                                                      lat="lat", crs=crs), assigner)
        assert (counts == 1).all(), crs  # every point lands in its own region again
        assert any("converted from" in n for n in report.notes)
        pois, report = read_table_pois(TablePoisConfig(file=tmp_path / "p.csv", lon="lon", lat="lat", category="cat",
                                                       crs=crs), assigner)
        assert len(pois) == len(regions) and np.allclose(pois["lon"], lon, atol=1e-6), crs
    # without the crs, the GCJ-02 shift (hundreds of metres) puts nearly every point into another region's cell
    assert (assigner.assign(g_lon, g_lat) != np.arange(len(regions))).mean() > 0.9
    box_x, box_y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(BOX[::2], BOX[1::2])
    boundary, report = read_boundary(BoundaryConfig(bbox=(box_x[0], box_y[0], box_x[1], box_y[1]), crs="EPSG:3857"))
    assert np.allclose(boundary.bounds, BOX, atol=1e-6) and "converted to WGS84" in report.notes[0]


# ---- a whole build from released-style data ------------------------------------------------------------------------
def _released_city(tmp_path, keep=None, missing="drop"):
    """Tiles for some regions, panoramas for most of them, a header-less GCJ-02 indicator grid covering the west."""
    from musecl.opendata.crs import wgs84_to_chinese

    box = (116.30, 39.85, 116.33, 39.87)
    cells = regions_from_boundary(shapely.box(*box), RES)
    n = len(cells)
    lon, lat = cells["lon"].to_numpy(), cells["lat"].to_numpy()
    (tmp_path / "tiles").mkdir()
    (tmp_path / "sv").mkdir()
    for i in range(n):
        _png(tmp_path / "tiles" / f"{i}.png", 24, 20, value=40 + i)
        _png(tmp_path / "sv" / f"{i}.png", 64, 32, value=40 + i)
    with_tile = np.arange(n) % 3 != 0
    pd.DataFrame({"cell": cells["region_id"][with_tile], "file": [f"tiles/{i}.png" for i in np.flatnonzero(with_tile)]}
                 ).to_csv(tmp_path / "tiles.csv", index=False)
    pd.DataFrame({"path": [f"{i}.png" for i in range(n)], "lon": lon, "lat": lat}).to_csv(tmp_path / "sv" / "m.csv",
                                                                                        index=False)
    with_poi = np.arange(n) % 2 == 0
    pd.DataFrame({"lon": lon[with_poi], "lat": lat[with_poi], "category": "food;cafe", "name": "x"}).to_csv(
        tmp_path / "pois.csv", index=False)
    pd.DataFrame({"start": "2024-01-01 08:00", "olon": lon, "olat": lat, "dlon": lon, "dlat": lat}
                 ).to_csv(tmp_path / "trips.csv", index=False)
    west = lon < (box[0] + box[2]) / 2
    g_lon, g_lat = wgs84_to_chinese(lon[west], lat[west], "GCJ-02")
    pd.DataFrame({"a": g_lon, "b": g_lat, "v": np.arange(west.sum()) + 1.0}).to_csv(tmp_path / "grid.csv",
                                                                                    index=False, header=False)
    data = {
        "name": "released", "h3_resolution": RES, "boundary": {"bbox": list(box)},
        "pois": {"table": {"file": "pois.csv", "columns": {"lon": "lon", "lat": "lat", "category": "category",
                                                           "name": "name"}}},
        "trips": {"files": "trips.csv", "columns": {"start_time": "start", "origin_lon": "olon", "origin_lat": "olat",
                                                    "dest_lon": "dlon", "dest_lat": "dlat"}},
        "remote_sensing": {"tiles": {"table": "tiles.csv", "columns": {"region_id": "cell", "path": "file"}},
                           "tile_pixels": 16},
        "street_view": {"metadata": "sv/m.csv", "panoramas": True},
        "indicators": {
            "value": {"kind": "points", "file": "grid.csv", "header": False, "columns": ["x", "y", "v"], "lon": "x",
                      "lat": "y", "value": "v", "aggregate": "mean", "missing": missing, "crs": "GCJ-02",
                      "transform": "identity"},
            "pois": {"kind": "bundle", "of": "poi_count"},
        },
    }
    if keep is not None:
        data["regions"] = {"keep": keep}
    return city_config_from_dict(data, tmp_path), n, with_tile, with_poi, west


def test_build_keeps_regions_with_the_chosen_modalities_and_reports_removals(tmp_path):
    from musecl.data import CityBundle
    from musecl.data.validate import validate_bundle

    config, n, with_tile, with_poi, west = _released_city(tmp_path, keep=["rs", "sv", "pois"])
    with pytest.warns(BuildWarning) as caught:
        report = build_bundle(config, tmp_path / "city", seed=0, progress=False)
    assert any("tiles are not square" in str(w.message) for w in caught)
    regions_report = next(r for r in report.readers if r.reader == "regions")
    assert regions_report.read == n
    assert regions_report.dropped["no remote-sensing tile"] == int((~with_tile).sum())
    assert regions_report.dropped["no POI"] == int((with_tile & ~with_poi).sum())
    kept = with_tile & with_poi
    assert regions_report.dropped["no value of indicator value (missing: drop)"] == int((kept & ~west).sum())
    assert report.n_regions == regions_report.kept == int((kept & west).sum()) > 0
    assert any("regions.keep ['rs', 'sv', 'pois']" in n for n in regions_report.notes)
    validation = validate_bundle(tmp_path / "city", progress=False)
    assert validation.ok, validation.summary()
    bundle = CityBundle(tmp_path / "city")
    indicators = bundle.indicators(transformed=False)
    assert len(indicators) == report.n_regions and np.isfinite(indicators["value"]).all()
    assert bundle.meta["indicators"]["value"]["aggregate"] == "mean"
    # the pre-cut tiles were 24x20: centre-cropped, with the warning in the build record
    notes = " ".join(n for r in bundle.meta["build"]["report"]["readers"] for n in r["notes"])
    assert "tiles are not square" in notes and "GCJ-02 to WGS84" in notes


def test_build_missing_error_names_the_indicator_and_default_keep_is_rs_and_sv(tmp_path):
    config, n, with_tile, _, _ = _released_city(tmp_path, missing="error")
    assert config.regions == ("rs", "sv")
    with pytest.raises(BuildError, match="indicator 'value' does not cover"), warnings.catch_warnings():
        warnings.simplefilter("ignore", BuildWarning)
        build_bundle(config, tmp_path / "city", seed=0, progress=False)
    assert not (tmp_path / "city").exists()
    with pytest.raises(ConfigError, match="regions.keep"):
        city_config_from_dict({**config.raw, "regions": {"keep": ["rs", "mobility"]}}, tmp_path)


def test_regions_keep_without_a_modality_keeps_regions_lacking_it_with_a_warning(tmp_path):
    config, n, with_tile, _, _ = _released_city(tmp_path, keep=["sv"], missing="zero")
    with pytest.warns(BuildWarning) as caught:
        report = build_bundle(config, tmp_path / "city", seed=0, progress=False)
    expected = (f"{int((~with_tile).sum())} kept regions have no remote-sensing tile (rs not in regions.keep): "
                "their rs embedding is filled by encoders.missing_regions")
    assert any(expected in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert report.n_regions == n and not next(r for r in report.readers if r.reader == "regions").dropped


def test_street_view_trips_and_tiles_convert_their_crs(tmp_path, grid):
    from musecl.opendata.config import TripsConfig
    from musecl.opendata.crs import wgs84_to_chinese
    from musecl.opendata.street_view import read_street_view
    from musecl.opendata.tiles_table import read_tiles_table
    from musecl.opendata.trips import read_trips

    regions, assigner = grid
    lon, lat = regions["lon"].to_numpy()[:20], regions["lat"].to_numpy()[:20]
    b_lon, b_lat = wgs84_to_chinese(lon, lat, "BD-09")
    _png(tmp_path / "p.png", 16, 16)
    pd.DataFrame({"path": "p.png", "lon": b_lon, "lat": b_lat, "image_id": [f"i{i}" for i in range(20)]}).to_csv(
        tmp_path / "meta.csv", index=False)
    index, _ = read_street_view(StreetViewConfig(metadata=tmp_path / "meta.csv", folder=tmp_path, image_id="image_id",
                                                 crs="BD-09"), assigner, tmp_path / "b1", progress=False)
    assert np.allclose(index["lon"], lon, atol=1e-6) and np.allclose(index["lat"], lat, atol=1e-6)
    table = TilesTableConfig(table=tmp_path / "meta.csv", lon="lon", lat="lat", crs="BD-09")
    tiles, _ = read_tiles_table(RemoteSensingConfig(tiles=table, tile_pixels=16), regions, RES, tmp_path / "b2",
                                progress=False)
    assert tiles["region_id"].tolist() == regions["region_id"][:20].tolist()
    pd.DataFrame({"t": "2024-01-01 08:00", "ox": b_lon, "oy": b_lat, "dx": b_lon[::-1], "dy": b_lat[::-1]}).to_csv(
        tmp_path / "trips.csv", index=False)
    config = TripsConfig(files=(tmp_path / "trips.csv",), start_time="t", origin_lon="ox", origin_lat="oy",
                         dest_lon="dx", dest_lat="dy", crs="BD-09")
    report, counts = read_trips(config, assigner, tmp_path / "trips.parquet", seed=0, progress=False)
    assert report.kept == 20 and (counts.origins[:20] == 1).all()


def test_every_crs_key_is_read_from_the_city_config(tmp_path):
    (tmp_path / "p.csv").write_text("lon,lat,v\n116.3,39.86,1\n")
    (tmp_path / "traj").mkdir()
    crs = {"crs": "GCJ-02"}
    data = {"name": "x", "h3_resolution": RES, "boundary": {"bbox": list(BOX), "crs": "EPSG:4326"},
            "pois": {"table": {"file": "p.csv", "columns": {"lon": "lon", "lat": "lat", "category": "v"}, **crs}},
            "trips": {"files": "p.csv", "columns": {"start_time": "v", "origin_lon": "lon", "origin_lat": "lat",
                                                    "dest_lon": "lon", "dest_lat": "lat"}, "crs": "bd-09"},
            "trajectories": {"folder": "traj", "crs": "EPSG:32650"},
            "remote_sensing": {"tiles": {"table": "p.csv", "columns": {"path": "v", "lon": "lon", "lat": "lat"},
                                         **crs}},
            "street_view": {"metadata": "p.csv", **crs},
            "regions": {"keep": ["rs", "pois"]},
            "indicators": {"n": {"kind": "points", "file": "p.csv", "lon": "lon", "lat": "lat", **crs}}}
    config = city_config_from_dict(data, tmp_path)
    assert config.boundary.crs is None  # WGS84 is no conversion
    assert (config.pois.table.crs, config.trips.crs, config.trajectories.crs) == ("GCJ-02", "bd-09", "EPSG:32650")
    assert config.remote_sensing.tiles.crs == config.street_view.crs == config.indicators[0].crs == "GCJ-02"
    assert config.regions == ("rs", "pois") and config.remote_sensing.tiles.non_square == "crop"


def test_pois_and_mobility_are_optional_sections_and_what_needs_them_is_checked(tmp_path):
    from musecl.data import CityBundle
    from musecl.data.validate import validate_bundle

    config, n, with_tile, _, _ = _released_city(tmp_path, missing="zero")
    raw = {k: v for k, v in config.raw.items() if k not in ("pois", "trips")}
    raw["indicators"] = {"value": raw["indicators"]["value"]}
    bare = city_config_from_dict(raw, tmp_path)
    assert bare.pois is None and bare.trips is None and bare.trajectories is None
    with pytest.raises(ConfigError, match=r"'indicators.pois': poi_count is counted from the bundle's pois, but the "
                                          r"config has no 'pois' section"):
        city_config_from_dict({**raw, "indicators": config.raw["indicators"]}, tmp_path)
    with pytest.raises(ConfigError, match=r"'regions.keep': 'pois' needs a 'pois' section"):
        city_config_from_dict({**raw, "regions": {"keep": ["rs", "pois"]}}, tmp_path)
    with pytest.raises(ConfigError, match=r"trip_count is counted from the bundle's trips"):
        city_config_from_dict({**raw, "indicators": {"trips": {"kind": "bundle", "of": "trip_count"}}}, tmp_path)
    with pytest.warns(BuildWarning):
        report = build_bundle(bare, tmp_path / "city", seed=0, progress=False)
    bundle = CityBundle(tmp_path / "city")
    assert bundle.modalities == ("rs", "sv") and not (tmp_path / "city" / "pois.parquet").exists()
    assert bundle.meta["counts"]["pois"] == 0 and report.n_regions == int(with_tile.sum())
    validation = validate_bundle(tmp_path / "city", progress=False)
    assert validation.ok and any(w.startswith("modalities: the city has rs, sv; missing poi") for w in validation.warnings)
