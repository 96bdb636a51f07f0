"""Street-view photos of the synthetic city: a camera on a street looking along `heading_deg` (compass degrees).

`render_street_view_labelled` draws the photo (`_draw_street_view`) and applies the acquisition effects. The drawing
samples the latents on a small grid 5-150 m ahead and 20-60 m to the sides of the heading, draws a camera (a view
along the street or across it) and lays out the street: kerbs, facade planes and rows of lots (`facades`) on each
visible side, a possible street end or quay. A per-pixel ray caster then intersects the facade rows, the ground and a
distant skyline under a cloudy sky; aerial perspective fades far things into the haze; sprites (`sprites`), a random
foreground occluder and pixel texture come last. Every random draw comes from the `rng` argument, in a fixed order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from musecl.synthetic.render.acquisition import _acquisition
from musecl.synthetic.render.facades import (
    _facade_segments,
    _segment_index,
    _shade_facade,
    _shade_ground,
    _surface_top,
)
from musecl.synthetic.render.helpers import (
    _bilinear,
    _check_lonlat,
    _check_rng,
    _check_size,
    _hash,
    _noise,
    _offset_lonlat,
    _sample_latents,
    _to_unit,
    _units,
)
from musecl.synthetic.render.palettes import LABEL
from musecl.synthetic.render.sprites import _draw_sprite, _street_sprites

_SV_AHEAD_M = np.array([5.0, 15.0, 30.0, 50.0, 75.0, 105.0, 150.0])  # where the field is sampled along the heading
_SV_SIDE_M = np.array([-60.0, -20.0, 0.0, 20.0, 60.0])  # ... and across it (negative = left)
_SV_DEPTH_M = 420.0  # facades are generated this far along the street
_SV_SKYLINE_M = 800.0  # distance of the hazy background skyline
_FAR = np.float32(1e9)


@dataclass(frozen=True)
class _Camera:
    """The camera and the street it stands on (metres and pixels)."""

    along: bool  # looking along the street (else across it)
    f: float  # focal length, pixels
    cam_h: float
    horizon: float  # image row of the horizon
    centre_x: float  # image column of the optical axis
    road_half: float
    cam_off: float  # distance right of the centre line
    sidewalk: float


@dataclass(frozen=True)
class _Street:
    """The street in street coordinates (s along, c across; c > 0 is the side an across view faces)."""

    kerb: tuple[float, float]
    planes: tuple[float, float]  # facade plane of each side
    sides: dict[int, dict[str, np.ndarray]]  # facade row of each visible side
    end_wall: tuple[float, dict[str, np.ndarray]] | None  # distance and facade row closing an along view


@dataclass(frozen=True)
class _Sky:
    sun_left: bool
    sky_top: np.ndarray
    sky_low: np.ndarray
    overcast: float
    haze: np.ndarray
    fog_m: float


@dataclass(frozen=True)
class _Rays:
    """Per-pixel rays: a = horizontal slope (right +), b = vertical slope (up +), and where each meets the ground."""

    cols: np.ndarray
    rows: np.ndarray
    A: np.ndarray
    B: np.ndarray
    down: np.ndarray
    t_ground: np.ndarray


def render_street_view(
    field: Any, lon: float, lat: float, heading_deg: float, size_px: int, rng: np.random.Generator
) -> np.ndarray:
    """A (size_px, size_px, 3) uint8 street-level photo taken at lon/lat looking along heading_deg (clockwise from
    north), 90 degree field of view."""
    return render_street_view_labelled(field, lon, lat, heading_deg, size_px, rng)[0]


def render_street_view_labelled(
    field: Any, lon: float, lat: float, heading_deg: float, size_px: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`render_street_view` plus the (size_px, size_px) uint8 scene-class map (indices into SCENE_CLASSES)."""
    where = "render_street_view"
    n = _check_size(size_px, where)
    _check_rng(rng, where)
    lon, lat = _check_lonlat(lon, lat, where)
    if not (isinstance(heading_deg, (int, float, np.number)) and math.isfinite(heading_deg)):
        raise ValueError(f"{where}: heading_deg must be a finite number of degrees, got {heading_deg!r}")
    rgb, labels = _draw_street_view(field, lon, lat, float(heading_deg), n, rng, where)
    image = _acquisition(rgb, rng, blur_px=(0.2, 0.8), noise_dn=(1.5, 5.0), jpeg_quality=(55, 92), haze=(0.0, 0.08))
    return image, labels


def _draw_street_view(
    field: Any, lon: float, lat: float, heading_deg: float, n: int, rng: np.random.Generator, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """The photo before acquisition effects: float RGB (n, n, 3) and the scene-class map."""
    key = int(rng.integers(0, 2**62))
    lat_grid = _sample_view_latents(field, lon, lat, heading_deg, where)
    near = {k: float(v[1:4, :2].mean()) for k, v in lat_grid.items()}  # around the camera
    far = _latents_at(lat_grid, 150.0, 0.0)
    cam = _draw_camera(rng, n, near)
    water_ahead = _water_ahead(lat_grid["water"][2])
    street = _lay_out_street(rng, lat_grid, cam, water_ahead)
    sky = _draw_sky_light(rng)
    rays = _cast_rays(cam, n)

    colour = np.zeros((n, n, 3), np.float32)
    labels = np.full((n, n), LABEL["sky"], np.uint8)
    depth = np.full((n, n), _FAR, np.float32)
    _draw_facades(colour, labels, depth, rays, cam, street, sky.sun_left, key, n)
    _draw_ground(colour, labels, depth, rays, cam, street, water_ahead, key, sky.sky_low)
    _draw_background(rng, colour, labels, depth, rays, cam.cam_h, far, sky, key, n)

    # Aerial perspective: far things fade into the horizon haze.
    fade = (1.0 - np.exp(-np.minimum(depth, 5000.0) / sky.fog_m))[..., None] * (depth < _FAR)[..., None]
    colour = colour * (1 - fade) + sky.haze * fade

    # Sprites (trees, vehicles, people), far to near.
    end_wall = street.end_wall
    sprites = _street_sprites(rng, cam.along, street.kerb, cam.sidewalk, cam.road_half, street.sides, near,
                              min(water_ahead, end_wall[0] if end_wall else math.inf))
    sprite_cam = (cam.f, cam.centre_x, cam.horizon, cam.cam_h)
    for sprite in sorted(sprites, key=lambda sp: -sp[0]):
        _draw_sprite(colour, labels, sprite_cam, sprite, sky.haze, sky.fog_m)

    _draw_occluder(rng, colour, labels, n)
    colour = colour * (1.0 + 0.08 * (rng.random((n, n, 1), dtype=np.float32) - 0.5))
    return np.clip(colour, 0, 255), labels


# ---- latents around the camera --------------------------------------------------------------------------------------
def _sample_view_latents(field: Any, lon: float, lat: float, heading_deg: float, where: str) -> dict[str, np.ndarray]:
    """The latents on a (5, 7) grid: rows = lateral offsets (_SV_SIDE_M), cols = distance ahead (_SV_AHEAD_M)."""
    h = math.radians(heading_deg)
    fwd = np.array([math.sin(h), math.cos(h)])  # east, north
    right = np.array([math.cos(h), -math.sin(h)])
    ahead, across = np.meshgrid(_SV_AHEAD_M, _SV_SIDE_M)  # (5, 7): rows = lateral offsets, cols = distance ahead
    p_lon, p_lat = _offset_lonlat(lon, lat, ahead * fwd[0] + across * right[0], ahead * fwd[1] + across * right[1])
    return _sample_latents(field, p_lon, p_lat, where)


def _latents_at(lat_grid: dict[str, np.ndarray], d: float, x: float) -> dict[str, float]:
    """Latents at d metres ahead and x metres to the right (bilinear on the sampled grid, clamped)."""
    return {k: float(_bilinear(v, _SV_SIDE_M, _SV_AHEAD_M, x, d)) for k, v in lat_grid.items()}


def _water_ahead(centre_water: np.ndarray) -> float:
    """Distance (m) at which water straight ahead ends the street at a quay (inf when there is none)."""
    water_ahead = math.inf
    if centre_water.max() > 0.5:
        j = int(np.argmax(centre_water > 0.5))
        if j == 0:
            water_ahead = 4.0
        else:
            w0, w1 = centre_water[j - 1], centre_water[j]
            water_ahead = float(_SV_AHEAD_M[j - 1] + (0.5 - w0) / (w1 - w0) * (_SV_AHEAD_M[j] - _SV_AHEAD_M[j - 1]))
    return water_ahead


# ---- camera, street and light ---------------------------------------------------------------------------------------
def _draw_camera(rng: np.random.Generator, n: int, near: dict[str, float]) -> _Camera:
    """A panorama cut in four: two views along the street, two across it; wider roads and sidewalks where
    commercial (and nightlife, for sidewalks)."""
    along = rng.random() < 0.5  # a panorama cut in four: two views along the street, two across it
    f = n / 2.0 * rng.uniform(0.95, 1.06)  # ~90 degree field of view
    cam_h = rng.uniform(2.2, 2.8)
    horizon = n * rng.uniform(0.45, 0.53)
    centre_x = n / 2.0 + n * rng.uniform(-0.02, 0.02)
    lanes = 2 + 2 * int(rng.random() < near["commercial"]) + 2 * int(rng.random() < near["commercial"] ** 2)
    road_half = lanes * 3.3 / 2.0
    cam_off = road_half * rng.uniform(0.25, 0.8)  # the camera car drives right of the centre line
    sidewalk = 1.8 + 2.5 * near["commercial"] + 1.5 * near["nightlife"] + rng.uniform(-0.3, 0.6)
    return _Camera(along, f, cam_h, horizon, centre_x, road_half, cam_off, sidewalk)


def _front_yard(rng: np.random.Generator, lat: dict[str, float]) -> float:
    """Setback of the facades from the sidewalk: front yards in residential areas, larger when affluent."""
    homes = lat["residential"] * (1 - lat["commercial"])
    return rng.uniform(0.0, 1.0) + homes * (rng.uniform(1.0, 5.0) + 5.0 * lat["affluence"])


def _lay_out_street(
    rng: np.random.Generator, lat_grid: dict[str, np.ndarray], cam: _Camera, water_ahead: float
) -> _Street:
    """Kerbs, facade planes and facade rows: both sides (and maybe a street end) of an along view, the far side of
    an across view."""
    road_half, cam_off, sidewalk = cam.road_half, cam.cam_off, cam.sidewalk
    if cam.along:
        kerb = (-road_half - cam_off, road_half - cam_off)
        planes = (kerb[0] - sidewalk - _front_yard(rng, _latents_at(lat_grid, 20.0, -20.0)),
                  kerb[1] + sidewalk + _front_yard(rng, _latents_at(lat_grid, 20.0, 20.0)))
        sides = {
            0: _facade_segments(partial(_latents_at, lat_grid, x=-20.0), rng, 0.0, min(_SV_DEPTH_M, water_ahead)),
            1: _facade_segments(partial(_latents_at, lat_grid, x=20.0), rng, 0.0, min(_SV_DEPTH_M, water_ahead)),
        }
        end_wall = None
        if water_ahead == math.inf and rng.random() < 0.55:
            d_end = rng.uniform(90.0, 260.0)
            end_wall = (d_end, _facade_segments(partial(_latents_at, lat_grid, 150.0), rng, -260.0, 260.0))
    else:
        kerb = (-math.inf, road_half + cam_off)  # the camera looks across the road at the far side
        front = min(kerb[1] + sidewalk + _front_yard(rng, _latents_at(lat_grid, 15.0, 0.0)), water_ahead)
        planes = (-math.inf, front)
        d_mid = float(np.clip(front + 5.0, 5.0, 150.0))
        sides = {1: _facade_segments(partial(_latents_at, lat_grid, d_mid), rng, -220.0, 220.0,
                                     water=water_ahead < 40.0)}
        end_wall = None
    return _Street(kerb, planes, sides, end_wall)


def _draw_sky_light(rng: np.random.Generator) -> _Sky:
    """Sun side, sky colours, overcast and the distance scale of the haze."""
    sun_left = rng.random() < 0.5
    sky_top = np.array([62, 122, 196], np.float32) * rng.uniform(0.85, 1.1)
    sky_low = np.array([188, 208, 228], np.float32) * rng.uniform(0.92, 1.06)
    overcast = rng.uniform(0.0, 0.8) ** 2
    haze = sky_low * 0.95
    fog_m = rng.uniform(600.0, 1500.0)
    return _Sky(sun_left, sky_top, sky_low, overcast, haze, fog_m)


# ---- ray casting ----------------------------------------------------------------------------------------------------
def _cast_rays(cam: _Camera, n: int) -> _Rays:
    cols = (np.arange(n, dtype=np.float32) + 0.5 - cam.centre_x) / cam.f
    rows = (cam.horizon - np.arange(n, dtype=np.float32) - 0.5) / cam.f
    A = np.broadcast_to(cols[None, :], (n, n))
    B = np.broadcast_to(rows[:, None], (n, n))
    down = B < -1e-6
    t_ground = np.where(down, cam.cam_h / np.maximum(-B, 1e-6), _FAR)
    return _Rays(cols, rows, A, B, down, t_ground)


def _ray_slopes(rays: _Rays, cand: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical slopes of the rays with flat pixel indices `cand`."""
    return rays.cols[cand % n], rays.rows[cand // n]


def _hit_facade_row(
    colour: np.ndarray, labels: np.ndarray, depth: np.ndarray, seg: dict[str, np.ndarray], cand: np.ndarray,
    s: np.ndarray, z: np.ndarray, t: np.ndarray, light: float, key: int,
) -> None:
    """Shade the candidate rays (flat indices `cand`; position s along the row, height z, distance t) that hit
    a solid part of the facade row `seg`."""
    reach = (z >= 0) & (z < seg["top_max"])  # rays above the tallest thing in the row pass over it
    cand, s, z, t = cand[reach], s[reach], z[reach], t[reach]
    i = _segment_index(seg, s)
    hit = z < _surface_top(seg, i, s)
    rgb, lab = _shade_facade(seg, i[hit], s[hit], z[hit], key, light)
    colour.reshape(-1, 3)[cand[hit]] = rgb
    labels.reshape(-1)[cand[hit]] = lab
    depth.reshape(-1)[cand[hit]] = t[hit]


def _draw_facades(
    colour: np.ndarray, labels: np.ndarray, depth: np.ndarray, rays: _Rays, cam: _Camera, street: _Street,
    sun_left: bool, key: int, n: int,
) -> None:
    """Facade rows (the side planes of an along view, the facing plane of an across view), nearest first."""
    A, t_ground, cam_h, planes = rays.A, rays.t_ground, cam.cam_h, street.planes
    if cam.along:
        for side_id, sign in ((0, -1.0), (1, 1.0)):
            with np.errstate(divide="ignore", invalid="ignore"):
                t_full = np.float32(planes[side_id]) / A
            cand = np.flatnonzero((A * sign > 1e-6) & (t_full < t_ground) & (t_full < _SV_DEPTH_M))
            _, b = _ray_slopes(rays, cand, n)
            t = t_full.ravel()[cand]
            _hit_facade_row(colour, labels, depth, street.sides[side_id], cand, t, cam_h + b * t, t,
                            1.08 if sun_left == (side_id == 0) else 0.8, key)
        if street.end_wall is not None:
            d_end, seg = street.end_wall
            s_full = A * np.float32(d_end)
            cand = np.flatnonzero((t_ground > d_end) & (depth > d_end) & (s_full > planes[0]) & (s_full < planes[1]))
            a, b = _ray_slopes(rays, cand, n)
            _hit_facade_row(colour, labels, depth, seg, cand, a * d_end, cam_h + b * d_end,
                            np.full(len(cand), d_end, np.float32), 0.95, key)
    else:
        front = planes[1]
        cand = np.flatnonzero(np.broadcast_to(t_ground > front, (n, n)))
        a, b = _ray_slopes(rays, cand, n)
        _hit_facade_row(colour, labels, depth, street.sides[1], cand, a * front, cam_h + b * front,
                        np.full(len(cand), front, np.float32), 1.02 if sun_left else 0.86, key)


def _draw_ground(
    colour: np.ndarray, labels: np.ndarray, depth: np.ndarray, rays: _Rays, cam: _Camera, street: _Street,
    water_ahead: float, key: int, sky_low: np.ndarray,
) -> None:
    """Ground where no facade is nearer."""
    g_mask = rays.down & (rays.t_ground < depth)
    tg = rays.t_ground[g_mask]
    ag = rays.A[g_mask] * tg
    if cam.along:
        s_g, c_g = tg, ag
    else:
        s_g, c_g = ag, tg
    rgb, lab = _shade_ground(s_g, c_g, tg, street.kerb, cam.sidewalk, street.sides, cam.along, water_ahead, key,
                             sky_low)
    colour[g_mask] = rgb
    labels[g_mask] = lab
    depth[g_mask] = tg


def _draw_background(
    rng: np.random.Generator, colour: np.ndarray, labels: np.ndarray, depth: np.ndarray, rays: _Rays, cam_h: float,
    far: dict[str, float], sky: _Sky, key: int, n: int,
) -> None:
    """Distant skyline (or a tree line / far bank) from the latents 150 m ahead, and the sky where nothing else was
    hit: a gradient from the horizon up, with clouds and overcast."""
    rest = depth >= _FAR
    t_bg = np.float32(_SV_SKYLINE_M)
    x_bg = rays.A[rest] * t_bg
    z_bg = cam_h + rays.B[rest] * t_bg
    col_i = np.floor(x_bg / 28.0)
    ub = _units(_hash(key + 7, col_i), 3)
    far_built = 1 - (1 - far["residential"]) * (1 - far["commercial"])
    sky_h = (4.0 + 140.0 * far["commercial"] ** 2 + 20.0 * far["residential"]) * (0.25 + 0.75 * ub[0]) * \
        (ub[1] < 0.25 + 0.75 * far_built)
    tree_h = 6.0 + 10.0 * far["green"] * (0.6 + 0.4 * np.abs(np.sin(x_bg / 9.0 + ub[2])))
    is_sky_b = z_bg >= np.maximum(sky_h, tree_h * (far["green"] > 0.25))
    bg = np.where((z_bg < sky_h)[:, None], np.array([120, 128, 140], np.float32) * (0.8 + 0.3 * ub[2])[:, None],
                  np.array([70, 100, 70], np.float32))
    bg = bg * 0.45 + sky.haze * 0.55
    row_t = np.clip(rays.B[rest] * 1.4, 0, 1)[:, None]
    sky_rgb = sky.sky_low * (1 - row_t**0.7) + sky.sky_top * row_t**0.7
    clouds = _to_unit(_noise(rng, n, n, 4.0) + 0.6 * _noise(rng, n, n, 11.0))[rest]
    cloud_a = np.clip((clouds - 0.75 + sky.overcast) * 2.5, 0, 1)[:, None] * 0.85
    sky_rgb = sky_rgb * (1 - cloud_a) + np.float32(232.0) * cloud_a
    sky_rgb = sky_rgb * (1 - sky.overcast) + np.float32(196.0) * sky.overcast
    colour[rest] = np.where(is_sky_b[:, None], sky_rgb, bg)
    labels[rest] = np.where(is_sky_b, LABEL["sky"],
                            np.where(z_bg < sky_h, LABEL["building"], LABEL["vegetation"])).astype(np.uint8)
    depth[rest] = np.where(is_sky_b, _FAR, t_bg)


def _draw_occluder(rng: np.random.Generator, colour: np.ndarray, labels: np.ndarray, n: int) -> None:
    """Random foreground occluder (one photo in five): a lamp post or sign pole."""
    if rng.random() < 0.2:
        x0 = rng.uniform(0, n)
        width = max(1.0, n * rng.uniform(0.012, 0.04))
        top = rng.uniform(0, 0.3) * n
        c0, c1 = int(x0), int(min(n, x0 + width))
        colour[int(top):, c0:c1] = np.array([58, 60, 62], np.float32) * rng.uniform(0.7, 1.3)
        labels[int(top):, c0:c1] = LABEL["occluder"]
