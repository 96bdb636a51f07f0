"""Street-view sprites: street trees, vehicles and pedestrians.

`_street_sprites` places them in street coordinates from the latents (trees from the green and affluence of the
facade row behind them, traffic and parked cars from commercial and residential activity, pedestrians from commercial
and nightlife) and returns them in camera coordinates; `_draw_sprite` draws one as perspective boxes and shaded
ellipses (`_sprite_box`, `_sprite_ellipse`) faded into the horizon haze with distance. All placement randomness comes
from the image's generator, in a fixed order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from musecl.synthetic.render.facades import _KIND_WATER, _segment_index
from musecl.synthetic.render.palettes import _CARS, _CLOTHES, LABEL


def _place(along: bool, s: float, c: float) -> tuple[float, float]:
    """Street coordinates (s along, c across) -> camera coordinates (x to the right, d ahead)."""
    return (c, s) if along else (s, c)  # -> (x, d)


def _street_sprites(
    rng: np.random.Generator, along: bool, kerb: tuple[float, float], sidewalk: float, road_half: float,
    sides: dict[int, dict[str, np.ndarray]], near: dict[str, float], max_depth: float,
) -> list[tuple]:
    """Street trees (green of the facade row behind them, affluence), vehicles (commercial + residential activity)
    and pedestrians (commercial, nightlife), placed in street coordinates and returned in camera coordinates as
    (distance ahead, kind, x to the right, size / height / along-flag, colour)."""
    sprites: list[tuple] = []
    limit = max(min(max_depth, 160.0), 10.0)  # below 10 m of street (water just ahead) a few cars stand on the quay

    visible_sides = (0, 1) if along else (1,)
    for side_id in visible_sides:
        seg = sides[side_id]
        kerb_c = kerb[side_id]
        sign = -1.0 if side_id == 0 else 1.0
        start = rng.uniform(3.0, 9.0) if along else rng.uniform(-60.0, -50.0)
        stop = limit if along else 60.0
        spacing = rng.uniform(7.0, 12.0)
        for s in np.arange(start, stop, spacing):
            i = _segment_index(seg, np.array([s]))[0]
            if seg["kind"][i] == _KIND_WATER:
                continue
            p_tree = np.clip(0.03 + 0.85 * seg["green"][i] + 0.1 * seg["affluence"][i], 0, 0.95)
            if rng.random() < p_tree:
                x, d = _place(along, s + rng.uniform(-1, 1), kerb_c + sign * rng.uniform(0.6, 1.2))
                size = rng.uniform(0.8, 1.3)
                leaf = np.array([50, 95, 45], np.float32) * rng.uniform(0.75, 1.2)
                sprites.append((d, "tree", x, size, leaf))
    activity = min(near["commercial"] + 0.5 * near["residential"], 1.3)
    n_cars = min(int(rng.poisson(1.0 + 9.0 * activity)), 25)
    lanes = max(1, int(round(road_half * 2 / 3.3)))
    for _ in range(n_cars):
        lane = int(rng.integers(0, lanes))
        c = kerb[1] - (lane + 0.5) * 3.3  # lanes counted from the right (far, in an across view) kerb
        if along:
            s = rng.uniform(6.0, limit)
        else:
            s = rng.uniform(-50.0, 50.0)
            if c < 3.0:  # too close to the camera
                continue
        x, d = _place(along, s, c)
        colour = _CARS[int(rng.integers(0, len(_CARS)))] * rng.uniform(0.85, 1.1)
        bus = rng.random() < 0.12 * near["commercial"]
        sprites.append((d, "bus" if bus else "car", x, along, colour))
    parked = 4.0 * near["residential"] * (1 - near["commercial"]) + 1.0 * near["commercial"]
    n_parked = min(int(rng.poisson(parked)), 14)
    for _ in range(n_parked):
        side_id = int(rng.integers(0, 2)) if along else 1
        c = kerb[side_id] - (1.2 if side_id == 1 else -1.2)
        s = rng.uniform(6.0, limit) if along else rng.uniform(-40.0, 40.0)
        x, d = _place(along, s, c)
        if d < 3.0:
            continue
        sprites.append((d, "car", x, along, _CARS[int(rng.integers(0, len(_CARS)))] * rng.uniform(0.85, 1.1)))
    n_people = min(int(rng.poisson(0.5 + 5.0 * (0.4 * near["commercial"] + near["nightlife"] ** 1.5))), 30)
    for _ in range(n_people):
        side_id = int(rng.integers(0, 2)) if along else 1
        inward = -1.0 if side_id == 1 else 1.0
        c = kerb[side_id] - inward * rng.uniform(0.4, max(0.5, sidewalk - 0.3))
        s = rng.uniform(4.0, min(limit, 70.0)) if along else rng.uniform(-25.0, 25.0)
        x, d = _place(along, s, c)
        if d < 3.0:
            continue
        sprites.append((d, "person", x, rng.uniform(1.55, 1.9), _CLOTHES[int(rng.integers(0, len(_CLOTHES)))]))
    return sprites


@dataclass(frozen=True)
class _SpriteView:
    """Where one sprite is drawn: the canvas, the camera (focal length and principal point in pixels, horizon row,
    height in metres), the sprite's distance and how much of it the haze hides."""

    colour: np.ndarray
    labels: np.ndarray
    f: float
    cx: float
    horizon: float
    cam_h: float
    d: float
    fade: float
    haze: np.ndarray


def _sprite_box(view: _SpriteView, x0: float, x1: float, z0: float, z1: float, rgb, label: str) -> None:
    """Fill the image rectangle of an upright box from x0 to x1 (metres right) and z0 to z1 (metres up)."""
    f, cx, horizon, cam_h, d, fade = view.f, view.cx, view.horizon, view.cam_h, view.d, view.fade
    n = view.colour.shape[0]
    u0, u1 = cx + f * x0 / d, cx + f * x1 / d
    v0, v1 = horizon - f * (z1 - cam_h) / d, horizon - f * (z0 - cam_h) / d
    c0, c1 = int(max(0, round(u0))), int(min(n, round(u1)))
    r0, r1 = int(max(0, round(v0))), int(min(n, round(v1)))
    if c1 > c0 and r1 > r0:
        view.colour[r0:r1, c0:c1] = np.asarray(rgb, np.float32) * (1 - fade) + view.haze * fade
        view.labels[r0:r1, c0:c1] = LABEL[label]


def _sprite_ellipse(view: _SpriteView, xc: float, zc: float, rx: float, rz: float, rgb, label: str) -> None:
    """Fill a shaded ellipse centred at (xc, zc) metres with radii rx, rz (a tree crown, a head)."""
    f, cx, horizon, cam_h, d, fade = view.f, view.cx, view.horizon, view.cam_h, view.d, view.fade
    n = view.colour.shape[0]
    u0, u1 = cx + f * (xc - rx) / d, cx + f * (xc + rx) / d
    v0, v1 = horizon - f * (zc + rz - cam_h) / d, horizon - f * (zc - rz - cam_h) / d
    c0, c1 = int(max(0, math.floor(u0))), int(min(n, math.ceil(u1)))
    r0, r1 = int(max(0, math.floor(v0))), int(min(n, math.ceil(v1)))
    if c1 <= c0 or r1 <= r0:
        return
    uu = (np.arange(c0, c1) + 0.5 - (u0 + u1) / 2) / max((u1 - u0) / 2, 0.5)
    vv = (np.arange(r0, r1) + 0.5 - (v0 + v1) / 2) / max((v1 - v0) / 2, 0.5)
    rr = uu[None, :] ** 2 + vv[:, None] ** 2
    m = rr < 1.0
    shade = (1.1 - 0.35 * vv[:, None] - 0.15 * np.cos(7 * uu[None, :] + 3 * vv[:, None]))[..., None]
    patch = np.asarray(rgb, np.float32) * shade * (1 - fade) + view.haze * fade
    view.colour[r0:r1, c0:c1][m] = patch[np.broadcast_to(m, rr.shape)]
    view.labels[r0:r1, c0:c1][m] = LABEL[label]


def _draw_sprite(colour: np.ndarray, labels: np.ndarray, cam: tuple[float, float, float, float], sprite: tuple,
                 haze: np.ndarray, fog_m: float) -> None:
    """Draw one sprite (tree, car, bus, person) as boxes/ellipses in perspective, with aerial perspective."""
    f, cx, horizon, cam_h = cam
    d, kind, x = sprite[0], sprite[1], sprite[2]
    fade = 1.0 - math.exp(-d / fog_m)
    view = _SpriteView(colour, labels, f, cx, horizon, cam_h, d, fade, haze)
    if kind == "tree":
        size, leaf = sprite[3], sprite[4]
        _sprite_box(view, x - 0.15 * size, x + 0.15 * size, 0.0, 3.2 * size, (84, 64, 48), "vegetation")
        _sprite_ellipse(view, x, 4.8 * size, 2.3 * size, 2.1 * size, leaf, "vegetation")
    elif kind in ("car", "bus"):
        along, body = sprite[3], sprite[4]
        bus = kind == "bus"
        half = (1.25 if bus else 0.9) if along else (5.5 if bus else 2.2)
        height = 3.1 if bus else 1.45
        _sprite_box(view, x - half, x + half, 0.3, height * 0.65, body, "vehicle")
        _sprite_box(view, x - half * 0.85, x + half * 0.85, height * 0.65, height, body * (0.9 if bus else 1.0),
                    "vehicle")
        _sprite_box(view, x - half * 0.75, x + half * 0.75, height * 0.68, height * 0.95, (40, 48, 58), "vehicle")
        _sprite_box(view, x - half, x - half * 0.6, 0.0, 0.35, (20, 20, 22), "vehicle")
        _sprite_box(view, x + half * 0.6, x + half, 0.0, 0.35, (20, 20, 22), "vehicle")
        if along:  # rear lights
            _sprite_box(view, x - half, x - half * 0.75, 0.75, 0.95, (200, 30, 30), "vehicle")
            _sprite_box(view, x + half * 0.75, x + half, 0.75, 0.95, (200, 30, 30), "vehicle")
    elif kind == "person":
        tall, cloth = sprite[3], sprite[4]
        _sprite_box(view, x - 0.18, x + 0.18, 0.0, tall * 0.5, (45, 45, 55), "person")
        _sprite_box(view, x - 0.24, x + 0.24, tall * 0.5, tall * 0.85, cloth, "person")
        _sprite_ellipse(view, x, tall * 0.92, 0.12, 0.12, (190, 150, 120), "person")
