"""Pre-cut remote-sensing tiles released per region: a table (CSV or Parquet) of image paths and where they belong.

This is how authors usually release imagery (one tile per region folder, or a CSV listing them): no georeferenced
raster, just a tile and the region it shows. Each row names an image (its path relative to the table's folder) and
either a point inside its region (lon/lat, in any `crs`) or the region's H3 cell id (any case; a cell finer than the
city's resolution is mapped to its parent). The images are decoded, made square as `non_square` says (`crop`: the
centre square; `pad`: black borders around the image; `error`: stop), resized to `tile_pixels` and written as PNG
under `images/remote_sensing/`. High-depth images (16-bit grey, float) are scaled to 8 bits by
`musecl.data.images.to_rgb8`, the decoding every bundle consumer uses (not clipped), and counted in a note. A region
may have several tiles. Nothing is dropped without a count: bad rows, rows outside the city, and missing or
undecodable files are counted per reason, with an example file in the notes.
"""
from __future__ import annotations

from pathlib import Path

import h3
import numpy as np
import pandas as pd

from musecl.opendata.config import RemoteSensingConfig, TilesTableConfig
from musecl.opendata.points import RegionAssigner, coordinates_wgs84, is_parquet, require_columns, table_columns
from musecl.opendata.points import valid_coordinates
from musecl.opendata.report import BAD_COORDINATES, OUTSIDE, UNREADABLE, BuildError, ReaderReport
from musecl.data.images import conversion_note, to_rgb8
from musecl.data.schema import REGION_ID, REMOTE_SENSING_DIR

BAD_REGION_ID = "not an H3 cell id"
COARSER_CELL = "H3 cell coarser than h3_resolution"
NO_PATH = "no image path"


def _read_table(config: TilesTableConfig) -> pd.DataFrame:
    wanted = [c for c in (config.path, config.lon, config.lat, config.region_id) if c]
    require_columns(config.table, wanted, table_columns(config.table, config.separator), "remote_sensing.tiles.columns")
    try:
        if is_parquet(config.table):
            return pd.read_parquet(config.table, columns=wanted)
        text = [c for c in (config.path, config.region_id) if c]
        return pd.read_csv(config.table, sep=config.separator, usecols=wanted, dtype={c: "str" for c in text})
    except Exception as err:
        raise BuildError(f"{config.table}: cannot read the tile table ({err})") from err


def cells_of_ids(values: pd.Series, resolution: int, report: ReaderReport) -> np.ndarray:
    """H3 ids (any case, finer cells mapped to their parent) as the city's cell ids; None where unusable (counted)."""
    out = np.full(len(values), None, dtype=object)
    bad = coarser = 0
    for i, raw in enumerate(values.astype("str").str.strip().str.lower()):
        if not h3.is_valid_cell(raw):
            bad += 1
            continue
        res = h3.get_resolution(raw)
        if res < resolution:
            coarser += 1
            continue
        out[i] = raw if res == resolution else h3.cell_to_parent(raw, resolution)
    report.drop(BAD_REGION_ID, bad)
    report.drop(COARSER_CELL, coarser)
    return out


def make_square(arr: np.ndarray, how: str) -> np.ndarray:
    """The centre square (crop) or the image centred on a black square (pad)."""
    h, w = arr.shape[:2]
    if h == w:
        return arr
    if how == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return arr[top:top + side, left:left + side]
    side = max(h, w)
    out = np.zeros((side, side, arr.shape[2]), dtype=arr.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = arr
    return out


def read_tiles_table(config: RemoteSensingConfig, cells, resolution: int, bundle_root: Path,
                     progress: bool = True) -> tuple[pd.DataFrame, ReaderReport]:
    """Write each listed tile of a city cell as a square `tile_pixels` PNG; return the image index and the report."""
    from PIL import Image
    from tqdm import tqdm

    tiles = config.tiles
    report = ReaderReport("remote sensing (tiles)", str(tiles.table))
    frame = _read_table(tiles)
    report.read = len(frame)
    has_path = frame[tiles.path].notna().to_numpy() & (frame[tiles.path].astype("str").str.strip() != "").to_numpy()
    report.drop(NO_PATH, int((~has_path).sum()))
    ids = cells[REGION_ID].to_numpy(dtype=object)
    assigner = RegionAssigner(ids, resolution)
    if tiles.region_id is not None:
        cell = cells_of_ids(frame[tiles.region_id].where(has_path, ""), resolution, report)
        cell[~has_path] = None
        known = np.array([c is not None for c in cell])
        region = np.full(len(frame), -1, dtype=np.int64)
        lookup = pd.Index(ids)
        region[known] = lookup.get_indexer(cell[known].astype(str))
        report.drop(OUTSIDE, int((known & (region < 0)).sum()))
    else:
        lon, lat = coordinates_wgs84(frame, tiles.lon, tiles.lat, tiles.crs)
        valid = valid_coordinates(lon, lat) & has_path
        report.drop(BAD_COORDINATES, int((has_path & ~valid).sum()))
        region = assigner.assign_valid(lon, lat, valid)
        report.drop(OUTSIDE, int((valid & (region == -1)).sum()))
        report.test_swap(assigner, lon, lat, has_path & (region < 0))
        if tiles.crs is not None:
            from musecl.opendata.crs import crs_note

            report.note(crs_note(tiles.crs, len(frame)))
    out_dir = bundle_root / REMOTE_SENSING_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, failures, odd = [], [], []
    conversions: dict[str, int] = {}
    per_region: dict[str, int] = {}
    pixels = config.tile_pixels
    for i in tqdm(np.flatnonzero(region >= 0), desc="remote-sensing tiles", unit=" tiles", disable=not progress):
        rel_source = Path(str(frame[tiles.path].iloc[i]).strip())
        source = rel_source if rel_source.is_absolute() else tiles.table.parent / rel_source
        if not source.is_file():
            failures.append((str(rel_source), "missing file"))
            continue
        try:
            with Image.open(source) as img:
                converted = conversion_note(img)
                arr = np.asarray(to_rgb8(img), dtype=np.uint8)
        except Exception as err:
            failures.append((str(rel_source), f"cannot decode ({type(err).__name__})"))
            continue
        if converted:
            conversions[converted] = conversions.get(converted, 0) + 1
        h, w = arr.shape[:2]
        if h != w:
            if tiles.non_square == "error":
                raise BuildError(f"{source}: tile is {w}x{h} px, not square (remote_sensing.tiles.non_square is "
                                 "'error'; 'crop' keeps the centre square, 'pad' adds black borders)")
            odd.append((str(rel_source), w, h))
            arr = make_square(arr, tiles.non_square)
        if arr.shape[0] != pixels:
            arr = np.asarray(Image.fromarray(arr).resize((pixels, pixels), Image.Resampling.LANCZOS))
        region_id = str(ids[region[i]])
        k = per_region.get(region_id, 0)
        per_region[region_id] = k + 1
        image_id = region_id if k == 0 else f"{region_id}_{k}"
        rel = f"{REMOTE_SENSING_DIR}/{image_id}.png"
        Image.fromarray(arr).save(bundle_root / rel, format="PNG")
        rows.append({"image_id": image_id, REGION_ID: region_id, "path": rel})
    report.drop(UNREADABLE, len(failures))
    if failures:
        reasons = pd.Series([r for _, r in failures]).value_counts().sort_index(kind="stable")
        counted = ", ".join(f"{n} {r}" for r, n in reasons.items())
        report.warn(f"{len(failures):,} tiles of {tiles.table.name} missing or undecodable ({counted}"
                    f"), e.g. {failures[0][0]} ({failures[0][1]}); their rows are dropped")
    if odd:
        done = {"crop": "centre-cropped to a square", "pad": "padded with black to a square"}[tiles.non_square]
        report.warn(f"{len(odd):,} of {len(rows):,} tiles are not square (e.g. {odd[0][0]}: "
                    f"{odd[0][1]}x{odd[0][2]} px); {done} (remote_sensing.tiles.non_square: {tiles.non_square}) "
                    f"before resizing to {pixels} px")
    for what, count in sorted(conversions.items()):
        report.note(f"{count:,} tiles converted: {what}")
    report.note(f"{len(rows):,} tiles for {len(per_region):,} regions, resized to {pixels}x{pixels} px")
    report.kept = len(rows)
    report.check_outside_share()
    report.require_kept("remote-sensing tiles", hint=": do the table's regions or points lie in the city?")
    return pd.DataFrame(rows, columns=["image_id", REGION_ID, "path"]), report
