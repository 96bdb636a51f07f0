"""Remote-sensing tiles: one square image per region, centred on the region, at a configured ground resolution.

Sources: a georeferenced GeoTIFF (any CRS; e.g. a Sentinel-2 true-colour composite, an aerial orthophoto, or an export
from a GIS), read through a rasterio `WarpedVRT` that resamples it onto the city's metric grid so each tile is one
windowed read; or a folder of web-map tiles (`z/x/y.png` or `z_x_y.jpg`, XYZ or TMS numbering), stitched per region and
warped from Web Mercator with `rasterio.warp.reproject`. Tiles are written as PNG under `images/remote_sensing/`.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from musecl.data.images import to_rgb8
from musecl.opendata.config import RemoteSensingConfig, WebTilesConfig
from musecl.opendata.report import BuildError, ReaderReport
from musecl.data.schema import REGION_ID, REMOTE_SENSING_DIR

NO_COVERAGE = "no imagery coverage"
WEB_MERCATOR = "EPSG:3857"
_HALF_WORLD = 20037508.342789244  # Web Mercator x/y of the world's edge, metres


def tile_side_m(regions_local, config: RemoteSensingConfig) -> tuple[float, float]:
    """(side in metres, metres per pixel): configured, or the smallest whole-metre square holding every hexagon."""
    if config.ground_resolution_m is not None:
        return config.ground_resolution_m * config.tile_pixels, config.ground_resolution_m
    bounds = regions_local.geometry.bounds
    side = float(math.ceil(max((bounds.maxx - bounds.minx).max(), (bounds.maxy - bounds.miny).max())))
    return side, side / config.tile_pixels


def _resampling(name: str):
    from rasterio.enums import Resampling

    return Resampling[name]


def _to_uint8(data: np.ndarray, valid: np.ndarray, limits: list[tuple[float, float]] | None) -> np.ndarray:
    """(bands, h, w) source values to uint8: as they are for 8-bit data, else stretched linearly between limits."""
    if limits is None:
        out = np.clip(data, 0, 255).astype(np.uint8)
    else:
        out = np.empty(data.shape, dtype=np.uint8)
        for b, (lo, hi) in enumerate(limits):
            out[b] = np.clip((data[b].astype(np.float64) - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return out


def north_up(west: float, north: float, xres: float, yres: float):
    """The affine transform of a north-up raster whose top-left corner is (west, north), with pixels xres wide and
    yres high: the values of rasterio's `from_origin`, built directly (that helper multiplies Affine objects with `*`,
    which the affine package deprecates with a warning on every call)."""
    from rasterio.transform import Affine

    return Affine(xres, 0.0, west, 0.0, -yres, north)


class GeoTiffTiles:
    """Square tiles of a GeoTIFF on the city's metric grid: one WarpedVRT, one windowed read per tile."""

    def __init__(self, path: Path, config: RemoteSensingConfig, local_crs, extent: tuple[float, float, float, float],
                 resolution: float, report: ReaderReport) -> None:
        import rasterio
        from rasterio.enums import ColorInterp
        from rasterio.vrt import WarpedVRT

        try:
            self.src = rasterio.open(path)
        except Exception as err:
            raise BuildError(f"{path}: cannot open as a raster ({err})") from err
        if self.src.crs is None:
            raise BuildError(f"{path}: the raster has no CRS (georeference it, e.g. with gdal_translate -a_srs)")
        if max(config.bands) > self.src.count:
            raise BuildError(f"{path}: remote_sensing.bands {list(config.bands)} but the raster has "
                             f"{self.src.count} band(s)")
        self.bands = list(config.bands)
        xmin, ymin, xmax, ymax = extent
        width = int(math.ceil((xmax - xmin) / resolution))
        height = int(math.ceil((ymax - ymin) / resolution))
        has_alpha = ColorInterp.alpha in self.src.colorinterp
        self.vrt = WarpedVRT(
            self.src, crs=local_crs, transform=north_up(xmin, ymax, resolution, resolution), width=width,
            height=height, resampling=_resampling(config.resampling),
            add_alpha=self.src.nodata is None and not has_alpha,
        )
        dtype = np.dtype(self.src.dtypes[self.bands[0] - 1])
        self.limits = None
        if config.rescale == "percentile" or (config.rescale is None and dtype != np.uint8):
            self.limits = self._percentiles()
            if config.rescale is None:
                report.note(f"{dtype} raster stretched to 8 bits between the 2nd and 98th percentiles per band "
                            f"({[(round(lo, 3), round(hi, 3)) for lo, hi in self.limits]}); set rescale to override")
        elif config.rescale is not None:
            self.limits = [tuple(config.rescale)] * len(self.bands)

    def _percentiles(self) -> list[tuple[float, float]]:
        scale = max(1, int(math.ceil(max(self.vrt.width, self.vrt.height) / 1024)))
        shape = (max(1, self.vrt.height // scale), max(1, self.vrt.width // scale))
        data = self.vrt.read(self.bands, out_shape=(len(self.bands), *shape))
        mask = self.vrt.dataset_mask(out_shape=shape) > 0
        if not mask.any():
            raise BuildError(f"{self.src.name}: the raster does not cover the city at all")
        limits = []
        for band in data:
            lo, hi = np.percentile(band[mask].astype(np.float64), [2, 98])
            limits.append((float(lo), float(hi) if hi > lo else float(lo) + 1.0))
        return limits

    def tile(self, xmin: float, ymax: float, pixels: int) -> tuple[np.ndarray, np.ndarray]:
        from rasterio.windows import Window

        col, row = ~self.vrt.transform @ (xmin, ymax)
        window = Window(int(round(col)), int(round(row)), pixels, pixels)
        data = self.vrt.read(self.bands, window=window, boundless=False)
        valid = self.vrt.dataset_mask(window=window) > 0
        return _to_uint8(data, valid, self.limits), valid

    def close(self) -> None:
        self.vrt.close()
        self.src.close()


class WebMapTiles:
    """Square tiles cut from a folder of web-map tiles (Web Mercator), stitched around each region and warped."""

    def __init__(self, config: WebTilesConfig, local_crs, resolution: float, resampling: str) -> None:
        from pyproj import Transformer

        from rasterio.crs import CRS

        self.to_mercator = Transformer.from_crs(local_crs, WEB_MERCATOR, always_xy=True)
        # rasterio CRS objects made once: reproject() would otherwise parse the CRS definitions on every tile.
        self.mercator_crs = CRS.from_epsg(3857)
        self.local_rio_crs = CRS.from_wkt(local_crs.to_wkt()) if hasattr(local_crs, "to_wkt") else CRS.from_user_input(
            local_crs)
        self.config = config
        self.resolution = resolution
        self.resampling = _resampling(resampling)
        self.n = 2 ** config.zoom
        self.span = 2 * _HALF_WORLD / self.n  # metres per tile at this zoom
        self.tile_px: int | None = None
        self.load = lru_cache(maxsize=512)(self._load)
        self.missing_tiles: set[tuple[int, int]] = set()
        self.unreadable: list[str] = []

    def path(self, x: int, y: int) -> Path:
        y_file = self.n - 1 - y if self.config.scheme == "tms" else y
        return self.config.folder / self.config.pattern.format(z=self.config.zoom, x=x, y=y_file)

    def _load(self, x: int, y: int) -> np.ndarray | None:
        from PIL import Image

        path = self.path(x, y)
        if not path.is_file():
            self.missing_tiles.add((x, y))
            return None
        try:
            with Image.open(path) as img:
                arr = np.asarray(to_rgb8(img))
        except Exception:
            self.unreadable.append(str(path))
            return None
        if arr.shape[0] != arr.shape[1] or (self.tile_px is not None and arr.shape[0] != self.tile_px):
            raise BuildError(f"{path}: web-map tile is {arr.shape[1]}x{arr.shape[0]} px; expected square tiles "
                             f"of one size ({self.tile_px or 'the first tile read'} px)")
        self.tile_px = arr.shape[0]
        return arr

    def tile(self, xmin: float, ymax: float, pixels: int) -> tuple[np.ndarray, np.ndarray]:
        from rasterio.transform import Affine
        from rasterio.warp import reproject

        side = pixels * self.resolution
        # The tile's outline, densified, in Web Mercator: its bounds there (one pyproj call, no GDAL set-up).
        t = np.linspace(0.0, side, 9)
        xs = np.concatenate([xmin + t, np.full(9, xmin + side), xmin + t, np.full(9, xmin)])
        ys = np.concatenate([np.full(9, ymax), ymax - t, np.full(9, ymax - side), ymax - t])
        mx, my = self.to_mercator.transform(xs, ys)
        left, bottom, right, top = mx.min(), my.min(), mx.max(), my.max()
        x0, x1 = self._col(left), self._col(right)
        y0, y1 = self._row(top), self._row(bottom)
        grid = {(x, y): self.load(x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)}
        if all(v is None for v in grid.values()):
            return np.zeros((3, pixels, pixels), dtype=np.uint8), np.zeros((pixels, pixels), dtype=bool)
        ts = self.tile_px
        # Band 4 marks the pixels a tile was found for; warped with the colours, it becomes the validity mask.
        mosaic = np.zeros((4, (y1 - y0 + 1) * ts, (x1 - x0 + 1) * ts), dtype=np.uint8)
        for (x, y), arr in grid.items():
            if arr is not None:
                r, c = (y - y0) * ts, (x - x0) * ts
                mosaic[:3, r:r + ts, c:c + ts] = arr.transpose(2, 0, 1)
                mosaic[3, r:r + ts, c:c + ts] = 255
        src_transform = Affine(self.span / ts, 0, x0 * self.span - _HALF_WORLD, 0, -self.span / ts,
                               _HALF_WORLD - y0 * self.span)
        warped = np.zeros((4, pixels, pixels), dtype=np.uint8)
        reproject(mosaic, warped, src_transform=src_transform, src_crs=self.mercator_crs,
                  dst_transform=north_up(xmin, ymax, self.resolution, self.resolution), dst_crs=self.local_rio_crs,
                  resampling=self.resampling)
        valid = warped[3] >= 128
        out = warped[:3]
        out[:, ~valid] = 0
        return out, valid

    def _col(self, x: float) -> int:
        return int(min(max((x + _HALF_WORLD) // self.span, 0), self.n - 1))

    def _row(self, y: float) -> int:
        return int(min(max((_HALF_WORLD - y) // self.span, 0), self.n - 1))

    def close(self) -> None:
        self.load.cache_clear()


def cut_remote_sensing(
    config: RemoteSensingConfig, regions, local_crs, bundle_root: Path, progress: bool = True
) -> tuple[pd.DataFrame, ReaderReport]:
    """Write one PNG tile per region under `bundle_root/images/remote_sensing/` and return the image index."""
    from PIL import Image
    from tqdm import tqdm

    source = str(config.geotiff or config.web_tiles.folder)
    report = ReaderReport("remote sensing", source, read=len(regions))
    local = regions.to_crs(local_crs)
    side, resolution = tile_side_m(local, config)
    report.note(f"{config.tile_pixels} px tiles of {side:.0f} m ({resolution:.2f} m/px) centred on each region")
    centres = local.geometry.centroid
    # Tiles are pixel-aligned on one grid, so each is an exact window of it (offset <= half a pixel from the centre).
    half = side / 2
    extent = (float(centres.x.min() - side), float(centres.y.min() - side), float(centres.x.max() + side),
              float(centres.y.max() + side))
    if config.geotiff is not None:
        tiles = GeoTiffTiles(config.geotiff, config, local_crs, extent, resolution, report)
    else:
        tiles = WebMapTiles(config.web_tiles, local_crs, resolution, config.resampling)
    out_dir = bundle_root / REMOTE_SENSING_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for region_id, x, y in tqdm(zip(regions[REGION_ID], centres.x, centres.y), total=len(regions),
                                    desc="remote-sensing tiles", unit=" tiles", disable=not progress):
            data, valid = tiles.tile(x - half, y + half, config.tile_pixels)
            if valid.mean() < config.min_coverage:
                report.drop(NO_COVERAGE, 1)
                continue
            rel = f"{REMOTE_SENSING_DIR}/{region_id}.png"
            image = Image.fromarray(data[0] if data.shape[0] == 1 else data.transpose(1, 2, 0))
            image.save(bundle_root / rel, format="PNG")
            rows.append({"image_id": str(region_id), REGION_ID: str(region_id), "path": rel})
    finally:
        tiles.close()
    if isinstance(tiles, WebMapTiles):
        if tiles.missing_tiles:
            report.note(f"{len(tiles.missing_tiles)} web-map tiles needed but not in the folder (left black)")
        if tiles.unreadable:
            report.note(f"{len(tiles.unreadable)} unreadable web-map tiles (left black), e.g. {tiles.unreadable[0]}")
    report.kept = len(rows)
    if report.dropped.get(NO_COVERAGE):
        report.note(f"regions whose tile is less than {config.min_coverage:.0%} covered by the imagery get no tile")
    report.require_kept("remote-sensing tiles", hint=": does the imagery cover the city?")
    return pd.DataFrame(rows, columns=["image_id", REGION_ID, "path"]), report
