"""Shared numeric helpers of the synthetic-city renderers: argument checks, latent sampling, interpolation, noise and
hashing.

Both modalities check their arguments with the same messages (`_check_*`), convert metres around the camera or tile
centre to lon/lat (`_offset_lonlat`) and query the latent field through `_sample_latents`, which validates what the
field returns. Randomness that must not consume the image's generator (per lot, window, shop...) comes from the
SplitMix64 hash `_hash` turned into uniforms by `_units`; smooth random textures come from `_noise`, value noise
drawn from the generator and resized bilinearly (`_upsample`).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from musecl.synthetic.latents import LATENT_NAMES as LATENTS
from musecl.synthetic.render.palettes import SCENE_CLASSES

METRES_PER_DEG_LAT = 111_320.0
MIN_SIZE_PX = 8


# ---- input checks and field access ----------------------------------------------------------------------------------
def _check_size(size_px: Any, where: str) -> int:
    if isinstance(size_px, bool) or not isinstance(size_px, (int, np.integer)) or size_px < MIN_SIZE_PX:
        raise ValueError(f"{where}: size_px must be an integer >= {MIN_SIZE_PX}, got {size_px!r}")
    return int(size_px)


def _check_rng(rng: Any, where: str) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{where}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), got "
                        f"{type(rng).__name__}")


def _check_lonlat(lon: Any, lat: Any, where: str) -> tuple[float, float]:
    try:
        lon, lat = float(lon), float(lat)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: lon/lat must be numbers, got {lon!r}, {lat!r}") from None
    if not (math.isfinite(lon) and -180.0 <= lon <= 360.0):
        raise ValueError(f"{where}: longitude must be a finite number of degrees, got {lon!r}")
    if not (math.isfinite(lat) and -85.0 <= lat <= 85.0):
        raise ValueError(f"{where}: latitude must be within [-85, 85] degrees (equirectangular approximation), "
                         f"got {lat!r}")
    return lon, lat


def _offset_lonlat(lon0: float, lat0: float, east_m: np.ndarray, north_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local equirectangular approximation: metres east/north of (lon0, lat0) -> lon/lat degrees."""
    lat = lat0 + np.asarray(north_m, dtype=np.float64) / METRES_PER_DEG_LAT
    lon = lon0 + np.asarray(east_m, dtype=np.float64) / (METRES_PER_DEG_LAT * math.cos(math.radians(lat0)))
    return lon, lat


def _sample_latents(field: Any, lon: np.ndarray, lat: np.ndarray, where: str) -> dict[str, np.ndarray]:
    """field.sample(lon, lat), checked: every latent present, same shape as the input, finite, within [0, 1]."""
    if not callable(getattr(field, "sample", None)):
        raise TypeError(f"{where}: field must have a sample(lon, lat) method returning the latents "
                        f"{LATENTS}; got {type(field).__name__}")
    out = field.sample(lon, lat)
    result = {}
    for name in LATENTS:
        if name not in out:
            raise KeyError(f"{where}: field.sample() returned no latent '{name}' (got {sorted(out)}; "
                           f"expected {list(LATENTS)})")
        values = np.asarray(out[name], dtype=np.float32)
        if values.shape != np.shape(lon):
            raise ValueError(f"{where}: field.sample() returned latent '{name}' with shape {values.shape}; expected "
                             f"the shape of the query points {np.shape(lon)}")
        bad = ~np.isfinite(values) | (values < -1e-4) | (values > 1 + 1e-4)
        if bad.any():
            raise ValueError(f"{where}: field.sample() returned latent '{name}' outside [0, 1] "
                             f"(e.g. {values[bad].ravel()[0]!r} at {int(bad.sum())} of {values.size} points)")
        result[name] = np.clip(values, 0.0, 1.0)
    return result


def _apartment_share(residential, commercial):
    """Share of residential buildings that are apartment blocks rather than houses: dense housing and central
    (commercial) locations build upwards."""
    return np.clip((residential + 0.8 * commercial - 0.5) * 2.2, 0.0, 1.0)


# ---- interpolation and noise ----------------------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation matrix between two cell-centred grids spanning the same interval."""
    t = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(t).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (t - i0).astype(np.float32)
    m = np.zeros((n_out, n_in), dtype=np.float32)
    np.add.at(m, (np.arange(n_out), i0), 1 - w)
    np.add.at(m, (np.arange(n_out), i1), w)
    m.setflags(write=False)
    return m


def _upsample(grid: np.ndarray, rows: int, cols: int | None = None) -> np.ndarray:
    """Bilinear resize of a 2-D grid (cell-centred) to rows x cols, as two small matrix products."""
    cols = rows if cols is None else cols
    return _interp_matrix(rows, grid.shape[0]) @ grid.astype(np.float32) @ _interp_matrix(cols, grid.shape[1]).T


def _bilinear(grid: np.ndarray, ys: np.ndarray, xs: np.ndarray, y: float, x: float) -> float:
    """Bilinear interpolation on a small rectilinear grid (rows at ys, columns at xs), clamped at the edges."""
    y = min(max(y, ys[0]), ys[-1])
    x = min(max(x, xs[0]), xs[-1])
    i = min(int(np.searchsorted(ys, y, side="right")) - 1, len(ys) - 2)
    j = min(int(np.searchsorted(xs, x, side="right")) - 1, len(xs) - 2)
    ty = (y - ys[i]) / (ys[i + 1] - ys[i])
    tx = (x - xs[j]) / (xs[j + 1] - xs[j])
    top = grid[i, j] * (1 - tx) + grid[i, j + 1] * tx
    bottom = grid[i + 1, j] * (1 - tx) + grid[i + 1, j + 1] * tx
    return top * (1 - ty) + bottom * ty


def _noise(rng: np.random.Generator, rows: int, cols: int, cells: float) -> np.ndarray:
    """Smooth value noise (about unit variance) with `cells` features across the image width."""
    k = int(np.clip(round(cells), 2, cols))
    kr = int(np.clip(round(cells * rows / cols), 2, rows))
    return _upsample(rng.standard_normal((kr, k), dtype=np.float32), rows, cols)


def _to_unit(z: np.ndarray) -> np.ndarray:
    """Standardise and squash noise to roughly uniform [0, 1] (logistic approximation of the normal CDF)."""
    z = (z - z.mean()) / (z.std() + 1e-6)
    return 1.0 / (1.0 + np.exp(-1.702 * z))


def _mode_pool(labels: np.ndarray, factor: int) -> np.ndarray:
    """Most frequent class in each factor x factor block."""
    n = labels.shape[0] // factor
    blocks = labels.reshape(n, factor, n, factor).transpose(0, 2, 1, 3).reshape(n, n, factor * factor)
    counts = np.stack([(blocks == c).sum(axis=2) for c in range(len(SCENE_CLASSES))], axis=2)
    return counts.argmax(axis=2).astype(np.uint8)


# ---- hashing: randomness that does not consume the image's generator ------------------------------------------------
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (wrapping uint64 arithmetic)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


def _hash(key: int, *parts: np.ndarray) -> np.ndarray:
    """Deterministic 64-bit hash of integer arrays under a per-image key (randomness per lot, window, shop...)."""
    shape = np.broadcast_shapes(*(np.shape(p) for p in parts)) if parts else ()
    h = np.full(shape if shape else (1,), np.uint64(key), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for p in parts:
            h = _mix64(h ^ (np.asarray(p).astype(np.int64).astype(np.uint64) + _GOLDEN))
    return h


def _units(h: np.ndarray, count: int) -> list[np.ndarray]:
    """`count` independent uniforms in [0, 1) from a hash array (16 bits each, re-mixing every 4)."""
    out = []
    for i in range(count):
        if i and i % 4 == 0:
            h = _mix64(h + _GOLDEN)
        out.append(((h >> np.uint64(16 * (i % 4))) & np.uint64(0xFFFF)).astype(np.float32) / 65536.0)
    return out
