"""City layout under a remote-sensing tile: street grid, blocks, lots and buildings.

The tile is laid on a rotated street grid (`_grid_frame`). Blocks of a four-level quadtree are sampled from the latent
field at their centres (`_sample_blocks`); a block splits into four (new streets) where it is built up, so blocks
shrink in dense areas (`_street_grid`). Each leaf block gets a land use and is cut into lots (`_lot_grid`); each lot
may carry a building whose footprint, height and roof colour follow the latents (`_lot_buildings`), which
`_building_pixels` rasterises to roofs, pools and a height map. Per-block and per-lot randomness comes from hashes of
the image key, so it does not depend on how many pixels the tile has.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from musecl.synthetic.render.helpers import (
    METRES_PER_DEG_LAT,
    _apartment_share,
    _hash,
    _offset_lonlat,
    _sample_latents,
    _units,
    _upsample,
)
from musecl.synthetic.render.palettes import _APARTMENT_ROOF, _COMMERCIAL_ROOF, _HOUSE_ROOF, _pick

_RS_LATENT_GRID = 64  # latents are sampled on at most 64 x 64 points per tile and interpolated to pixels
_BLOCK_M = (320.0, 160.0, 80.0, 40.0)  # street-grid quadtree: block side at levels 0..3
_ROAD_HALF_M = (9.0, 6.5, 5.0, 3.8)  # half road width of a street that first appears at that level
_SIDEWALK_M = 2.5
_HOUSES, _APARTMENTS, _COMMERCIAL = 0, 1, 2


@dataclass
class _GridFrame:
    """The street-grid frame of a tile: rotation, block aspect, offset, and every pixel centre's (U, V) metres."""

    cos_t: float
    sin_t: float
    aspect: float  # blocks are this much longer along v than along u
    off_u: float
    off_v: float
    U: np.ndarray
    V: np.ndarray


@dataclass
class _Blocks:
    """The quadtree blocks touching a tile (all levels, concatenated) and their latents at the block centres."""

    levels: list[tuple[float, float, int, int, int, int]]  # per level: block sides, first indices, rows, offset
    level: np.ndarray
    latents: dict[str, np.ndarray]
    built: np.ndarray  # 1 - (1 - residential) * (1 - commercial)


@dataclass
class _Streets:
    """Per pixel: the leaf block, the position in it, the half widths of its four streets and the road cover."""

    leaf_idx: np.ndarray
    side_u: np.ndarray
    side_v: np.ndarray
    lu: np.ndarray
    lv: np.ndarray
    hw: list[np.ndarray]
    edge: np.ndarray  # metres from the nearest street edge (negative on the road)
    major: np.ndarray  # on a level-0 street (kept as a bridge over water)
    road_cov: np.ndarray


@dataclass
class _LotGrid:
    """Land use per block and, per pixel, the lot it falls in (block interior cut into n_u x n_v lots)."""

    b_kind: np.ndarray
    kind: np.ndarray
    inside: np.ndarray
    pu: np.ndarray
    pv: np.ndarray
    n_v: np.ndarray
    lot_w: np.ndarray
    lot_d: np.ndarray
    iu: np.ndarray
    iv: np.ndarray


@dataclass
class _Lots:
    """Per lot of the tile (unique over its pixels): where its pixels are and what stands on it."""

    flat: np.ndarray  # flat indices of the pixels inside lots
    inverse: np.ndarray  # lot of each of those pixels
    leaf: np.ndarray
    house: np.ndarray
    w: np.ndarray
    d: np.ndarray
    faces_low: np.ndarray
    present: np.ndarray
    bw: np.ndarray
    bd: np.ndarray
    u0: np.ndarray
    v0: np.ndarray
    height: np.ndarray
    roof: np.ndarray
    pool: np.ndarray
    plant: np.ndarray


@dataclass
class _Buildings:
    """Buildings and pools rasterised on the tile."""

    present: np.ndarray  # per pixel inside lots: its lot carries a building
    on_roof: np.ndarray  # per pixel inside lots
    roof_rgb: np.ndarray  # per pixel inside lots
    building: np.ndarray  # (n, n)
    pool: np.ndarray  # (n, n)
    heights: np.ndarray  # (n * n,) metres


def _street_grid_orientation(lon: float, lat: float) -> float:
    """Street-grid angle (rad, [0, pi/2]) varying smoothly across the city on a ~2 km scale."""
    x = lon * METRES_PER_DEG_LAT / 1900.0
    y = lat * METRES_PER_DEG_LAT / 2600.0
    return 0.25 * math.pi * (1.0 + math.sin(x + 0.7 * math.cos(y)) * math.cos(0.8 * y + 0.3))


def _grid_frame(rng: np.random.Generator, lon0: float, lat0: float, n: int, extent_m: float) -> _GridFrame:
    """Draw the tile's street-grid frame and place the pixel centres in it."""
    theta = _street_grid_orientation(lon0, lat0) + rng.normal(0.0, 0.04)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    aspect = rng.uniform(1.0, 2.2)  # blocks are this much longer along v than along u
    off_u, off_v = rng.uniform(0, _BLOCK_M[0]), rng.uniform(0, _BLOCK_M[0] * aspect)

    # Pixel centres in metres east/north of the tile centre (row 0 is north), and in the street-grid frame (u, v).
    c = ((np.arange(n) + 0.5) / n - 0.5) * extent_m
    east, north = c[None, :], -c[:, None]
    U = east * cos_t + north * sin_t + off_u
    V = -east * sin_t + north * cos_t + off_v
    return _GridFrame(cos_t, sin_t, aspect, off_u, off_v, U, V)


def _sample_blocks(
    field: Any, lon0: float, lat0: float, grid: _GridFrame, n: int, extent_m: float, where: str
) -> tuple[dict[str, np.ndarray], _Blocks]:
    """Latents per pixel (a coarse grid interpolated) and at the centres of the quadtree blocks of every level that
    touch the tile, all sampled in one call."""
    U, V, aspect = grid.U, grid.V, grid.aspect
    g = min(n, _RS_LATENT_GRID)
    cg = ((np.arange(g) + 0.5) / g - 0.5) * extent_m
    grid_e, grid_n = np.meshgrid(cg, -cg)
    levels = []
    centres_e, centres_n, centre_level = [grid_e.ravel()], [grid_n.ravel()], []
    offset = 0
    for level, block in enumerate(_BLOCK_M):
        su, sv = block, block * aspect
        i0, i1 = math.floor(U.min() / su), math.floor(U.max() / su)
        j0, j1 = math.floor(V.min() / sv), math.floor(V.max() / sv)
        ni, nj = i1 - i0 + 1, j1 - j0 + 1
        uc, vc = np.meshgrid((i0 + np.arange(ni) + 0.5) * su, (j0 + np.arange(nj) + 0.5) * sv, indexing="ij")
        du, dv = uc.ravel() - grid.off_u, vc.ravel() - grid.off_v
        centres_e.append(du * grid.cos_t - dv * grid.sin_t)
        centres_n.append(du * grid.sin_t + dv * grid.cos_t)
        centre_level.append(np.full(ni * nj, level))
        levels.append((su, sv, i0, j0, nj, offset))
        offset += ni * nj
    lon, lat = _offset_lonlat(lon0, lat0, np.concatenate(centres_e), np.concatenate(centres_n))
    sampled = _sample_latents(field, lon, lat, where)
    pix = {k: _upsample(v[: g * g].reshape(g, g), n) for k, v in sampled.items()}
    blk = {k: v[g * g:] for k, v in sampled.items()}
    built = 1.0 - (1.0 - blk["residential"]) * (1.0 - blk["commercial"])
    return pix, _Blocks(levels, np.concatenate(centre_level), blk, built)


def _street_grid(grid: _GridFrame, blocks: _Blocks, hb: list[np.ndarray], n: int, mpp: float) -> _Streets:
    """Quadtree: a block splits in four (new streets) when it is built up enough (thresholds jittered per block by
    hb[2], so the grid is not perfectly regular); the leaf block gives the local street grid and is the unit of land
    use."""
    U, V, aspect = grid.U, grid.V, grid.aspect
    b_res, b_com = blocks.latents["residential"], blocks.latents["commercial"]
    block_level = blocks.level
    built_j = blocks.built + 0.16 * (hb[2] - 0.5)
    splits = np.where(block_level == 0, built_j > 0.12,
                      np.where(block_level == 1, built_j > 0.34,
                               np.where(block_level == 2, (b_res > 0.6) & (built_j > 0.8) & (b_com < 0.4), False)))
    splits &= blocks.latents["water"] < 0.5
    idx = [((np.floor(U / su) - i0) * nj + (np.floor(V / sv) - j0)).astype(np.int32) + o
           for su, sv, i0, j0, nj, o in blocks.levels]
    leaf = np.zeros((n, n), dtype=np.int32)
    active = np.ones((n, n), dtype=bool)
    for level in range(3):
        active &= splits[idx[level]]
        leaf += active
    leaf_idx = np.choose(leaf, idx)
    side_u = np.asarray(_BLOCK_M, dtype=np.float32)[leaf]
    side_v = side_u * np.float32(aspect)
    ku, kv = np.floor(U / side_u), np.floor(V / side_v)
    lu, lv = (U - ku * side_u).astype(np.float32), (V - kv * side_v).astype(np.float32)
    ku, kv = ku.astype(np.int32), kv.astype(np.int32)
    half = np.asarray(_ROAD_HALF_M, dtype=np.float32)
    hw = [half[_line_level(k, leaf)] for k in (ku, ku + 1, kv, kv + 1)]
    edge = np.minimum(np.minimum(lu - hw[0], side_u - lu - hw[1]), np.minimum(lv - hw[2], side_v - lv - hw[3]))
    s0u, s0v = _BLOCK_M[0], _BLOCK_M[0] * aspect
    major = np.minimum(np.abs(U - np.round(U / s0u) * s0u), np.abs(V - np.round(V / s0v) * s0v)) < half[0]
    road_cov = np.clip(0.5 - edge / np.float32(mpp), 0.0, 1.0)
    return _Streets(leaf_idx, side_u, side_v, lu, lv, hw, edge, major, road_cov)


def _line_level(k: np.ndarray, leaf: np.ndarray) -> np.ndarray:
    """Quadtree level at which the grid line with index k (in units of the leaf block side) first appears: a line
    of a level-L block that is also a multiple of 2^t leaf sides is a line of level L - t."""
    trailing = ((k & 1) == 0).astype(np.int32) + ((k & 3) == 0) + ((k & 7) == 0)
    return leaf - np.minimum(trailing, leaf)


def _lot_grid(blocks: _Blocks, streets: _Streets, hb: list[np.ndarray]) -> _LotGrid:
    """Land use per block (commercial share -> commercial block; dense residential -> apartment slabs; else houses,
    drawn by hb[0], hb[1]) and the lots: the block interior (inside sidewalks) cut into a grid of lots; houses in two
    rows facing the streets."""
    b_res, b_com, b_aff = (blocks.latents[k] for k in ("residential", "commercial", "affluence"))
    leaf_idx, side_u, side_v, hw = streets.leaf_idx, streets.side_u, streets.side_v, streets.hw
    b_kind = np.where(hb[0] < b_com / (b_res + b_com + 1e-6), _COMMERCIAL,
                      np.where(hb[1] < _apartment_share(b_res, b_com), _APARTMENTS, _HOUSES))
    b_frontage = np.where(b_kind == _COMMERCIAL, 28.0 + 42.0 * b_com,
                          np.where(b_kind == _APARTMENTS, 34.0, 14.0 + 10.0 * b_aff)).astype(np.float32)
    kind = b_kind[leaf_idx]

    inner_u0, inner_v0 = hw[0] + _SIDEWALK_M, hw[2] + _SIDEWALK_M
    len_u = np.maximum(side_u - hw[1] - _SIDEWALK_M - inner_u0, 1e-3)
    len_v = np.maximum(side_v - hw[3] - _SIDEWALK_M - inner_v0, 1e-3)
    pu, pv = streets.lu - inner_u0, streets.lv - inner_v0
    inside = (pu >= 0) & (pu < len_u) & (pv >= 0) & (pv < len_v)
    frontage = b_frontage[leaf_idx]
    n_u = np.maximum(1.0, np.floor(len_u / frontage))
    n_v = np.where(kind == _HOUSES, np.where(len_v >= 24.0, 2.0, 1.0),
                   np.maximum(1.0, np.floor(len_v / np.where(kind == _COMMERCIAL, frontage, 40.0))))
    lot_w, lot_d = len_u / n_u, len_v / n_v
    iu = np.clip(np.floor(pu / lot_w), 0, n_u - 1)
    iv = np.clip(np.floor(pv / lot_d), 0, n_v - 1)
    return _LotGrid(b_kind, kind, inside, pu, pv, n_v, lot_w, lot_d, iu, iv)


def _lot_buildings(key: int, blocks: _Blocks, leaf_idx: np.ndarray, grid: _LotGrid) -> _Lots:
    """Per lot (unique over the tile's pixels): presence, footprint, height and roof colour."""
    b_res, b_com, b_aff = (blocks.latents[k] for k in ("residential", "commercial", "affluence"))
    flat = np.flatnonzero(grid.inside)
    lot_key = (leaf_idx.ravel()[flat].astype(np.int64) * 256 + grid.iu.ravel()[flat].astype(np.int64)) * 256 \
        + grid.iv.ravel()[flat].astype(np.int64)
    lots, first, inverse = np.unique(lot_key, return_index=True, return_inverse=True)
    at_first = flat[first]
    L_leaf = lots // 65536
    L_kind = grid.b_kind[L_leaf]
    L_house, L_comm = L_kind == _HOUSES, L_kind == _COMMERCIAL
    L_res, L_com, L_aff, L_built = b_res[L_leaf], b_com[L_leaf], b_aff[L_leaf], blocks.built[L_leaf]
    L_w, L_d = grid.lot_w.ravel()[at_first], grid.lot_d.ravel()[at_first]
    L_faces_low = (grid.iv.ravel()[at_first] == 0) | (grid.n_v.ravel()[at_first] == 1)
    ul = _units(_hash(key + 1, lots), 12)
    L_present = (ul[0] < np.clip(0.04 + 1.0 * L_built, 0, 0.96)) & (blocks.latents["water"][L_leaf] < 0.45)
    # Footprints in metres: houses 8-18 m near the street with a back yard, apartment slabs, commercial blocks
    # filling most of their (large) lot.
    house_w = np.minimum(8.0 + 6.0 * ul[1] + 4.0 * L_aff, 0.85 * L_w)
    house_d = np.minimum(8.0 + 5.0 * ul[2] + 3.0 * L_aff, 0.8 * L_d)
    setback = np.minimum(3.0 + 4.0 * ul[4], L_d - house_d)
    L_bw = np.where(L_house, house_w, L_w * (0.62 + 0.35 * ul[1]))
    L_bd = np.where(L_house, house_d, np.where(L_comm, L_d * (0.62 + 0.35 * ul[2]),
                                               np.minimum(12.0 + 6.0 * ul[2], 0.9 * L_d)))
    L_u0 = (L_w - L_bw) * np.where(L_house, 0.2 + 0.6 * ul[3], ul[3])
    L_v0 = np.where(L_house, np.where(L_faces_low, setback, L_d - house_d - setback), (L_d - L_bd) * ul[4])
    L_height = np.where(L_comm, 8.0 + 130.0 * L_com**2 * ul[5] ** 1.5,
                        np.where(L_house, 4.0 + 4.0 * ul[5], 10.0 + 26.0 * L_res * ul[5]))
    # Roof colours: commercial flat roofs (white membrane / glass more likely when affluent), apartment slabs, house
    # tiles (poor -> weathered/corrugated, affluent -> light and varied).
    comm_roof = _COMMERCIAL_ROOF[(ul[6] < 0.15 + 0.7 * L_aff).astype(np.int64),
                                 np.minimum((ul[7] * 4).astype(np.int64), 3)]
    house_tier = np.where(ul[6] < 0.7 * (1 - L_aff) ** 2, 0, np.where(ul[6] > 1 - 0.75 * L_aff, 2, 1))
    house_roof = _HOUSE_ROOF[house_tier, np.minimum((ul[7] * 6).astype(np.int64), 5)]
    L_roof = np.where(L_comm[:, None], comm_roof, np.where(L_house[:, None], house_roof, _pick(_APARTMENT_ROOF, ul[7])))
    jitter = (np.stack(ul[8:11], axis=-1) - 0.5) * (8.0 + 18.0 * L_aff)[:, None]
    L_roof = L_roof * (0.88 + 0.2 * L_aff)[:, None] + jitter
    L_pool = L_house & (ul[11] < 0.75 * L_aff**2)
    L_plant = ~L_house & (ul[11] < 0.35)
    return _Lots(flat, inverse, L_leaf, L_house, L_w, L_d, L_faces_low, L_present, L_bw, L_bd, L_u0, L_v0, L_height,
                 L_roof, L_pool, L_plant)


def _building_pixels(lots: _Lots, grid: _LotGrid, b_aff: np.ndarray, n: int) -> _Buildings:
    """Per pixel inside lots: position relative to the footprint -> roof (shaded), pool, building height."""
    flat, inverse = lots.flat, lots.inverse
    pu, pv, iu, iv = grid.pu, grid.pv, grid.iu, grid.iv
    xb = (pu.ravel()[flat] - iu.ravel()[flat] * lots.w[inverse]) - lots.u0[inverse]
    xv = pv.ravel()[flat] - iv.ravel()[flat] * lots.d[inverse]
    yb = xv - lots.v0[inverse]
    bw, bd = lots.bw[inverse], lots.bd[inverse]
    present = lots.present[inverse]
    on_roof = present & (xb >= 0) & (xb < bw) & (yb >= 0) & (yb < bd)
    house = lots.house[inverse]
    # Pitched house roofs: the two halves either side of the ridge catch the sun differently; edges are darker;
    # some flat roofs carry rooftop plant.
    ridge_side = np.where(bw >= bd, yb < bd / 2, xb < bw / 2)
    shade = np.where(house, np.where(ridge_side, 1.08, 0.84), 1.0) * \
        np.where(np.minimum(np.minimum(xb, bw - xb), np.minimum(yb, bd - yb)) < 0.9, 0.8, 1.0)
    plant = lots.plant[inverse] & (np.mod(xb, 11.0) < 2.6) & (np.mod(yb, 13.0) < 2.4)
    roof_rgb = np.where(plant[:, None], np.float32(200.0), lots.roof[inverse] * shade[:, None])
    # Pools in the back yards of affluent houses.
    behind = np.where(lots.faces_low[inverse], xv - (lots.v0[inverse] + bd + 2.5), lots.v0[inverse] - 2.5 - xv)
    in_pool = (present & lots.pool[inverse] & (behind >= 0) & (behind < 7.0) & (xb >= 1.0) & (xb < 5.5 + 2.0 * b_aff[
        lots.leaf[inverse]]) & ~on_roof)

    building = np.zeros(n * n, dtype=bool)
    building[flat[on_roof]] = True
    building = building.reshape(n, n)
    pool = np.zeros(n * n, dtype=bool)
    pool[flat[in_pool]] = True
    pool = pool.reshape(n, n)
    heights = np.zeros(n * n, dtype=np.float32)
    heights[flat[on_roof]] = lots.height[inverse[on_roof]]
    return _Buildings(present, on_roof, roof_rgb, building, pool, heights)
