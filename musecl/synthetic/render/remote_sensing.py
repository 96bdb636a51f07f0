"""Remote-sensing tiles of the synthetic city: a north-up view from above, `extent_m` x `extent_m` metres.

`render_remote_sensing_labelled` draws the tile at about 4 m per pixel (`_draw_remote_sensing`), box-averages it down
to the requested size and applies the acquisition effects. The drawing lays out streets, lots and buildings
(`city_blocks`), then paints in order: ground cover (grass, lawns, paving, soil, parking), tree canopy, sidewalks,
roads, roofs and pools, shadows of buildings and trees, water (a sharp shoreline from a threshold on the water field;
major roads cross it as bridges), pixel texture and occasional clouds. Every random draw comes from the `rng`
argument, in a fixed order.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from musecl.synthetic.render.acquisition import _acquisition, _cast_shadows
from musecl.synthetic.render.city_blocks import (
    _COMMERCIAL,
    _SIDEWALK_M,
    _Blocks,
    _building_pixels,
    _Buildings,
    _grid_frame,
    _lot_buildings,
    _lot_grid,
    _LotGrid,
    _sample_blocks,
    _street_grid,
    _Streets,
)
from musecl.synthetic.render.helpers import (
    _check_lonlat,
    _check_rng,
    _check_size,
    _hash,
    _mode_pool,
    _noise,
    _to_unit,
    _units,
)
from musecl.synthetic.render.palettes import (
    _CANOPY_DARK,
    _CANOPY_LIGHT,
    _GROUND_COVER,
    _WATER_DEEP,
    _WATER_SHALLOW,
    LABEL,
)

_RS_TARGET_M_PER_PX = 4.0  # internal drawing resolution (about the paper's 3.6 m imagery)
_RS_MAX_SUPERSAMPLE = 4
_TREE_HEIGHT_M = 8.0


def render_remote_sensing(
    field: Any, center_lon: float, center_lat: float, size_px: int, extent_m: float, rng: np.random.Generator
) -> np.ndarray:
    """A (size_px, size_px, 3) uint8 satellite tile, north up, covering extent_m x extent_m metres around the centre."""
    return render_remote_sensing_labelled(field, center_lon, center_lat, size_px, extent_m, rng)[0]


def render_remote_sensing_labelled(
    field: Any, center_lon: float, center_lat: float, size_px: int, extent_m: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`render_remote_sensing` plus the (size_px, size_px) uint8 scene-class map (indices into SCENE_CLASSES).

    The tile is drawn at a ground resolution of at least ~4 m per pixel and box-averaged down to size_px, so coarse
    tiles look like coarse imagery (mixed pixels) rather than aliased drawings.
    """
    where = "render_remote_sensing"
    n = _check_size(size_px, where)
    _check_rng(rng, where)
    center_lon, center_lat = _check_lonlat(center_lon, center_lat, where)
    if not (isinstance(extent_m, (int, float, np.number)) and math.isfinite(extent_m) and extent_m > 0):
        raise ValueError(f"{where}: extent_m must be a positive finite number of metres, got {extent_m!r}")
    extent_m = float(extent_m)
    factor = int(np.clip(round(extent_m / n / _RS_TARGET_M_PER_PX), 1, _RS_MAX_SUPERSAMPLE))
    rgb, labels = _draw_remote_sensing(field, center_lon, center_lat, n * factor, extent_m, rng, where)
    if factor > 1:
        rgb = rgb.reshape(n, factor, n, factor, 3).mean(axis=(1, 3))
        labels = _mode_pool(labels, factor)
    image = _acquisition(rgb, rng, blur_px=(0.25, 0.7), noise_dn=(1.5, 4.5), jpeg_quality=(60, 93), haze=(0.0, 0.14))
    return image, labels


def _draw_remote_sensing(
    field: Any, lon0: float, lat0: float, n: int, extent_m: float, rng: np.random.Generator, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """The tile before acquisition effects: float RGB (n, n, 3) and the scene-class map."""
    mpp = extent_m / n
    key = int(rng.integers(0, 2**62))
    grid = _grid_frame(rng, lon0, lat0, n, extent_m)
    pix, blocks = _sample_blocks(field, lon0, lat0, grid, n, extent_m, where)
    hb = _units(_hash(key, np.arange(len(blocks.level))), 3)
    streets = _street_grid(grid, blocks, hb, n, mpp)
    lot_grid = _lot_grid(blocks, streets, hb)
    lots = _lot_buildings(key, blocks, streets.leaf_idx, lot_grid)
    buildings = _building_pixels(lots, lot_grid, blocks.latents["affluence"], n)

    img, patch = _ground_cover(rng, pix, lot_grid, lots.flat, buildings.present, n, extent_m)
    tree, labels = _draw_canopy(rng, img, pix, streets.road_cov, n, extent_m)
    _draw_built(img, labels, patch, blocks, streets, lots.flat, buildings)
    _draw_shadows(rng, img, buildings.heights, tree, n, mpp)
    _draw_water(rng, img, labels, pix["water"], streets, n, extent_m)

    # Texture at pixel scale (roof materials, grass, asphalt grain).
    img *= 1.0 + 0.1 * (rng.random((n, n, 1), dtype=np.float32) - 0.5)
    img = _draw_clouds(rng, img, labels, n)
    return np.clip(img, 0, 255), labels


def _ground_cover(
    rng: np.random.Generator, pix: dict[str, np.ndarray], lot_grid: _LotGrid, flat: np.ndarray, present: np.ndarray,
    n: int, extent_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Ground cover: grass in green areas, lawns (greener when affluent) with residential, paving with commercial,
    bare soil elsewhere; parking lots on empty commercial lots; patchy texture. Returns the image and the patch
    noise (reused for the asphalt)."""
    r_p, c_p, g_p, w_p, a_p = (pix[k] for k in ("residential", "commercial", "green", "water", "affluence"))
    built_p = 1.0 - (1.0 - r_p) * (1.0 - c_p)
    w_lawn = r_p * (1 - c_p)
    weights = np.stack([g_p, w_lawn, w_lawn * a_p, c_p * built_p, 0.6 * (1 - built_p) * (1 - g_p) + 0.05], axis=-1)
    ground = (weights @ _GROUND_COVER) / (weights.sum(axis=-1) - weights[..., 2])[..., None]
    patch = _noise(rng, n, n, extent_m / 60.0)
    ground *= (1.0 + 0.06 * patch)[..., None]
    parking = (lot_grid.kind == _COMMERCIAL) & lot_grid.inside
    parking.ravel()[flat[present]] = False
    ground[parking] = 128.0
    return ground, patch


def _draw_canopy(
    rng: np.random.Generator, img: np.ndarray, pix: dict[str, np.ndarray], road_cov: np.ndarray, n: int,
    extent_m: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Tree canopy: a fine noise thresholded at a cover fraction set by green (plus garden trees when affluent).
    Paints `img` in place; returns the canopy mask and the scene-class map (vegetation or ground)."""
    r_p, g_p, a_p = pix["residential"], pix["green"], pix["affluence"]
    crowns = _noise(rng, n, n, extent_m / 7.0) + 0.8 * _noise(rng, n, n, extent_m / 22.0) \
        + 0.7 * _noise(rng, n, n, extent_m / 90.0)
    cover = np.clip(1.05 * g_p + 0.14 * a_p * r_p - 0.03, 0.0, 0.96)
    canopy_u = _to_unit(crowns)
    tree = (canopy_u < cover) & (road_cov < 0.5)
    img[tree] = _CANOPY_DARK + (canopy_u[tree] / np.maximum(cover[tree], 1e-3))[:, None] * _CANOPY_LIGHT
    labels = np.where(tree, LABEL["vegetation"], LABEL["ground"]).astype(np.uint8)
    return tree, labels


def _draw_built(
    img: np.ndarray, labels: np.ndarray, patch: np.ndarray, blocks: _Blocks, streets: _Streets, flat: np.ndarray,
    buildings: _Buildings,
) -> None:
    """Sidewalks (where the block is built up), roads (anti-aliased edges, asphalt grain), roofs and pools, in place."""
    sidewalk = (streets.edge >= 0) & (streets.edge < _SIDEWALK_M) & (blocks.built[streets.leaf_idx] > 0.15)
    img[sidewalk] = 172.0
    labels[sidewalk] = LABEL["sidewalk"]
    road_cov = streets.road_cov
    on_road = road_cov > 0
    cov = road_cov[on_road][:, None]
    img[on_road] = img[on_road] * (1 - cov) + (72.0 + 10.0 * patch[on_road])[:, None] * cov
    labels[road_cov >= 0.5] = LABEL["road"]
    img.reshape(-1, 3)[flat[buildings.on_roof]] = buildings.roof_rgb[buildings.on_roof]
    labels[buildings.building] = LABEL["building"]
    img[buildings.pool] = (72.0, 188.0, 210.0)
    labels[buildings.pool] = LABEL["pool"]


def _draw_shadows(
    rng: np.random.Generator, img: np.ndarray, heights: np.ndarray, tree: np.ndarray, n: int, mpp: float
) -> None:
    """Shadows cast away from a random sun by buildings and trees (trees get a fixed height), in place."""
    heights[tree.ravel() & (heights == 0)] = _TREE_HEIGHT_M
    azimuth = rng.uniform(0, 2 * math.pi)
    tan_elev = math.tan(rng.uniform(math.radians(35), math.radians(65)))
    shadow = _cast_shadows(heights.reshape(n, n), mpp, azimuth, tan_elev)
    img[shadow] *= 0.58


def _draw_water(
    rng: np.random.Generator, img: np.ndarray, labels: np.ndarray, w_p: np.ndarray, streets: _Streets, n: int,
    extent_m: float,
) -> None:
    """Water overrides everything but the major roads (bridges); a sharp shoreline from a threshold on the field."""
    shore = _noise(rng, n, n, extent_m / 40.0)
    ripple = _noise(rng, n, n, extent_m / 12.0)
    water = ((w_p + 0.025 * shore) > 0.5) & ~(streets.major & (streets.road_cov >= 0.5))
    depth = np.clip((w_p[water] - 0.5) * 6.0, 0.0, 1.0)[:, None]
    img[water] = _WATER_SHALLOW * (1 - depth) + _WATER_DEEP * depth + 5.0 * ripple[water][:, None]
    labels[water] = LABEL["water"]


def _draw_clouds(rng: np.random.Generator, img: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Occasional clouds (one tile in about seven); returns the new image, labels thick cloud as occluder in place."""
    if rng.random() < 0.15:
        cloud = _to_unit(_noise(rng, n, n, 3.0) + 0.5 * _noise(rng, n, n, 9.0))
        alpha = np.clip((cloud - rng.uniform(0.45, 0.85)) * 5.0, 0.0, 0.92)
        img = img * (1 - alpha[..., None]) + 238.0 * alpha[..., None]
        labels[alpha > 0.5] = LABEL["occluder"]
    return img
