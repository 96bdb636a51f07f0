"""Street-view surfaces: the rows of lots along a street (facades, trees, yards, water) and the ground in front.

`_facade_segments` generates a row of lots along one line of the street from the latents there: buildings (type,
height, facade and shops from the latents), tree rows, vacant lots and water, one after another, as a table of
segments. The ray caster of `street_view` asks `_segment_index` / `_surface_top` which segment a ray meets and
whether it hits something solid, and `_shade_facade` colours the hits (windows, walls, roofs, shopfronts, signs,
trees, hedges). `_shade_ground` colours rays that reach the ground: road with lane markings, sidewalks, front yards
and lots from the facade row beyond, open water. Randomness per window or shop comes from hashes of the image key;
the segments are drawn from the image's generator.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from musecl.synthetic.render.helpers import LATENTS, _apartment_share, _hash, _units
from musecl.synthetic.render.palettes import (
    _COMMERCIAL_WALL,
    _HEDGE,
    _HOUSE_ROOF,
    _RESIDENTIAL_WALL,
    _SHOP_LIT,
    _SIGN_NEON,
    _SIGN_SHOP,
    LABEL,
    _lawn,
    _pick,
)

_KIND_VACANT, _KIND_BUILDING, _KIND_TREES, _KIND_WATER = 0, 1, 2, 3


def _facade_segments(
    latents_at: Callable[[float], dict[str, float]], rng: np.random.Generator, s_start: float, s_end: float,
    water: bool = False,
) -> dict[str, np.ndarray]:
    """A row of lots along a street from s_start to s_end: buildings, trees, vacant lots or water, one after another.

    Per lot the local latents set the kind (built-up -> building, green -> trees, water -> open water), the building
    type (commercial share), its height (commercial -> towers, dense residential -> mid-rise, else houses), its facade
    (affluence -> lighter, cleaner, larger windows; commercial + affluent -> glass) and ground-floor shops
    (commercial, nightlife).
    """
    rows: list[dict[str, Any]] = []
    s = s_start - rng.uniform(0.0, 12.0)
    while s < s_end or not rows:
        lat = latents_at(s + 6.0)
        r, c, g, w, a, nl = (lat[k] for k in LATENTS)
        built = 1 - (1 - r) * (1 - c)
        row: dict[str, Any] = dict(kind=_KIND_VACANT, wall_h=0.0, roof_h=0.0, gable=False, wall=(0, 0, 0),
                                   window=(0, 0, 0), roof=(0, 0, 0), floor_h=3.0, col_w=3.0, win_fx=0.5, win_lo=0.3,
                                   win_hi=0.75, shop=False, nightlife=nl, commercial=c, green=g, affluence=a, dirt=0.0,
                                   ground=(150, 145, 130), ground_label=LABEL["ground"], hedge=0.0,
                                   seed=int(rng.integers(0, 2**31)))
        if water or w > 0.5:
            length = 20.0
            row.update(kind=_KIND_WATER, ground=(40, 72, 100), ground_label=LABEL["water"])
        elif rng.random() < np.clip(0.05 + 0.95 * built - 0.3 * g * (1 - built), 0.02, 0.97):
            length, gap = _building(rng, row, r, c, a, nl)
            rows.append(dict(row, s0=s, s1=s + length))
            s += length
            if gap > 0:  # side yard / passage between buildings
                rows.append(dict(row, kind=_KIND_VACANT, shop=False, s0=s, s1=s + gap, hedge=0.0,
                                 seed=int(rng.integers(0, 2**31))))
                s += gap
            continue
        elif rng.random() < 0.15 + 0.85 * g:
            length = rng.uniform(12.0, 30.0 + 30.0 * g)
            row.update(kind=_KIND_TREES, wall_h=rng.uniform(6.0, 9.0) + 8.0 * g * rng.uniform(0.5, 1.0),
                       wall=tuple(np.array([52, 92, 44]) * rng.uniform(0.8, 1.15)), ground=(104, 146, 72),
                       ground_label=LABEL["vegetation"])
        else:
            length = rng.uniform(6.0, 25.0)
            paved = rng.random() < c
            row.update(ground=(130, 130, 128) if paved else _lawn(a), hedge=1.2 * (rng.random() < r * (0.3 + 0.6 * a)))
        rows.append(dict(row, s0=s, s1=s + length))
        s += length
    table = {k: np.array([row[k] for row in rows]) for k in rows[0]}
    for k in ("wall", "window", "roof", "ground"):
        table[k] = table[k].astype(np.float32).reshape(len(rows), 3)
    table["top_max"] = float(np.max(np.maximum(table["wall_h"] + table["roof_h"], table["hedge"])))
    return table


def _building(
    rng: np.random.Generator, row: dict[str, Any], r: float, c: float, a: float, nl: float
) -> tuple[float, float]:
    """Fill `row` with a building from the latents of its lot: commercial (share of commercial; storeys from
    commercial, glass when commercial and affluent) or residential (apartments where dense, else houses with pitched
    roofs; wall and roof tier from affluence); ground-floor shops (commercial, nightlife). Returns the building's
    length along the street and the gap after it (side yard or passage)."""
    row["kind"] = _KIND_BUILDING
    commercial = rng.random() < c / (r + c + 1e-6)
    if commercial:
        length = rng.uniform(16.0, 26.0 + 40.0 * c)
        floors = max(2, round(math.exp(rng.normal(math.log(2.5 + 35.0 * c**2), 0.4))))
        glass = rng.random() < (0.15 + 0.75 * c) * (0.35 + 0.65 * a)
        wall = _COMMERCIAL_WALL[int(glass), int(rng.integers(0, 4))]
        if glass:
            row.update(floor_h=3.8, col_w=1.6, win_fx=0.88, win_lo=0.06, win_hi=0.94,
                       window=wall * 0.75 + np.array([30, 40, 50]))
        else:
            row.update(floor_h=3.6, col_w=2.4, win_fx=0.55 + 0.2 * a, win_lo=0.22, win_hi=0.82,
                       window=(52, 60, 70))
        row.update(wall_h=floors * row["floor_h"], wall=wall, dirt=0.25 * (1 - a))
        gap = 0.0 if rng.random() < 0.8 else rng.uniform(2.0, 8.0)
    else:
        apartment = rng.random() < _apartment_share(r, c)
        tier = 0 if rng.random() < 0.7 * (1 - a) ** 2 else (2 if rng.random() > 1 - 0.75 * a else 1)
        wall = _RESIDENTIAL_WALL[tier, int(rng.integers(0, 6))]
        if apartment:
            length = rng.uniform(14.0, 32.0)
            floors = max(3, round(math.exp(rng.normal(math.log(3.0 + 5.0 * r), 0.25))))
            gap = rng.uniform(0.0, 6.0)
            roof_h, gable = 0.0, False
        else:
            length = rng.uniform(7.0, 13.0)
            floors = 1 + int(rng.random() < 0.4 + 0.3 * a)
            gap = rng.uniform(2.0, 7.0)
            roof_h, gable = rng.uniform(1.5, 3.0), rng.random() < 0.5
        roof = _HOUSE_ROOF[tier, int(rng.integers(0, 6))]
        row.update(wall_h=floors * 3.0, roof_h=roof_h, gable=gable, wall=wall, roof=roof, floor_h=3.0,
                   col_w=rng.uniform(2.8, 3.6), win_fx=0.38 + 0.2 * a, win_lo=0.3 - 0.08 * a,
                   win_hi=0.72 + 0.08 * a, window=np.array([45, 55, 68]) + 35 * a, dirt=0.35 * (1 - a))
    p_shop = np.clip(0.03 + 0.9 * c + 0.5 * nl - (0.6 if row["roof_h"] > 0 else 0.0), 0.0, 0.95)
    row["shop"] = bool(rng.random() < p_shop)
    row["ground"] = (132, 130, 126) if commercial else _lawn(a)
    return length, gap


def _segment_index(seg: dict[str, np.ndarray], s: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(seg["s1"], s, side="right"), 0, len(seg["s1"]) - 1)


def _surface_top(seg: dict[str, np.ndarray], i: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Height (m) of the solid part of each segment at position s: walls + roofs, tree canopies, hedges."""
    kind = seg["kind"][i]
    s0, s1 = seg["s0"][i], seg["s1"][i]
    inside = (s >= s0) & (s < s1)
    rel = np.clip((s - s0) / np.maximum(s1 - s0, 1e-3), 0, 1)
    roof = seg["roof_h"][i] * np.where(seg["gable"][i], 1 - np.abs(2 * rel - 1), 1.0)
    crowns = seg["wall_h"][i] * (0.8 + 0.2 * np.abs(np.sin((s - s0) * 0.6 + seg["seed"][i] % 7)))
    top = np.where(kind == _KIND_BUILDING, seg["wall_h"][i] + roof,
                   np.where(kind == _KIND_TREES, crowns, np.where(kind == _KIND_VACANT, seg["hedge"][i], 0.0)))
    return np.where(inside, top, 0.0).astype(np.float32)


def _shade_facade(seg: dict[str, np.ndarray], i: np.ndarray, s: np.ndarray, z: np.ndarray, key: int,
                  light: float) -> tuple[np.ndarray, np.ndarray]:
    """Colour and class of facade-row hits (1-D arrays): windows, walls, roofs, shopfronts, signs, trees, hedges."""
    kind = seg["kind"][i]
    s_loc = s - seg["s0"][i]
    seed = seg["seed"][i]
    wall = seg["wall"][i]
    fh, cw = seg["floor_h"][i], seg["col_w"][i]
    floor_i = np.floor(z / fh)
    fz = z / fh - floor_i
    col_i = np.floor(s_loc / cw)
    fs = s_loc / cw - col_i
    hw = _units(_hash(key, seed, col_i, floor_i), 3)
    wall_h = seg["wall_h"][i]
    shop_floor = seg["shop"][i] & (z < 3.6)
    window = (np.abs(fs - 0.5) < seg["win_fx"][i] / 2) & (fz > seg["win_lo"][i]) & (fz < seg["win_hi"][i]) \
        & (z < wall_h - 0.4) & ~shop_floor
    win_rgb = seg["window"][i] * ((0.72 + 0.5 * hw[0]) * (0.9 + 0.25 * fz))[:, None]
    win_rgb[hw[1] < 0.06] = (226.0, 200.0, 140.0)  # lit rooms / curtains
    streak = 1.0 - seg["dirt"][i] * hw[2]  # weathering streaks down each column (poor areas)
    rgb = np.where(window[:, None], win_rgb, wall * streak[:, None])
    cornice = (z >= wall_h - 0.5) & (z < wall_h)
    rgb[cornice] *= 0.78
    on_roof = z >= wall_h
    rgb[on_roof] = seg["roof"][i[on_roof]]  # pitched roof seen from the street
    rgb[(s_loc < 0.25) | (seg["s1"][i] - s < 0.25)] *= 0.72  # party walls
    lab = np.full(len(i), LABEL["building"], np.uint8)

    # Ground-floor shops: display windows, a sign band per shop (shop palette, or neon with nightlife) and, where
    # nightlife is high, vertical neon blade signs above.
    sub = np.flatnonzero(seg["shop"][i] & (z < 7.5))
    if len(sub):
        ii, zz, sl = i[sub], z[sub], s_loc[sub]
        shop_i = np.floor(sl / 6.5)
        fs2 = sl / 6.5 - shop_i
        hs = _units(_hash(key + 5, seed[sub], shop_i), 5)
        c_i, nl_i = seg["commercial"][ii], seg["nightlife"][ii]
        display = (zz > 0.25) & (zz < 2.6) & (np.abs(fs2 - 0.5) < 0.42)
        rgb[sub[display]] = np.where((hs[0][display] < 0.4)[:, None], _SHOP_LIT, np.float32(48.0))
        sign = (zz >= 2.75) & (zz < 3.45) & (np.abs(fs2 - 0.5) < 0.46) & (hs[1] < 0.35 + 0.45 * c_i + 0.5 * nl_i)
        blade = (hs[4] < 0.8 * nl_i**1.5) & (fs2 < 0.1) & (zz > 3.9) & (zz < 7.5) & (zz < seg["wall_h"][ii] - 0.5)
        lit = sign | blade
        neon = hs[2][lit] < nl_i[lit]
        sign_rgb = np.where(neon[:, None], _pick(_SIGN_NEON, hs[3][lit]), _pick(_SIGN_SHOP, hs[3][lit]))
        rgb[sub[lit]] = sign_rgb * (1.2 / max(light, 0.5))  # signs are lit: no side shading
        lab[sub[lit]] = LABEL["sign"]

    # Tree rows (canopy clumps) and hedges.
    sub = np.flatnonzero(kind != _KIND_BUILDING)
    if len(sub):
        clump = _units(_hash(key + 11, seed[sub], np.floor(s_loc[sub] / 1.7), np.floor(z[sub] / 1.7)), 1)[0]
        base = np.where((kind[sub] == _KIND_TREES)[:, None], wall[sub], _HEDGE)
        rgb[sub] = base * (0.72 + 0.42 * clump)[:, None]
        lab[sub] = LABEL["vegetation"]
    return rgb * np.float32(light), lab


def _shade_ground(
    s_g: np.ndarray, c_g: np.ndarray, t: np.ndarray, kerb: tuple[float, float], sidewalk: float,
    sides: dict[int, dict[str, np.ndarray]], along: bool, water_ahead: float, key: int, sky_low: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Colour and class of ground hits (1-D arrays) from their street coordinates (s along, c across) and distance
    t: road with lane markings, sidewalks, front yards / lots beyond (from the facade row there) and open water."""
    rgb = np.empty((len(t), 3), np.float32)
    lab = np.empty(len(t), np.uint8)
    road = (c_g >= kerb[0]) & (c_g <= kerb[1])
    walk = ~road & (c_g >= kerb[0] - sidewalk) & (c_g <= kerb[1] + sidewalk)
    beyond = ~road & ~walk
    grain = _units(_hash(key + 13, np.floor(s_g * 2.0), np.floor(c_g * 2.0)), 1)[0]
    rgb[:] = (np.float32(78.0) + 10.0 * grain)[:, None]
    # Lane markings: dashed lines between lanes, a solid centre line (along the street only where visible).
    lane_w = 3.3
    pixel_m = np.maximum(t / 300.0, 0.05)
    if math.isfinite(kerb[0]):
        centre = (kerb[0] + kerb[1]) / 2
        rel = c_g - kerb[0]
        frac = np.abs(rel / lane_w - np.round(rel / lane_w)) * lane_w
        mark = road & (frac < 0.08 + pixel_m * 0.3) & (np.mod(s_g, 9.0) < 4.0) & (rel > 1.0) & (kerb[1] - c_g > 1.0)
        mark |= road & (np.abs(c_g - centre) < 0.1 + pixel_m * 0.3)
        rgb[mark] = np.array([222, 222, 210], np.float32)
    rgb[walk] = (np.float32(168.0) + 14.0 * grain[walk])[:, None]
    lab[:] = LABEL["road"]
    lab[walk] = LABEL["sidewalk"]
    # Beyond the sidewalk: front yards (before the facade plane) and back lots through gaps, from the lot there.
    for side_id, seg in sides.items():
        m = beyond & ((c_g > 0) == (side_id == 1))
        if not m.any():
            continue
        idx = _segment_index(seg, s_g[m])
        rgb[m] = seg["ground"][idx] * (0.85 + 0.3 * grain[m])[:, None]
        lab[m] = seg["ground_label"][idx]
    # Water ahead (the street ends at a quay) or beside the street: one water surface reflecting the sky.
    wet = ((s_g > water_ahead) if along else (c_g > water_ahead)) | (lab == LABEL["water"])
    if np.any(wet):
        reflect = sky_low * 0.35 + np.array([30, 60, 90], np.float32) * 0.65
        rgb[wet] = reflect * (0.9 + 0.2 * grain[wet])[:, None]
        lab[wet] = LABEL["water"]
    return rgb, lab
