"""`imagery_only_inputs(folder)`: a real city that has only imagery and indicators, the way released data comes.

The city is Prenzlauer Berg, Berlin (about 11 km²). Its boundary and 2,203 Airbnb listings (a point each, in Web
Mercator, EPSG:3857, with the nightly price and review score) are real data from Inside Airbnb that ship inside
libpysal (`libpysal/examples/berlin`, as used by Oshan et al. 2019, the mgwr paper): they are found on disk, without
importing libpysal or downloading anything. The listings become the indicators: listings per region (a count),
their mean price and mean review score (values at points, averaged per region).

The imagery is made up here, seeded, in the layout authors release it in: one pre-cut satellite tile per region, named
by its H3 id in a table, 3:2 rather than square, for most but not all of the regions; and street-view panoramas with a
metadata CSV, a few of them 3:1 rather than 2:1. The city has no POIs and no mobility: its config has no `pois`,
`trips` or `trajectories` section, and the pipeline skips what needs them.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from musecl.opendata.example import landscape_rgb, made_up_panorama

H3_RESOLUTION = 9  # ~0.1 km² cells: about 100 regions in the district
ORIGIN = (13.3969, 52.5199)  # the south-west corner of the district's bounding box (lon, lat)
LON_M = 67_750.0  # metres per degree of longitude at 52.5 deg N
# Made-up round parks (x, y, radius in metres from ORIGIN), roughly where Mauerpark and Volkspark Friedrichshain are.
PARKS = ((800.0, 3_700.0, 250.0), (3_600.0, 600.0, 400.0))
TILE_SIZE = (72, 48)  # width x height of a released tile: 3:2, not square
NO_TILE_EAST_OF = 13.4650  # the tile release stops short of the district's east edge: some cells get no tile
N_WIDE_PANORAMAS = 5  # panoramas saved 3:1 rather than 2:1


def berlin_example_files() -> dict[str, Path]:
    """The boundary and listings files inside the installed libpysal (zipped shapefiles), or a clear error."""
    spec = importlib.util.find_spec("libpysal")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the imagery-only example reads the Prenzlauer Berg files that ship with libpysal: "
                          "pip install libpysal (see requirements/requirements.in)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "examples" / "berlin"
    files = {"boundary": folder / "prenz_bound.zip", "listings": folder / "prenzlauer.zip"}
    for name, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"libpysal's Berlin example has no {path.name} (expected the {name} at {path})")
    return files


def imagery_only_inputs(folder: str | Path, seed: int = 0) -> Path:
    """Write the inputs of the Prenzlauer Berg build into `folder` (replaced atomically); return its `city.yaml`."""
    import geopandas as gpd

    from musecl.data.regions import regions_from_boundary
    from musecl.storage import atomic_dir

    folder = Path(folder)
    files = berlin_example_files()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xBE71]))
    with atomic_dir(folder) as tmp:
        shutil.copyfile(files["boundary"], tmp / "prenz_bound.zip")  # as released: a zipped shapefile, EPSG:3857
        listings = gpd.read_file(files["listings"])
        # As a listings CSV: the Web Mercator coordinates and the attributes, no geometry column.
        pd.DataFrame(listings.drop(columns="geometry")).to_csv(tmp / "listings.csv", index=False)
        boundary = gpd.read_file(files["boundary"]).to_crs("EPSG:4326").union_all()
        cells = regions_from_boundary(boundary, H3_RESOLUTION)
        _tiles(tmp, cells, rng)
        _panoramas(tmp, cells, rng)
        (tmp / "city.yaml").write_text(CONFIG)
    return folder / "city.yaml"


def _aerial(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return landscape_rgb(lon, lat, origin=ORIGIN, lon_m=LON_M, parks=PARKS, sea=False)


def _tiles(root: Path, cells: pd.DataFrame, rng: np.random.Generator) -> None:
    """One 3:2 tile per cell west of NO_TILE_EAST_OF, named by the cell's H3 id (upper case, as some releases write
    it), listed in tiles/tiles.csv."""
    from PIL import Image

    folder = root / "tiles"
    folder.mkdir()
    width, height = TILE_SIZE
    metres = 480.0  # the tile's ground width (wider than the ~350 m hexagon)
    u = (np.arange(width) + 0.5) / width - 0.5
    v = 0.5 - (np.arange(height) + 0.5) / height
    rows = []
    for cell, lon0, lat0 in cells[["region_id", "lon", "lat"]].itertuples(index=False):
        if lon0 > NO_TILE_EAST_OF:
            continue
        lon = lon0 + u[None, :] * metres / LON_M
        lat = lat0 + v[:, None] * metres * height / width / 111_300.0
        rgb = _aerial(np.broadcast_to(lon, (height, width)), np.broadcast_to(lat, (height, width)))
        noisy = np.clip(rgb.astype(np.int16) + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
        name = f"{cell.upper()}.png"
        Image.fromarray(noisy).save(folder / name)
        rows.append({"file": name, "h3": cell.upper()})
    pd.DataFrame(rows).to_csv(folder / "tiles.csv", index=False)


def _panoramas(root: Path, cells: pd.DataFrame, rng: np.random.Generator) -> None:
    """Two panoramas near every cell centre (jittered, kept in the cell), a few 3:1; metadata.csv beside them."""
    import h3
    from PIL import Image

    lon = np.repeat(cells["lon"].to_numpy(), 2) + rng.normal(0, 0.0008, 2 * len(cells))
    lat = np.repeat(cells["lat"].to_numpy(), 2) + rng.normal(0, 0.0005, 2 * len(cells))
    ids = np.repeat(cells["region_id"].to_numpy(dtype=object), 2)
    for i, cell in enumerate(ids):
        if h3.latlng_to_cell(lat[i], lon[i], H3_RESOLUTION) != cell:
            lat[i], lon[i] = h3.cell_to_latlng(cell)
    wide = set(rng.choice(len(lon), N_WIDE_PANORAMAS, replace=False).tolist())
    folder = root / "street_view"
    folder.mkdir()
    heading = rng.uniform(0, 360, len(lon)).round(1)
    ground = _aerial(lon, lat)
    rows = []
    for i in range(len(lon)):
        pano = made_up_panorama(rng, ground[i], width=192 if i in wide else 128)
        name = f"pano_{i:04d}.jpg"
        Image.fromarray(pano).save(folder / name, quality=92)
        rows.append({"pano_id": f"p{i:04d}", "file": name, "lon": round(lon[i], 7), "lat": round(lat[i], 7),
                     "heading": heading[i]})
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)


CONFIG = """\
# Prenzlauer Berg, Berlin: imagery and indicators only (musecl.opendata.example_imagery writes these inputs).
name: prenzlauer-berg
h3_resolution: 9                  # ~0.1 km² cells
regions:
  keep: [rs, sv]                  # a region needs a tile and a street view (the default, said here to show it)

boundary:
  file: prenz_bound.zip           # real: the district's boundary, a zipped shapefile in EPSG:3857 (its .prj says so)

# No `pois`, `trips` or `trajectories` section: the city has no POIs and no mobility.

remote_sensing:
  tiles:                          # pre-cut tiles, one per region, as authors release them
    table: tiles/tiles.csv
    columns: {path: file, region_id: h3}   # H3 ids, here in upper case
    non_square: crop              # the tiles are 3:2: keep the centre square
  tile_pixels: 32

street_view:
  metadata: street_view/metadata.csv
  columns: {path: file, lon: lon, lat: lat, heading: heading, image_id: pano_id}
  panoramas: true                 # each panorama becomes four 90-degree views

indicators:                       # real: Airbnb listings (Inside Airbnb, in libpysal's examples), points in EPSG:3857
  airbnb_listings:
    kind: points                  # listings counted per region
    file: listings.csv
    lon: X
    lat: Y
    crs: EPSG:3857
    description: Airbnb listings
    unit: listings
  airbnb_price:
    kind: points
    file: listings.csv
    lon: X
    lat: Y
    crs: EPSG:3857
    aggregate: mean               # the mean of the listings' prices inside each region
    value: price
    missing: nearest              # regions without a listing take the nearest region's value
    description: mean nightly price of the region's Airbnb listings
    unit: price per night
  review_score:
    kind: points
    file: listings.csv
    lon: X
    lat: Y
    crs: EPSG:3857
    aggregate: mean
    value: review_sco
    missing: nearest
    transform: identity
    description: mean review score of the region's Airbnb listings
    unit: score (0-100)
"""
