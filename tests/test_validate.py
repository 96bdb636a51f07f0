"""validate_bundle / import_bundle on a small hand-made bundle: valid as built, then broken one way per test."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pytest
import shapely
from PIL import Image

from musecl.data import CityBundle, schema
from musecl.data.bundle import BundleError
from musecl.data.regions import cell_polygons, regions_from_boundary
from musecl.data.validate import BundleValidationError, ValidationReport, import_bundle, main, validate_bundle

RES = 8
CENTRE = (39.90, 116.40)  # lat, lon
EDGE_DEG = h3.average_hexagon_edge_length(RES, "km") / 111.32


def _png(size: int, shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (shade, 255 - shade, 90)).save(buf, format="PNG")
    return buf.getvalue()


def make_parts() -> dict:
    """The pieces of a valid 7-region bundle, as objects a test can break before `write_bundle`."""
    centre_cell = h3.latlng_to_cell(*CENTRE, RES)
    disk = sorted(h3.grid_disk(centre_cell, 1))
    boundary = shapely.union_all(cell_polygons(disk)).buffer(0)
    regions = regions_from_boundary(boundary, RES)
    assert sorted(regions["region_id"]) == disk  # the boundary keeps exactly the 7 cells
    ids = regions["region_id"].tolist()
    lon, lat = regions["lon"].to_numpy(), regions["lat"].to_numpy()

    # Three POIs per region, close to the centre (well inside the hexagon).
    offsets = np.array([[0.0, 0.0], [0.25, 0.1], [-0.2, -0.15]]) * EDGE_DEG
    pois = pd.DataFrame({
        "poi_id": [f"p{i}" for i in range(3 * len(ids))],
        "lon": np.repeat(lon, 3) + np.tile(offsets[:, 0], len(ids)),
        "lat": np.repeat(lat, 3) + np.tile(offsets[:, 1], len(ids)),
        "category": [["food;restaurant", "shopping;mall", "education;school"][i % 3] for i in range(3 * len(ids))],
        "name": [f"poi {i}" for i in range(3 * len(ids))],
        "n_comments": np.arange(3 * len(ids), dtype=np.int64),
    })
    n_trips = 12
    trips = pd.DataFrame({
        "trip_id": [f"t{i}" for i in range(n_trips)],
        "origin_lon": lon[np.arange(n_trips) % 7], "origin_lat": lat[np.arange(n_trips) % 7],
        "dest_lon": lon[(np.arange(n_trips) + 3) % 7], "dest_lat": lat[(np.arange(n_trips) + 3) % 7],
        "start_time": pd.date_range("2024-03-04 08:00", periods=n_trips, freq="37min"),
    })
    trips["end_time"] = trips["start_time"] + pd.Timedelta(minutes=20)
    remote = pd.DataFrame({
        "image_id": [f"rs{i}" for i in range(len(ids))],
        "region_id": ids,
        "path": [f"{schema.REMOTE_SENSING_DIR}/{r}.png" for r in ids],
    })
    # Two street-view images per region: at the centre and slightly off it.
    street = pd.DataFrame({
        "image_id": [f"sv{i}" for i in range(2 * len(ids))],
        "path": [f"{schema.STREET_VIEW_DIR}/sv{i}.png" for i in range(2 * len(ids))],
        "lon": np.repeat(lon, 2) + np.tile([0.0, 0.2 * EDGE_DEG], len(ids)),
        "lat": np.repeat(lat, 2),
        "heading": np.tile([0.0, 270.0], len(ids)),
    })
    indicators = pd.DataFrame({
        "region_id": ids,
        "population_density": np.linspace(100.0, 700.0, len(ids)),
        "poi_count": np.full(len(ids), 3.0),
    })
    meta = {
        "name": "hand-made", "h3_resolution": RES, "crs": "EPSG:4326", "format_version": 1,
        "indicators": {
            "population_density": {"transform": "log1p", "unit": "people/km²", "description": "population density"},
            "poi_count": {"transform": "log1p", "unit": "count", "description": "number of POIs"},
        },
    }
    images = {p: _png(16, 10 * i) for i, p in enumerate(remote["path"])}
    images.update({p: _png(24, 5 * i) for i, p in enumerate(street["path"])})
    return dict(meta=meta, boundary=boundary, regions=regions, pois=pois, trips=trips, remote_sensing=remote,
                street_view=street, indicators=indicators, images=images)


def write_bundle(root: Path, parts: dict) -> Path:
    """Write `parts` as a bundle folder; a part set to None is left out."""
    root.mkdir(parents=True, exist_ok=True)
    if parts.get("meta") is not None:
        (root / schema.CITY_FILE).write_text(json.dumps(parts["meta"]))
    if parts.get("boundary") is not None:
        feature = {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(parts["boundary"])}
        (root / schema.BOUNDARY_FILE).write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    for name, spec in schema.TABLES.items():
        if parts.get(name) is not None:
            parts[name].to_parquet(root / spec.file, index=False)
    for rel, data in (parts.get("images") or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


@pytest.fixture
def parts() -> dict:
    return make_parts()


def errors_of(root: Path, **kwargs) -> list[str]:
    """The errors validation raises (each on its own line of the BundleError)."""
    with pytest.raises(BundleError) as info:
        validate_bundle(root, progress=False, **kwargs)
    lines = str(info.value).splitlines()
    assert lines[0].endswith(f"{len(lines) - 1} error(s):")
    assert isinstance(info.value, BundleValidationError) and len(info.value.report.errors) == len(lines) - 1
    return [line.removeprefix("  - ") for line in lines[1:]]


def only(errors: list[str], *fragments: str) -> str:
    """The one error containing every fragment."""
    hits = [e for e in errors if all(f in e for f in fragments)]
    assert len(hits) == 1, f"expected one error with {fragments}, got:\n" + "\n".join(errors)
    return hits[0]


# ---- the valid bundle ---------------------------------------------------------------------------------------------
def test_valid_bundle_validates_cleanly(tmp_path, parts):
    root = write_bundle(tmp_path / "city", parts)
    report = validate_bundle(root, progress=False)
    assert isinstance(report, ValidationReport)
    assert report.ok and report.errors == [] and report.warnings == [] and report.dropped == {}
    assert report.rows == {"regions.parquet": 7, "pois.parquet": 21, "trips.parquet": 12, "remote_sensing.parquet": 7,
                           "street_view.parquet": 14, "indicators.parquet": 7}
    assert report.city == "hand-made" and report.h3_resolution == RES
    assert report.summary().startswith("VALID: 'hand-made'")
    assert "| `pois.parquet` | 21 | 0 | 21 |" in report.to_markdown()
    # ...and the reader agrees with it.
    bundle = CityBundle(root)
    assert len(bundle.regions()) == 7 and bundle.indicators().shape == (7, 2)


# ---- files and columns --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("part,expected", [
    ("indicators", "indicators.parquet: missing (expected the indicators table with columns ['region_id'])"),
    ("boundary", "boundary.geojson: missing (expected a GeoJSON file with the city's (Multi)Polygon boundary"),
    ("meta", "city.json: missing (expected a JSON object with keys ['name', 'h3_resolution', 'indicators'])"),
])
def test_missing_file(tmp_path, parts, part, expected):
    parts[part] = None
    assert any(e.startswith(expected) for e in errors_of(write_bundle(tmp_path / "city", parts)))


@pytest.mark.parametrize("missing,modality", [("pois", "poi (pois.parquet)"),
                                              ("street_view", "sv (street_view.parquet)"),
                                              ("trips", "mobility (trips.parquet")])
def test_a_missing_modality_is_a_warning_that_names_it(tmp_path, parts, missing, modality):
    parts[missing] = None
    report = validate_bundle(write_bundle(tmp_path / "city", parts), progress=False)
    assert report.ok and report.errors == []
    warning = only(report.warnings, "modalities: the city has")
    assert f"missing {modality}" in warning and "skipped" in warning
    assert ("fall back to geographic neighbours" in warning) == (missing != "street_view")


def test_no_modality_at_all_is_an_error(tmp_path, parts):
    for part in ("pois", "trips", "remote_sensing", "street_view"):
        parts[part] = None
    for rel in list(parts["images"]):
        del parts["images"][rel]
    only(errors_of(write_bundle(tmp_path / "city", parts)), "no modality:", "expected at least one of the modalities")


def test_missing_city_keys(tmp_path, parts):
    del parts["meta"]["h3_resolution"]
    only(errors_of(write_bundle(tmp_path / "city", parts)), "city.json: missing key 'h3_resolution'", "expected keys")


def test_unreadable_table(tmp_path, parts):
    root = write_bundle(tmp_path / "city", parts)
    (root / schema.TRIPS_FILE).write_bytes(b"this is not parquet")
    only(errors_of(root), "trips.parquet: cannot read as parquet")


def test_misnamed_column_suggests_the_closest_name(tmp_path, parts):
    parts["pois"] = parts["pois"].rename(columns={"lon": "lng"})
    error = only(errors_of(write_bundle(tmp_path / "city", parts)), "pois.parquet")
    assert "missing column 'lon'" in error and "found 'lng'" in error and "expected columns" in error


def test_wrong_dtype_of_an_id_column(tmp_path, parts):
    parts["pois"]["poi_id"] = np.arange(len(parts["pois"]))
    error = only(errors_of(write_bundle(tmp_path / "city", parts)), "pois.parquet")
    assert "column 'poi_id'" in error and "expected strings" in error


def test_unparseable_datetime(tmp_path, parts):
    parts["trips"]["start_time"] = parts["trips"]["start_time"].astype(str)
    parts["trips"].loc[5, "start_time"] = "next tuesday"
    error = only(errors_of(write_bundle(tmp_path / "city", parts)), "trips.parquet")
    assert "column 'start_time'" in error and "row 5: 'next tuesday'" in error and "expected timestamps" in error
    report = validate_bundle(tmp_path / "city", bad_rows="drop", progress=False)
    assert report.ok and report.dropped == {("trips.parquet", "unparseable time"): 1}
    assert pd.api.types.is_datetime64_any_dtype(report.tables["trips"]["start_time"])


# ---- coordinates --------------------------------------------------------------------------------------------------
def test_non_numeric_coordinates(tmp_path, parts):
    parts["pois"]["lat"] = parts["pois"]["lat"].astype(str)
    parts["pois"].loc[2, "lat"] = "abc"
    root = write_bundle(tmp_path / "city", parts)
    error = only(errors_of(root), "pois.parquet")
    assert "column 'lat'" in error and "row 2: 'abc'" in error and "1 value(s) are not numbers" in error
    assert "expected float numbers" in error
    report = validate_bundle(root, bad_rows="drop", progress=False)
    assert report.ok and report.dropped == {("pois.parquet", "non-numeric coordinates"): 1}
    cleaned = report.tables["pois"]
    assert len(cleaned) == 20 and cleaned["lat"].dtype == np.float64 and "p2" not in set(cleaned["poi_id"])
    assert cleaned["n_comments"].dtype == np.int64  # only the converted column changes type
    assert cleaned["lon"].equals(parts["pois"]["lon"].drop(index=2).reset_index(drop=True))


def test_out_of_range_coordinates(tmp_path, parts):
    parts["pois"].loc[4, "lat"] = 95.0
    parts["street_view"].loc[1, "lon"] = -200.0
    parts["street_view"] = pd.concat([parts["street_view"], parts["street_view"].iloc[[0]].assign(
        image_id="sv-nan", path=f"{schema.STREET_VIEW_DIR}/sv0.png", lon=np.nan)], ignore_index=True)
    errors = errors_of(write_bundle(tmp_path / "city", parts))
    error = only(errors, "pois.parquet", "out-of-range")
    assert "columns 'lon'/'lat'" in error and "row 4" in error and "lat=95" in error and "-90 <= lat <= 90" in error
    assert "row 1" in only(errors, "street_view.parquet", "out-of-range")
    assert "row 14" in only(errors, "street_view.parquet", "missing (NaN)")


@pytest.mark.parametrize("mode", ["error", "drop"])
def test_points_outside_the_boundary(tmp_path, parts, mode):
    parts["pois"].loc[[3, 9], ["lon", "lat"]] = [[117.5, 40.5], [116.0, 39.5]]  # valid coordinates, far away
    parts["trips"].loc[7, "dest_lat"] += 0.1
    root = write_bundle(tmp_path / "city", parts)
    if mode == "error":
        errors = errors_of(root)
        error = only(errors, "pois.parquet")
        assert "2 row(s) lie outside the city" in error and "row 3: lon=117.5, lat=40.5" in error
        assert "expected points inside boundary.geojson" in error
        assert "row 7" in only(errors, "trips.parquet", "columns 'dest_lon'/'dest_lat'")
        return
    report = validate_bundle(root, bad_rows="drop", progress=False)
    assert report.ok, report.summary()
    assert report.dropped == {("pois.parquet", "outside the city"): 2, ("trips.parquet", "outside the city"): 1}
    assert len(report.tables["pois"]) == 19 and len(report.tables["trips"]) == 11
    assert {"p3", "p9"}.isdisjoint(report.tables["pois"]["poi_id"])
    assert any("dropped 2 row(s)" in w for w in report.warnings)
    assert "| `pois.parquet` | outside the city | 2 |" in report.to_markdown()


def test_point_in_a_region_hexagon_but_outside_the_boundary_is_kept(tmp_path, parts):
    """The city is the boundary plus the regions' hexagons: a hexagon may stick out of the boundary."""
    regions = parts["regions"]
    parts["boundary"] = shapely.MultiPoint(regions[["lon", "lat"]].to_numpy()).convex_hull.buffer(0.3 * EDGE_DEG)
    outer = regions[regions["region_id"] != h3.latlng_to_cell(*CENTRE, RES)]
    region = outer.iloc[0]
    corners = shapely.get_coordinates(region.geometry)
    corner = corners[np.argmax(np.hypot(corners[:, 0] - CENTRE[1], corners[:, 1] - CENTRE[0]))]
    # 90% of the way from the centre to its outermost corner: in the hexagon, outside the boundary.
    lon, lat = region.lon + 0.9 * (corner[0] - region.lon), region.lat + 0.9 * (corner[1] - region.lat)
    assert not shapely.intersects_xy(parts["boundary"], lon, lat) and shapely.intersects_xy(region.geometry, lon, lat)
    parts["pois"].loc[0, ["lon", "lat"]] = [lon, lat]
    report = validate_bundle(write_bundle(tmp_path / "city", parts), progress=False)
    assert report.ok and report.dropped == {}
    # Just outside that hexagon (and the boundary) the same point is outside the city.
    parts["pois"].loc[0, ["lon", "lat"]] = [region.lon + 1.1 * (corner[0] - region.lon),
                                            region.lat + 1.1 * (corner[1] - region.lat)]
    assert "row 0" in only(errors_of(write_bundle(tmp_path / "city", parts)), "pois.parquet", "outside the city")


def test_trajectories_instead_of_trips(tmp_path, parts):
    regions = parts["regions"]
    n = 40
    parts["trips"] = None
    parts["trajectories"] = pd.DataFrame({
        "vehicle_id": [f"taxi{i // 10}" for i in range(n)],
        "time": pd.Timestamp("2024-03-04 06:00", tz="Asia/Shanghai") + pd.to_timedelta(np.arange(n) * 45, unit="s"),
        "lon": regions["lon"].to_numpy()[np.arange(n) % 7], "lat": regions["lat"].to_numpy()[np.arange(n) % 7],
    })
    root = write_bundle(tmp_path / "city", parts)
    assert validate_bundle(root, progress=False).ok
    parts["trajectories"].loc[[11, 12], "lat"] = [41.0, np.nan]
    errors = errors_of(write_bundle(root, parts))
    assert "row 11: lon=" in only(errors, "trajectories.parquet", "outside the city")
    assert "row 12" in only(errors, "trajectories.parquet", "missing (NaN)")


# ---- regions ------------------------------------------------------------------------------------------------------
def test_invalid_h3_id(tmp_path, parts):
    regions = parts["regions"].copy()
    regions.loc[2, "region_id"] = "not-a-cell"
    parts["regions"] = regions
    errors = errors_of(write_bundle(tmp_path / "city", parts))
    error = only(errors, "regions.parquet", "not valid H3")
    assert "column 'region_id'" in error and "row 2: region_id='not-a-cell'" in error and "expected H3 cell indexes" in error


def test_region_at_the_wrong_resolution_and_wrong_geometry(tmp_path, parts):
    regions = parts["regions"].copy()
    coarse = h3.cell_to_parent(regions.loc[1, "region_id"], RES - 1)
    regions.loc[1, "region_id"] = coarse
    regions.loc[4, "geometry"] = shapely.affinity.translate(regions.loc[4, "geometry"], xoff=0.2 * EDGE_DEG)
    parts["regions"] = regions
    errors = errors_of(write_bundle(tmp_path / "city", parts))
    assert f"row 1: region_id='{coarse}'" in only(errors, "regions.parquet", "another resolution", f"h3_resolution {RES}")
    assert "row 4" in only(errors, "regions.parquet", "not their H3 cell's hexagon")


def test_duplicate_region_ids(tmp_path, parts):
    regions = parts["regions"].copy()
    regions.loc[5, ["region_id", "geometry", "lon", "lat"]] = regions.loc[0, ["region_id", "geometry", "lon", "lat"]]
    parts["regions"] = regions
    error = only(errors_of(write_bundle(tmp_path / "city", parts)), "regions.parquet", "more than once")
    assert f"'{regions.loc[0, 'region_id']}' at rows 0, 5" in error and "expected unique ids" in error


@pytest.mark.parametrize("table,column", [("pois", "poi_id"), ("trips", "trip_id"), ("street_view", "image_id"),
                                          ("remote_sensing", "image_id")])
def test_duplicate_ids(tmp_path, parts, table, column):
    parts[table].loc[3, column] = parts[table].loc[1, column]
    root = write_bundle(tmp_path / "city", parts)
    file = schema.TABLES[table].file
    for mode in ("error", "drop"):  # structural: an error in both modes
        error = only(errors_of(root, bad_rows=mode), file, "more than once")
        assert f"column '{column}'" in error and "at rows 1, 3" in error and "expected unique ids" in error


# ---- POIs ---------------------------------------------------------------------------------------------------------
def test_bad_category(tmp_path, parts):
    parts["pois"].loc[[6, 8, 11], "category"] = ["food", "a;b;c", " ;school"]
    root = write_bundle(tmp_path / "city", parts)
    error = only(errors_of(root), "pois.parquet")
    assert "column 'category'" in error and "3 row(s)" in error and "row 6: category='food'" in error
    assert "'level1;level2'" in error
    report = validate_bundle(root, bad_rows="drop", progress=False)
    assert report.ok and report.dropped == {("pois.parquet", "bad category"): 3}


# ---- images -------------------------------------------------------------------------------------------------------
def test_corrupt_image(tmp_path, parts):
    parts["images"][parts["street_view"].loc[3, "path"]] = b"these bytes are not an image"
    root = write_bundle(tmp_path / "city", parts)
    error = only(errors_of(root), "street_view.parquet")
    assert "column 'path'" in error and "cannot decode" in error and "row 3" in error and "expected a readable image" in error
    report = validate_bundle(root, bad_rows="drop", progress=False)  # the region keeps its other image
    assert report.ok and report.dropped == {("street_view.parquet", "unreadable image"): 1}
    assert len(report.tables["street_view"]) == 13
    # Without decoding, a corrupt file goes unnoticed (only existence is checked).
    assert validate_bundle(root, check_images=False, progress=False).ok


def test_truncated_and_tiny_images(tmp_path, parts):
    rs = parts["remote_sensing"]["path"]
    parts["images"][rs[2]] = parts["images"][rs[2]][:-30]  # a truncated PNG: the header reads, the pixels do not
    parts["images"][rs[5]] = _png(4, 0)
    errors = errors_of(write_bundle(tmp_path / "city", parts))
    assert "row 2" in only(errors, "remote_sensing.parquet", "cannot decode")
    assert "row 5" in only(errors, "remote_sensing.parquet", "smaller than 8 px")


def test_missing_image_file_and_path_outside_the_bundle(tmp_path, parts):
    missing = parts["street_view"].loc[0, "path"]
    del parts["images"][missing]
    parts["street_view"].loc[5, "path"] = "../elsewhere/sv5.png"
    parts["remote_sensing"].loc[1, "path"] = "/tmp/rs1.png"
    errors = errors_of(write_bundle(tmp_path / "city", parts))
    assert f"row 0: path='{missing}'" in only(errors, "street_view.parquet", "does not exist")
    assert "row 5: path='../elsewhere/sv5.png'" in only(errors, "street_view.parquet", "outside images/street_view/")
    assert "row 1: path='/tmp/rs1.png'" in only(errors, "remote_sensing.parquet", "outside images/remote_sensing/")


def test_region_without_images(tmp_path, parts):
    region = parts["regions"].loc[3, "region_id"]
    rs = parts["remote_sensing"]
    del parts["images"][rs.loc[rs["region_id"] == region, "path"].item()]
    parts["remote_sensing"] = rs[rs["region_id"] != region]
    parts["street_view"] = parts["street_view"].drop(index=[6, 7])  # both images of region 3
    errors = errors_of(write_bundle(tmp_path / "city", parts), bad_rows="drop")  # structural: errors in drop mode too
    error = only(errors, "remote_sensing.parquet")
    assert f"1 of 7 regions have no remote-sensing image (first: {region})" in error and "expected at least one" in error
    assert f"(first: {region})" in only(errors, "street_view.parquet", "no street-view image")


def test_remote_sensing_row_of_an_unknown_region(tmp_path, parts):
    other = h3.latlng_to_cell(45.0, 10.0, RES)
    rs = parts["remote_sensing"]
    parts["remote_sensing"] = pd.concat([rs, rs.iloc[[0]].assign(image_id="rs-x", region_id=other)], ignore_index=True)
    root = write_bundle(tmp_path / "city", parts)
    assert f"row 7: region_id='{other}'" in only(errors_of(root), "remote_sensing.parquet", "region not in regions.parquet")
    report = validate_bundle(root, bad_rows="drop", progress=False)
    assert report.ok and report.dropped == {("remote_sensing.parquet", "unknown region_id"): 1}


# ---- indicators ---------------------------------------------------------------------------------------------------
def test_nan_indicator(tmp_path, parts):
    parts["indicators"].loc[3, "population_density"] = np.nan
    region = parts["indicators"].loc[3, "region_id"]
    root = write_bundle(tmp_path / "city", parts)
    for mode in ("error", "drop"):
        error = only(errors_of(root, bad_rows=mode), "indicators.parquet")
        assert "column 'population_density'" in error and f"row 3: population_density=NaN, region_id='{region}'" in error
        assert "expected a finite indicator value for every region" in error


def test_indicator_declarations_regions_and_log1p(tmp_path, parts):
    ind = parts["indicators"]
    ind.loc[0, "poi_count"] = -1.0
    parts["indicators"] = ind.drop(index=6).rename(columns={"population_density": "crime"})
    errors = errors_of(write_bundle(tmp_path / "city", parts))
    only(errors, "indicators.parquet: missing column 'population_density' declared in city.json")
    only(errors, "indicators.parquet: column 'crime' is not declared in city.json")
    assert "1 of 7 regions" in only(errors, "indicators.parquet", "have no row", "expected one row per region")
    assert "row 0" in only(errors, "indicators.parquet", "column 'poi_count'", "negative", "log1p")


# ---- several problems at once -------------------------------------------------------------------------------------
def test_all_errors_are_listed(tmp_path, parts):
    parts["pois"].loc[1, "category"] = "nocategory"
    parts["street_view"] = parts["street_view"].rename(columns={"heading": "heading_deg", "lat": "latitude"})
    parts["indicators"].loc[2, "poi_count"] = np.inf
    parts["meta"]["indicators"]["poi_count"]["transform"] = "log"
    errors = errors_of(write_bundle(tmp_path / "city", parts))
    only(errors, "pois.parquet", "category")
    only(errors, "street_view.parquet: missing column 'lat' (found 'latitude'")
    only(errors, "indicators.parquet", "column 'poi_count'", "NaN or infinite")
    only(errors, "city.json: indicators.poi_count.transform is 'log'")
    assert len(errors) == 4


# ---- import and command line ---------------------------------------------------------------------------------------
def test_import_bundle_writes_a_valid_cleaned_copy(tmp_path, parts):
    parts["pois"].loc[5, ["lon", "lat"]] = [100.0, 10.0]
    src = write_bundle(tmp_path / "src", parts)
    (src / schema.STREET_VIEW_DIR / "stray.png").write_bytes(_png(20, 0))  # not referenced: not copied
    with pytest.raises(BundleError):
        import_bundle(src, tmp_path / "dest", progress=False)
    assert not (tmp_path / "dest").exists()
    report = import_bundle(src, tmp_path / "dest", bad_rows="drop", progress=False)
    assert report.dropped == {("pois.parquet", "outside the city"): 1}
    again = validate_bundle(tmp_path / "dest", progress=False)
    assert again.ok and again.warnings == [] and again.rows["pois.parquet"] == 20
    assert not (tmp_path / "dest" / schema.STREET_VIEW_DIR / "stray.png").exists()
    assert json.loads((tmp_path / "dest" / schema.CITY_FILE).read_text()) == parts["meta"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dest" / schema.TRIPS_FILE), parts["trips"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "src"]
    image = parts["street_view"].loc[0, "path"]
    assert (tmp_path / "dest" / image).samefile(src / image)  # hard-linked on the same file system
    import_bundle(src, tmp_path / "copy", bad_rows="drop", progress=False, link_images=False)
    assert not (tmp_path / "copy" / image).samefile(src / image)
    assert (tmp_path / "copy" / image).read_bytes() == (src / image).read_bytes()


def test_import_bundle_leaves_no_partial_folder_on_failure(tmp_path, parts, monkeypatch):
    import musecl.data.validate as validate_module

    src = write_bundle(tmp_path / "src", parts)
    calls = []

    def failing_copy(source: Path, target: Path, link: bool = True) -> None:
        calls.append(source)
        if len(calls) == 5:
            raise OSError("disk full")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)

    monkeypatch.setattr(validate_module, "_link_or_copy", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        import_bundle(src, tmp_path / "dest", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # neither dest nor a .partial folder


def test_import_bundle_refuses_to_write_into_its_source(tmp_path, parts):
    src = write_bundle(tmp_path / "src", parts)
    with pytest.raises(BundleError, match="outside the source bundle"):
        import_bundle(src, src / "copy", progress=False)


def test_docs_describe_every_column_of_the_schema():
    """docs/data_format.md and musecl/data/schema.py are the same contract: every column is documented with its file."""
    doc = (Path(__file__).parents[1] / "docs" / "data_format.md").read_text()
    sections = doc.split("\n#")
    for name, spec in schema.TABLES.items():
        section = next(s for s in sections if f"`{spec.file}`" in s.splitlines()[0] or
                       (name == "regions" and f"`{spec.file}` (GeoParquet" in s))
        for column in spec.columns:
            assert f"`{column.name}`" in section, f"{column.name} of {spec.file} is not documented"
    assert "python -m musecl.data.validate" in doc


def test_command_line(tmp_path, parts, capsys):
    root = write_bundle(tmp_path / "city", parts)
    assert main([str(root)]) == 0
    assert capsys.readouterr().out.startswith("VALID")
    parts["pois"].loc[0, "category"] = "food"
    write_bundle(root, parts)
    assert main([str(root)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("INVALID") and "pois.parquet: column 'category'" in out
    assert main([str(root), "--drop"]) == 0
    assert "pois.parquet: 1 row(s), bad category" in capsys.readouterr().out
    assert main([str(tmp_path / "nowhere")]) == 1


def test_module_runs_as_a_script(tmp_path, parts):
    """`python -m musecl.data.validate PATH` (what docs/data_format.md and the README tell people to run)."""
    root = write_bundle(tmp_path / "city", parts)
    command = [sys.executable, "-m", "musecl.data.validate"]
    repo = Path(__file__).parents[1]
    valid = subprocess.run([*command, str(root), "--markdown"], capture_output=True, text=True, cwd=repo)
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.startswith("**VALID")
    missing = subprocess.run([*command, str(tmp_path / "nowhere")], capture_output=True, text=True, cwd=repo)
    assert missing.returncode == 1 and missing.stdout.startswith("INVALID")


# ---- the synthetic city -------------------------------------------------------------------------------------------
def test_tiny_synthetic_bundle_validates(tiny_bundle):
    """The generator and the validator implement the same contract."""
    report = validate_bundle(tiny_bundle.root, progress=False, raise_on_error=False)
    assert report.errors == [], report.summary()
    assert report.dropped == {} and report.rows["regions.parquet"] > 7
