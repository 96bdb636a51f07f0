"""Image renderers of the synthetic city: remote-sensing tiles (from above) and street-view photos (at street level).

Both draw a cartoon city from the latent fields (`residential`, `commercial`, `green`, `water`, `affluence`,
`nightlife`, each in [0, 1]) at the image's location; docs/synthetic_images.md states how each latent shows up.

* `render_remote_sensing`: a north-up tile of `extent_m` x `extent_m` metres. Per pixel: water (threshold on the
  sampled water field, so shorelines are sharp), tree canopy and grass (green), a quadtree street grid whose blocks
  shrink where the area is built up, buildings on lots (density from residential + commercial, footprint size from
  commercial, roof colours from type and affluence, pools from affluence), shadows, clouds and sensor effects.
* `render_street_view`: a camera on a street looking along `heading_deg` (compass degrees). A per-pixel ray caster
  intersects the ground, the two rows of facades (or, in a view across the street, the facing row), an optional
  street end and a distant skyline; facades come from the field sampled 5-150 m ahead and 20-60 m to the sides, so
  the heading matters wherever the field varies in space. Sprites add trees, vehicles and pedestrians.

Every image gets acquisition noise (exposure, white balance, gamma, haze, blur, pixel noise, JPEG artefacts, random
occluders), so the latents are visible but not trivially decodable. All randomness comes from the `rng` argument.
The `*_labelled` variants also return the per-pixel scene class (SCENE_CLASSES) before noise; the tests and docs use it.
"""
from __future__ import annotations

import io
import math
from functools import lru_cache
from typing import Any, Callable

import numpy as np
from PIL import Image
from scipy import ndimage

LATENTS = ("residential", "commercial", "green", "water", "affluence", "nightlife")
METRES_PER_DEG_LAT = 111_320.0
MIN_SIZE_PX = 8

SCENE_CLASSES = (
    "ground", "road", "sidewalk", "building", "vegetation", "water", "pool", "sky", "vehicle", "sign", "person",
    "occluder",
)
LABEL = {name: i for i, name in enumerate(SCENE_CLASSES)}

# ---- palettes (RGB); tiers are chosen by affluence ------------------------------------------------------------------
_HOUSE_ROOF = np.array([
    # poor: weathered, corrugated, rust
    [[112, 102, 94], [128, 121, 112], [122, 78, 58], [96, 88, 82], [138, 124, 104], [106, 97, 88]],
    # standard: clay tiles
    [[168, 78, 58], [188, 106, 66], [130, 84, 63], [152, 63, 52], [100, 96, 98], [178, 122, 86]],
    # premium: light and varied
    [[208, 192, 170], [188, 188, 193], [122, 142, 164], [148, 172, 150], [218, 208, 192], [196, 104, 82]],
], dtype=np.float32)
_APARTMENT_ROOF = np.array([[172, 168, 160], [150, 150, 148], [188, 178, 162], [132, 128, 124], [162, 152, 142],
                            [200, 196, 188]], dtype=np.float32)
_COMMERCIAL_ROOF = np.array([
    [[140, 140, 138], [82, 84, 90], [120, 118, 112], [160, 158, 150]],  # concrete, bitumen
    [[206, 206, 202], [112, 130, 150], [104, 128, 132], [178, 184, 190]],  # white membrane, glass
], dtype=np.float32)
_RESIDENTIAL_WALL = np.array([
    [[150, 148, 140], [128, 80, 62], [160, 146, 122], [118, 116, 110], [140, 120, 100], [105, 100, 95]],
    [[166, 86, 62], [186, 112, 80], [210, 195, 165], [190, 175, 150], [176, 166, 156], [200, 180, 140]],
    [[234, 230, 220], [226, 210, 180], [200, 212, 222], [222, 200, 190], [210, 216, 196], [242, 236, 226]],
], dtype=np.float32)
_COMMERCIAL_WALL = np.array([
    [[170, 165, 155], [150, 145, 140], [190, 182, 170], [130, 128, 125]],  # stone, concrete
    [[82, 112, 142], [96, 132, 152], [72, 96, 112], [122, 142, 162]],  # glass curtain walls
], dtype=np.float32)
_SIGN_SHOP = np.array([[222, 40, 40], [250, 200, 30], [30, 90, 200], [245, 245, 240], [30, 150, 70], [240, 120, 20]],
                      dtype=np.float32)
_SIGN_NEON = np.array([[255, 40, 180], [40, 230, 255], [170, 60, 255], [255, 60, 90], [150, 255, 60], [255, 140, 255]],
                      dtype=np.float32)
_CARS = np.array([[200, 200, 205], [30, 30, 35], [150, 20, 25], [40, 60, 120], [222, 222, 216], [110, 110, 115],
                  [182, 150, 40], [70, 92, 70]], dtype=np.float32)
_SHOP_LIT = np.array([210, 180, 130], np.float32)
_HEDGE = np.array([60, 98, 50], np.float32)
_CLOTHES = np.array([[40, 40, 45], [30, 50, 100], [150, 30, 40], [200, 200, 195], [90, 70, 50], [60, 110, 70],
                     [200, 150, 40]], dtype=np.float32)


# ---- public API -----------------------------------------------------------------------------------------------------
def render_remote_sensing(
    field: Any, center_lon: float, center_lat: float, size_px: int, extent_m: float, rng: np.random.Generator
) -> np.ndarray:
    """A (size_px, size_px, 3) uint8 satellite tile, north up, covering extent_m x extent_m metres around the centre."""
    return render_remote_sensing_labelled(field, center_lon, center_lat, size_px, extent_m, rng)[0]


def render_street_view(
    field: Any, lon: float, lat: float, heading_deg: float, size_px: int, rng: np.random.Generator
) -> np.ndarray:
    """A (size_px, size_px, 3) uint8 street-level photo taken at lon/lat looking along heading_deg (clockwise from
    north), 90 degree field of view."""
    return render_street_view_labelled(field, lon, lat, heading_deg, size_px, rng)[0]


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


# ---- small numeric helpers ------------------------------------------------------------------------------------------
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


def _noise(rng: np.random.Generator, rows: int, cols: int, cells: float) -> np.ndarray:
    """Smooth value noise (about unit variance) with `cells` features across the image width."""
    k = int(np.clip(round(cells), 2, cols))
    kr = int(np.clip(round(cells * rows / cols), 2, rows))
    return _upsample(rng.standard_normal((kr, k), dtype=np.float32), rows, cols)


def _to_unit(z: np.ndarray) -> np.ndarray:
    """Standardise and squash noise to roughly uniform [0, 1] (logistic approximation of the normal CDF)."""
    z = (z - z.mean()) / (z.std() + 1e-6)
    return 1.0 / (1.0 + np.exp(-1.702 * z))


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


def _pick(palette: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Palette rows chosen by uniforms u."""
    return palette[np.minimum((u * len(palette)).astype(np.int64), len(palette) - 1)]


def _mode_pool(labels: np.ndarray, factor: int) -> np.ndarray:
    """Most frequent class in each factor x factor block."""
    n = labels.shape[0] // factor
    blocks = labels.reshape(n, factor, n, factor).transpose(0, 2, 1, 3).reshape(n, n, factor * factor)
    counts = np.stack([(blocks == c).sum(axis=2) for c in range(len(SCENE_CLASSES))], axis=2)
    return counts.argmax(axis=2).astype(np.uint8)


def _acquisition(
    rgb: np.ndarray,
    rng: np.random.Generator,
    blur_px: tuple[float, float],
    noise_dn: tuple[float, float],
    jpeg_quality: tuple[int, int],
    haze: tuple[float, float],
) -> np.ndarray:
    """Camera/sensor effects on a float RGB image (0-255): exposure, white balance, haze, blur, noise, gamma, JPEG."""
    gain = rng.uniform(0.82, 1.15)
    balance = rng.uniform(0.93, 1.07, 3).astype(np.float32)
    gamma = rng.uniform(0.88, 1.14)
    haze_w = rng.uniform(*haze)
    haze_colour = np.array([198, 204, 214], dtype=np.float32) * rng.uniform(0.9, 1.1)
    sigma = rng.uniform(*blur_px)
    noise_sd = rng.uniform(*noise_dn)
    quality = int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1))
    x = rgb.astype(np.float32) * (balance * np.float32(gain * (1.0 - haze_w))) + haze_colour * np.float32(haze_w)
    x = ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest", truncate=2.5)
    # Pixel noise: uniform with the drawn standard deviation (several times cheaper to draw than Gaussian noise).
    x += (rng.random(x.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(noise_sd * math.sqrt(12.0))
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
    img = Image.fromarray(lut[np.clip(x + 0.5, 0, 255).astype(np.uint8)])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.uint8).copy()


# ---- remote sensing -------------------------------------------------------------------------------------------------
_RS_TARGET_M_PER_PX = 4.0  # internal drawing resolution (about the paper's 3.6 m imagery)
_RS_MAX_SUPERSAMPLE = 4
_RS_LATENT_GRID = 64  # latents are sampled on at most 64 x 64 points per tile and interpolated to pixels
_BLOCK_M = (320.0, 160.0, 80.0, 40.0)  # street-grid quadtree: block side at levels 0..3
_ROAD_HALF_M = (9.0, 6.5, 5.0, 3.8)  # half road width of a street that first appears at that level
_SIDEWALK_M = 2.5
_TREE_HEIGHT_M = 8.0
_HOUSES, _APARTMENTS, _COMMERCIAL = 0, 1, 2
# ground cover colours: park grass, lawn (poor), lawn affluence shift, paving, bare soil
_GROUND_COVER = np.array([[104, 146, 72], [150, 140, 98], [-52, 8, -26], [138, 137, 133], [158, 146, 112]],
                         dtype=np.float32)
_CANOPY_DARK = np.array([44, 84, 38], np.float32)
_CANOPY_LIGHT = np.array([34, 40, 20], np.float32)
_WATER_SHALLOW = np.array([64, 102, 112], np.float32)
_WATER_DEEP = np.array([28, 58, 92], np.float32)


def _apartment_share(residential, commercial):
    """Share of residential buildings that are apartment blocks rather than houses: dense housing and central
    (commercial) locations build upwards."""
    return np.clip((residential + 0.8 * commercial - 0.5) * 2.2, 0.0, 1.0)


def _street_grid_orientation(lon: float, lat: float) -> float:
    """Street-grid angle (rad, [0, pi/2]) varying smoothly across the city on a ~2 km scale."""
    x = lon * METRES_PER_DEG_LAT / 1900.0
    y = lat * METRES_PER_DEG_LAT / 2600.0
    return 0.25 * math.pi * (1.0 + math.sin(x + 0.7 * math.cos(y)) * math.cos(0.8 * y + 0.3))


def _draw_remote_sensing(
    field: Any, lon0: float, lat0: float, n: int, extent_m: float, rng: np.random.Generator, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """The tile before acquisition effects: float RGB (n, n, 3) and the scene-class map."""
    mpp = extent_m / n
    key = int(rng.integers(0, 2**62))
    theta = _street_grid_orientation(lon0, lat0) + rng.normal(0.0, 0.04)
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    aspect = rng.uniform(1.0, 2.2)  # blocks are this much longer along v than along u
    off_u, off_v = rng.uniform(0, _BLOCK_M[0]), rng.uniform(0, _BLOCK_M[0] * aspect)

    # Pixel centres in metres east/north of the tile centre (row 0 is north), and in the street-grid frame (u, v).
    c = ((np.arange(n) + 0.5) / n - 0.5) * extent_m
    east, north = c[None, :], -c[:, None]
    U = east * cos_t + north * sin_t + off_u
    V = -east * sin_t + north * cos_t + off_v

    # Blocks of every quadtree level that touch the tile: their centres are sampled with the latent grid in one call.
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
        du, dv = uc.ravel() - off_u, vc.ravel() - off_v
        centres_e.append(du * cos_t - dv * sin_t)
        centres_n.append(du * sin_t + dv * cos_t)
        centre_level.append(np.full(ni * nj, level))
        levels.append((su, sv, i0, j0, nj, offset))
        offset += ni * nj
    lon, lat = _offset_lonlat(lon0, lat0, np.concatenate(centres_e), np.concatenate(centres_n))
    sampled = _sample_latents(field, lon, lat, where)
    pix = {k: _upsample(v[: g * g].reshape(g, g), n) for k, v in sampled.items()}
    blk = {k: v[g * g:] for k, v in sampled.items()}
    b_res, b_com, b_aff = blk["residential"], blk["commercial"], blk["affluence"]
    b_built = 1.0 - (1.0 - b_res) * (1.0 - b_com)

    # Quadtree: a block splits in four (new streets) when it is built up enough (thresholds jittered per block, so
    # the grid is not perfectly regular); the leaf block gives the local street grid and is the unit of land use.
    block_level = np.concatenate(centre_level)
    hb = _units(_hash(key, np.arange(offset)), 3)
    built_j = b_built + 0.16 * (hb[2] - 0.5)
    splits = np.where(block_level == 0, built_j > 0.12,
                      np.where(block_level == 1, built_j > 0.34,
                               np.where(block_level == 2, (b_res > 0.6) & (built_j > 0.8) & (b_com < 0.4), False)))
    splits &= blk["water"] < 0.5
    idx = [((np.floor(U / su) - i0) * nj + (np.floor(V / sv) - j0)).astype(np.int32) + o
           for su, sv, i0, j0, nj, o in levels]
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

    # Land use per block: commercial share -> commercial block; dense residential -> apartment slabs; else houses.
    b_kind = np.where(hb[0] < b_com / (b_res + b_com + 1e-6), _COMMERCIAL,
                      np.where(hb[1] < _apartment_share(b_res, b_com), _APARTMENTS, _HOUSES))
    b_frontage = np.where(b_kind == _COMMERCIAL, 28.0 + 42.0 * b_com,
                          np.where(b_kind == _APARTMENTS, 34.0, 14.0 + 10.0 * b_aff)).astype(np.float32)
    kind = b_kind[leaf_idx]

    # Lots: the block interior (inside sidewalks) cut into a grid of lots; houses in two rows facing the streets.
    inner_u0, inner_v0 = hw[0] + _SIDEWALK_M, hw[2] + _SIDEWALK_M
    len_u = np.maximum(side_u - hw[1] - _SIDEWALK_M - inner_u0, 1e-3)
    len_v = np.maximum(side_v - hw[3] - _SIDEWALK_M - inner_v0, 1e-3)
    pu, pv = lu - inner_u0, lv - inner_v0
    inside = (pu >= 0) & (pu < len_u) & (pv >= 0) & (pv < len_v)
    frontage = b_frontage[leaf_idx]
    n_u = np.maximum(1.0, np.floor(len_u / frontage))
    n_v = np.where(kind == _HOUSES, np.where(len_v >= 24.0, 2.0, 1.0),
                   np.maximum(1.0, np.floor(len_v / np.where(kind == _COMMERCIAL, frontage, 40.0))))
    lot_w, lot_d = len_u / n_u, len_v / n_v
    iu = np.clip(np.floor(pu / lot_w), 0, n_u - 1)
    iv = np.clip(np.floor(pv / lot_d), 0, n_v - 1)

    # Per lot (unique over the tile's pixels): presence, footprint, height and roof colour; then gathered per pixel.
    flat = np.flatnonzero(inside)
    lot_key = (leaf_idx.ravel()[flat].astype(np.int64) * 256 + iu.ravel()[flat].astype(np.int64)) * 256 \
        + iv.ravel()[flat].astype(np.int64)
    lots, first, inverse = np.unique(lot_key, return_index=True, return_inverse=True)
    at_first = flat[first]
    L_leaf = lots // 65536
    L_kind = b_kind[L_leaf]
    L_house, L_comm = L_kind == _HOUSES, L_kind == _COMMERCIAL
    L_res, L_com, L_aff, L_built = b_res[L_leaf], b_com[L_leaf], b_aff[L_leaf], b_built[L_leaf]
    L_w, L_d = lot_w.ravel()[at_first], lot_d.ravel()[at_first]
    L_faces_low = (iv.ravel()[at_first] == 0) | (n_v.ravel()[at_first] == 1)
    ul = _units(_hash(key + 1, lots), 12)
    L_present = (ul[0] < np.clip(0.04 + 1.0 * L_built, 0, 0.96)) & (blk["water"][L_leaf] < 0.45)
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

    # Per pixel inside lots: position relative to the footprint.
    xb = (pu.ravel()[flat] - iu.ravel()[flat] * L_w[inverse]) - L_u0[inverse]
    xv = pv.ravel()[flat] - iv.ravel()[flat] * L_d[inverse]
    yb = xv - L_v0[inverse]
    bw, bd = L_bw[inverse], L_bd[inverse]
    present = L_present[inverse]
    on_roof = present & (xb >= 0) & (xb < bw) & (yb >= 0) & (yb < bd)
    house = L_house[inverse]
    # Pitched house roofs: the two halves either side of the ridge catch the sun differently; edges are darker;
    # some flat roofs carry rooftop plant.
    ridge_side = np.where(bw >= bd, yb < bd / 2, xb < bw / 2)
    shade = np.where(house, np.where(ridge_side, 1.08, 0.84), 1.0) * \
        np.where(np.minimum(np.minimum(xb, bw - xb), np.minimum(yb, bd - yb)) < 0.9, 0.8, 1.0)
    plant = L_plant[inverse] & (np.mod(xb, 11.0) < 2.6) & (np.mod(yb, 13.0) < 2.4)
    roof_rgb = np.where(plant[:, None], np.float32(200.0), L_roof[inverse] * shade[:, None])
    # Pools in the back yards of affluent houses.
    behind = np.where(L_faces_low[inverse], xv - (L_v0[inverse] + bd + 2.5), L_v0[inverse] - 2.5 - xv)
    in_pool = (present & L_pool[inverse] & (behind >= 0) & (behind < 7.0) & (xb >= 1.0) & (xb < 5.5 + 2.0 * b_aff[
        L_leaf[inverse]]) & ~on_roof)

    building = np.zeros(n * n, dtype=bool)
    building[flat[on_roof]] = True
    building = building.reshape(n, n)
    pool = np.zeros(n * n, dtype=bool)
    pool[flat[in_pool]] = True
    pool = pool.reshape(n, n)
    heights = np.zeros(n * n, dtype=np.float32)
    heights[flat[on_roof]] = L_height[inverse[on_roof]]

    # Ground cover: grass in green areas, lawns (greener when affluent) with residential, paving with commercial,
    # bare soil elsewhere; parking lots on empty commercial lots; patchy texture.
    r_p, c_p, g_p, w_p, a_p = (pix[k] for k in ("residential", "commercial", "green", "water", "affluence"))
    built_p = 1.0 - (1.0 - r_p) * (1.0 - c_p)
    w_lawn = r_p * (1 - c_p)
    weights = np.stack([g_p, w_lawn, w_lawn * a_p, c_p * built_p, 0.6 * (1 - built_p) * (1 - g_p) + 0.05], axis=-1)
    ground = (weights @ _GROUND_COVER) / (weights.sum(axis=-1) - weights[..., 2])[..., None]
    patch = _noise(rng, n, n, extent_m / 60.0)
    ground *= (1.0 + 0.06 * patch)[..., None]
    parking = (kind == _COMMERCIAL) & inside
    parking.ravel()[flat[present]] = False
    ground[parking] = 128.0

    # Tree canopy: a fine noise thresholded at a cover fraction set by green (plus garden trees when affluent).
    crowns = _noise(rng, n, n, extent_m / 7.0) + 0.8 * _noise(rng, n, n, extent_m / 22.0) \
        + 0.7 * _noise(rng, n, n, extent_m / 90.0)
    cover = np.clip(1.05 * g_p + 0.14 * a_p * r_p - 0.03, 0.0, 0.96)
    canopy_u = _to_unit(crowns)
    tree = (canopy_u < cover) & (road_cov < 0.5)
    img = ground
    img[tree] = _CANOPY_DARK + (canopy_u[tree] / np.maximum(cover[tree], 1e-3))[:, None] * _CANOPY_LIGHT
    labels = np.where(tree, LABEL["vegetation"], LABEL["ground"]).astype(np.uint8)
    sidewalk = (edge >= 0) & (edge < _SIDEWALK_M) & (b_built[leaf_idx] > 0.15)
    img[sidewalk] = 172.0
    labels[sidewalk] = LABEL["sidewalk"]
    on_road = road_cov > 0
    cov = road_cov[on_road][:, None]
    img[on_road] = img[on_road] * (1 - cov) + (72.0 + 10.0 * patch[on_road])[:, None] * cov
    labels[road_cov >= 0.5] = LABEL["road"]
    img.reshape(-1, 3)[flat[on_roof]] = roof_rgb[on_roof]
    labels[building] = LABEL["building"]
    img[pool] = (72.0, 188.0, 210.0)
    labels[pool] = LABEL["pool"]

    # Shadows cast away from the sun by buildings and trees.
    heights[tree.ravel() & (heights == 0)] = _TREE_HEIGHT_M
    azimuth = rng.uniform(0, 2 * math.pi)
    tan_elev = math.tan(rng.uniform(math.radians(35), math.radians(65)))
    shadow = _cast_shadows(heights.reshape(n, n), mpp, azimuth, tan_elev)
    img[shadow] *= 0.58

    # Water overrides everything but the major roads (bridges); a sharp shoreline from a threshold on the field.
    shore = _noise(rng, n, n, extent_m / 40.0)
    ripple = _noise(rng, n, n, extent_m / 12.0)
    water = ((w_p + 0.025 * shore) > 0.5) & ~(major & (road_cov >= 0.5))
    depth = np.clip((w_p[water] - 0.5) * 6.0, 0.0, 1.0)[:, None]
    img[water] = _WATER_SHALLOW * (1 - depth) + _WATER_DEEP * depth + 5.0 * ripple[water][:, None]
    labels[water] = LABEL["water"]

    # Texture at pixel scale (roof materials, grass, asphalt grain).
    img *= 1.0 + 0.1 * (rng.random((n, n, 1), dtype=np.float32) - 0.5)

    # Occasional clouds.
    if rng.random() < 0.15:
        cloud = _to_unit(_noise(rng, n, n, 3.0) + 0.5 * _noise(rng, n, n, 9.0))
        alpha = np.clip((cloud - rng.uniform(0.45, 0.85)) * 5.0, 0.0, 0.92)
        img = img * (1 - alpha[..., None]) + 238.0 * alpha[..., None]
        labels[alpha > 0.5] = LABEL["occluder"]
    return np.clip(img, 0, 255), labels


def _line_level(k: np.ndarray, leaf: np.ndarray) -> np.ndarray:
    """Quadtree level at which the grid line with index k (in units of the leaf block side) first appears: a line
    of a level-L block that is also a multiple of 2^t leaf sides is a line of level L - t."""
    trailing = ((k & 1) == 0).astype(np.int32) + ((k & 3) == 0) + ((k & 7) == 0)
    return leaf - np.minimum(trailing, leaf)


def _cast_shadows(heights: np.ndarray, mpp: float, azimuth: float, tan_elev: float) -> np.ndarray:
    """Pixels in the shadow of something taller: march the height map away from the sun."""
    n = heights.shape[0]
    max_len = float(heights.max()) / tan_elev / mpp
    steps = int(min(math.ceil(max_len), n // 3))
    if steps < 1:
        return np.zeros_like(heights, dtype=bool)
    # Shadows fall away from the sun: east-west component along columns, north-south along rows (row 0 north).
    dx, dy = -math.sin(azimuth), math.cos(azimuth)
    top = np.zeros_like(heights)
    seen = set()
    for s in range(1, steps + 1):
        oy, ox = int(round(s * dy)), int(round(s * dx))
        if (oy, ox) in seen or abs(oy) >= n or abs(ox) >= n:
            continue
        seen.add((oy, ox))
        drop = np.float32(s * mpp * tan_elev)
        src = heights[max(0, -oy): n - max(0, oy), max(0, -ox): n - max(0, ox)]
        dst = top[max(0, oy): n - max(0, -oy), max(0, ox): n - max(0, -ox)]
        np.maximum(dst, src - drop, out=dst)
    return top > heights + 0.5


# ---- street view ----------------------------------------------------------------------------------------------------
_SV_AHEAD_M = np.array([5.0, 15.0, 30.0, 50.0, 75.0, 105.0, 150.0])  # where the field is sampled along the heading
_SV_SIDE_M = np.array([-60.0, -20.0, 0.0, 20.0, 60.0])  # ... and across it (negative = left)
_SV_DEPTH_M = 420.0  # facades are generated this far along the street
_SV_SKYLINE_M = 800.0  # distance of the hazy background skyline
_FAR = np.float32(1e9)

_KIND_VACANT, _KIND_BUILDING, _KIND_TREES, _KIND_WATER = 0, 1, 2, 3


def _draw_street_view(
    field: Any, lon: float, lat: float, heading_deg: float, n: int, rng: np.random.Generator, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """The photo before acquisition effects: float RGB (n, n, 3) and the scene-class map."""
    key = int(rng.integers(0, 2**62))
    h = math.radians(heading_deg)
    fwd = np.array([math.sin(h), math.cos(h)])  # east, north
    right = np.array([math.cos(h), -math.sin(h)])
    ahead, across = np.meshgrid(_SV_AHEAD_M, _SV_SIDE_M)  # (5, 7): rows = lateral offsets, cols = distance ahead
    p_lon, p_lat = _offset_lonlat(lon, lat, ahead * fwd[0] + across * right[0], ahead * fwd[1] + across * right[1])
    lat_grid = _sample_latents(field, p_lon, p_lat, where)

    def latents_at(d: float, x: float) -> dict[str, float]:
        """Latents at d metres ahead and x metres to the right (bilinear on the sampled grid, clamped)."""
        return {k: float(_bilinear(v, _SV_SIDE_M, _SV_AHEAD_M, x, d)) for k, v in lat_grid.items()}

    near = {k: float(v[1:4, :2].mean()) for k, v in lat_grid.items()}  # around the camera
    far = latents_at(150.0, 0.0)

    # ---- camera and street geometry
    along = rng.random() < 0.5  # a panorama cut in four: two views along the street, two across it
    f = n / 2.0 * rng.uniform(0.95, 1.06)  # ~90 degree field of view
    cam_h = rng.uniform(2.2, 2.8)
    horizon = n * rng.uniform(0.45, 0.53)
    centre_x = n / 2.0 + n * rng.uniform(-0.02, 0.02)
    lanes = 2 + 2 * int(rng.random() < near["commercial"]) + 2 * int(rng.random() < near["commercial"] ** 2)
    road_half = lanes * 3.3 / 2.0
    cam_off = road_half * rng.uniform(0.25, 0.8)  # the camera car drives right of the centre line
    sidewalk = 1.8 + 2.5 * near["commercial"] + 1.5 * near["nightlife"] + rng.uniform(-0.3, 0.6)

    def front_yard(lat: dict[str, float]) -> float:
        """Setback of the facades from the sidewalk: front yards in residential areas, larger when affluent."""
        homes = lat["residential"] * (1 - lat["commercial"])
        return rng.uniform(0.0, 1.0) + homes * (rng.uniform(1.0, 5.0) + 5.0 * lat["affluence"])

    # Water straight ahead ends the street at a quay.
    centre_water = lat_grid["water"][2]
    water_ahead = math.inf
    if centre_water.max() > 0.5:
        j = int(np.argmax(centre_water > 0.5))
        if j == 0:
            water_ahead = 4.0
        else:
            w0, w1 = centre_water[j - 1], centre_water[j]
            water_ahead = float(_SV_AHEAD_M[j - 1] + (0.5 - w0) / (w1 - w0) * (_SV_AHEAD_M[j] - _SV_AHEAD_M[j - 1]))

    # Street frame: s runs along the street, c across it (c > 0: the side the across-view camera faces).
    if along:
        kerb = (-road_half - cam_off, road_half - cam_off)
        planes = (kerb[0] - sidewalk - front_yard(latents_at(20.0, -20.0)),
                  kerb[1] + sidewalk + front_yard(latents_at(20.0, 20.0)))
        sides = {
            0: _facade_segments(lambda s: latents_at(s, -20.0), rng, 0.0, min(_SV_DEPTH_M, water_ahead)),
            1: _facade_segments(lambda s: latents_at(s, 20.0), rng, 0.0, min(_SV_DEPTH_M, water_ahead)),
        }
        end_wall = None
        if water_ahead == math.inf and rng.random() < 0.55:
            d_end = rng.uniform(90.0, 260.0)
            end_wall = (d_end, _facade_segments(lambda s: latents_at(150.0, s), rng, -260.0, 260.0))
    else:
        kerb = (-math.inf, road_half + cam_off)  # the camera looks across the road at the far side
        front = min(kerb[1] + sidewalk + front_yard(latents_at(15.0, 0.0)), water_ahead)
        planes = (-math.inf, front)
        d_mid = float(np.clip(front + 5.0, 5.0, 150.0))
        sides = {1: _facade_segments(lambda s: latents_at(d_mid, s), rng, -220.0, 220.0,
                                     water=water_ahead < 40.0)}
        end_wall = None

    sun_left = rng.random() < 0.5
    sky_top = np.array([62, 122, 196], np.float32) * rng.uniform(0.85, 1.1)
    sky_low = np.array([188, 208, 228], np.float32) * rng.uniform(0.92, 1.06)
    overcast = rng.uniform(0.0, 0.8) ** 2
    haze = sky_low * 0.95
    fog_m = rng.uniform(600.0, 1500.0)

    # ---- per-pixel rays: a = horizontal slope (right +), b = vertical slope (up +)
    cols = (np.arange(n, dtype=np.float32) + 0.5 - centre_x) / f
    rows = (horizon - np.arange(n, dtype=np.float32) - 0.5) / f
    A = np.broadcast_to(cols[None, :], (n, n))
    B = np.broadcast_to(rows[:, None], (n, n))
    down = B < -1e-6
    t_ground = np.where(down, cam_h / np.maximum(-B, 1e-6), _FAR)

    colour = np.zeros((n, n, 3), np.float32)
    labels = np.full((n, n), LABEL["sky"], np.uint8)
    depth = np.full((n, n), _FAR, np.float32)

    flat_colour, flat_labels, flat_depth = colour.reshape(-1, 3), labels.reshape(-1), depth.reshape(-1)

    def facade_row(seg, cand, s, z, t, light):
        """Shade the candidate rays (flat indices `cand`; position s along the row, height z, distance t) that hit
        a solid part of the facade row `seg`."""
        reach = (z >= 0) & (z < seg["top_max"])  # rays above the tallest thing in the row pass over it
        cand, s, z, t = cand[reach], s[reach], z[reach], t[reach]
        i = _segment_index(seg, s)
        hit = z < _surface_top(seg, i, s)
        rgb, lab = _shade_facade(seg, i[hit], s[hit], z[hit], key, light)
        flat_colour[cand[hit]] = rgb
        flat_labels[cand[hit]] = lab
        flat_depth[cand[hit]] = t[hit]

    def rays(cand):
        return cols[cand % n], rows[cand // n]

    # Facade rows (the side planes of an along view, the facing plane of an across view), nearest first.
    if along:
        for side_id, sign in ((0, -1.0), (1, 1.0)):
            with np.errstate(divide="ignore", invalid="ignore"):
                t_full = np.float32(planes[side_id]) / A
            cand = np.flatnonzero((A * sign > 1e-6) & (t_full < t_ground) & (t_full < _SV_DEPTH_M))
            _, b = rays(cand)
            t = t_full.ravel()[cand]
            facade_row(sides[side_id], cand, t, cam_h + b * t, t, 1.08 if sun_left == (side_id == 0) else 0.8)
        if end_wall is not None:
            d_end, seg = end_wall
            s_full = A * np.float32(d_end)
            cand = np.flatnonzero((t_ground > d_end) & (depth > d_end) & (s_full > planes[0]) & (s_full < planes[1]))
            a, b = rays(cand)
            facade_row(seg, cand, a * d_end, cam_h + b * d_end, np.full(len(cand), d_end, np.float32), 0.95)
    else:
        front = planes[1]
        cand = np.flatnonzero(np.broadcast_to(t_ground > front, (n, n)))
        a, b = rays(cand)
        facade_row(sides[1], cand, a * front, cam_h + b * front, np.full(len(cand), front, np.float32),
                   1.02 if sun_left else 0.86)

    # Ground where no facade is nearer.
    g_mask = down & (t_ground < depth)
    tg = t_ground[g_mask]
    ag = A[g_mask] * tg
    if along:
        s_g, c_g = tg, ag
    else:
        s_g, c_g = ag, tg
    rgb, lab = _shade_ground(s_g, c_g, tg, kerb, sidewalk, sides, along, water_ahead, key, sky_low)
    colour[g_mask] = rgb
    labels[g_mask] = lab
    depth[g_mask] = tg

    # Distant skyline (or a tree line / far bank) and the sky where nothing else was hit.
    rest = depth >= _FAR
    t_bg = np.float32(_SV_SKYLINE_M)
    x_bg = A[rest] * t_bg
    z_bg = cam_h + B[rest] * t_bg
    col_i = np.floor(x_bg / 28.0)
    ub = _units(_hash(key + 7, col_i), 3)
    far_built = 1 - (1 - far["residential"]) * (1 - far["commercial"])
    sky_h = (4.0 + 140.0 * far["commercial"] ** 2 + 20.0 * far["residential"]) * (0.25 + 0.75 * ub[0]) * \
        (ub[1] < 0.25 + 0.75 * far_built)
    tree_h = 6.0 + 10.0 * far["green"] * (0.6 + 0.4 * np.abs(np.sin(x_bg / 9.0 + ub[2])))
    is_sky_b = z_bg >= np.maximum(sky_h, tree_h * (far["green"] > 0.25))
    bg = np.where((z_bg < sky_h)[:, None], np.array([120, 128, 140], np.float32) * (0.8 + 0.3 * ub[2])[:, None],
                  np.array([70, 100, 70], np.float32))
    bg = bg * 0.45 + haze * 0.55
    # Sky: gradient from the horizon up, with clouds.
    row_t = np.clip(B[rest] * 1.4, 0, 1)[:, None]
    sky = sky_low * (1 - row_t**0.7) + sky_top * row_t**0.7
    clouds = _to_unit(_noise(rng, n, n, 4.0) + 0.6 * _noise(rng, n, n, 11.0))[rest]
    cloud_a = np.clip((clouds - 0.75 + overcast) * 2.5, 0, 1)[:, None] * 0.85
    sky = sky * (1 - cloud_a) + np.float32(232.0) * cloud_a
    sky = sky * (1 - overcast) + np.float32(196.0) * overcast
    colour[rest] = np.where(is_sky_b[:, None], sky, bg)
    labels[rest] = np.where(is_sky_b, LABEL["sky"],
                            np.where(z_bg < sky_h, LABEL["building"], LABEL["vegetation"])).astype(np.uint8)
    depth[rest] = np.where(is_sky_b, _FAR, t_bg)

    # Aerial perspective: far things fade into the horizon haze.
    fade = (1.0 - np.exp(-np.minimum(depth, 5000.0) / fog_m))[..., None] * (depth < _FAR)[..., None]
    colour = colour * (1 - fade) + haze * fade

    # Sprites (trees, vehicles, people), far to near.
    sprites = _street_sprites(rng, along, kerb, sidewalk, road_half, sides, near,
                              min(water_ahead, end_wall[0] if end_wall else math.inf))
    cam = (f, centre_x, horizon, cam_h)
    for sprite in sorted(sprites, key=lambda sp: -sp[0]):
        _draw_sprite(colour, labels, cam, sprite, haze, fog_m)

    # Random foreground occluder: a lamp post or sign pole.
    if rng.random() < 0.2:
        x0 = rng.uniform(0, n)
        width = max(1.0, n * rng.uniform(0.012, 0.04))
        top = rng.uniform(0, 0.3) * n
        c0, c1 = int(x0), int(min(n, x0 + width))
        colour[int(top):, c0:c1] = np.array([58, 60, 62], np.float32) * rng.uniform(0.7, 1.3)
        labels[int(top):, c0:c1] = LABEL["occluder"]
    colour = colour * (1.0 + 0.08 * (rng.random((n, n, 1), dtype=np.float32) - 0.5))
    return np.clip(colour, 0, 255), labels


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


def _lawn(affluence: float) -> np.ndarray:
    """Lawn colour: dry and yellowish in poor areas, green and watered in affluent ones (as in the satellite tiles)."""
    return _GROUND_COVER[1] + affluence * _GROUND_COVER[2]


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


def _street_sprites(
    rng: np.random.Generator, along: bool, kerb: tuple[float, float], sidewalk: float, road_half: float,
    sides: dict[int, dict[str, np.ndarray]], near: dict[str, float], max_depth: float,
) -> list[tuple]:
    """Street trees (green of the facade row behind them, affluence), vehicles (commercial + residential activity)
    and pedestrians (commercial, nightlife), placed in street coordinates and returned in camera coordinates as
    (distance ahead, kind, x to the right, size / height / along-flag, colour)."""
    sprites: list[tuple] = []
    limit = max(min(max_depth, 160.0), 10.0)  # below 10 m of street (water just ahead) a few cars stand on the quay

    def place(s: float, c: float) -> tuple[float, float]:
        return (c, s) if along else (s, c)  # -> (x, d)

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
                x, d = place(s + rng.uniform(-1, 1), kerb_c + sign * rng.uniform(0.6, 1.2))
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
        x, d = place(s, c)
        colour = _CARS[int(rng.integers(0, len(_CARS)))] * rng.uniform(0.85, 1.1)
        bus = rng.random() < 0.12 * near["commercial"]
        sprites.append((d, "bus" if bus else "car", x, along, colour))
    parked = 4.0 * near["residential"] * (1 - near["commercial"]) + 1.0 * near["commercial"]
    n_parked = min(int(rng.poisson(parked)), 14)
    for _ in range(n_parked):
        side_id = int(rng.integers(0, 2)) if along else 1
        c = kerb[side_id] - (1.2 if side_id == 1 else -1.2)
        s = rng.uniform(6.0, limit) if along else rng.uniform(-40.0, 40.0)
        x, d = place(s, c)
        if d < 3.0:
            continue
        sprites.append((d, "car", x, along, _CARS[int(rng.integers(0, len(_CARS)))] * rng.uniform(0.85, 1.1)))
    n_people = min(int(rng.poisson(0.5 + 5.0 * (0.4 * near["commercial"] + near["nightlife"] ** 1.5))), 30)
    for _ in range(n_people):
        side_id = int(rng.integers(0, 2)) if along else 1
        inward = -1.0 if side_id == 1 else 1.0
        c = kerb[side_id] - inward * rng.uniform(0.4, max(0.5, sidewalk - 0.3))
        s = rng.uniform(4.0, min(limit, 70.0)) if along else rng.uniform(-25.0, 25.0)
        x, d = place(s, c)
        if d < 3.0:
            continue
        sprites.append((d, "person", x, rng.uniform(1.55, 1.9), _CLOTHES[int(rng.integers(0, len(_CLOTHES)))]))
    return sprites


def _draw_sprite(colour: np.ndarray, labels: np.ndarray, cam: tuple[float, float, float, float], sprite: tuple,
                 haze: np.ndarray, fog_m: float) -> None:
    """Draw one sprite (tree, car, bus, person) as boxes/ellipses in perspective, with aerial perspective."""
    f, cx, horizon, cam_h = cam
    d, kind, x = sprite[0], sprite[1], sprite[2]
    n = colour.shape[0]
    fade = 1.0 - math.exp(-d / fog_m)

    def box(x0, x1, z0, z1, rgb, label):
        u0, u1 = cx + f * x0 / d, cx + f * x1 / d
        v0, v1 = horizon - f * (z1 - cam_h) / d, horizon - f * (z0 - cam_h) / d
        c0, c1 = int(max(0, round(u0))), int(min(n, round(u1)))
        r0, r1 = int(max(0, round(v0))), int(min(n, round(v1)))
        if c1 > c0 and r1 > r0:
            colour[r0:r1, c0:c1] = np.asarray(rgb, np.float32) * (1 - fade) + haze * fade
            labels[r0:r1, c0:c1] = LABEL[label]

    def ellipse(xc, zc, rx, rz, rgb, label):
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
        patch = np.asarray(rgb, np.float32) * shade * (1 - fade) + haze * fade
        colour[r0:r1, c0:c1][m] = patch[np.broadcast_to(m, rr.shape)]
        labels[r0:r1, c0:c1][m] = LABEL[label]

    if kind == "tree":
        size, leaf = sprite[3], sprite[4]
        box(x - 0.15 * size, x + 0.15 * size, 0.0, 3.2 * size, (84, 64, 48), "vegetation")
        ellipse(x, 4.8 * size, 2.3 * size, 2.1 * size, leaf, "vegetation")
    elif kind in ("car", "bus"):
        along, body = sprite[3], sprite[4]
        bus = kind == "bus"
        half = (1.25 if bus else 0.9) if along else (5.5 if bus else 2.2)
        height = 3.1 if bus else 1.45
        box(x - half, x + half, 0.3, height * 0.65, body, "vehicle")
        box(x - half * 0.85, x + half * 0.85, height * 0.65, height, body * (0.9 if bus else 1.0), "vehicle")
        box(x - half * 0.75, x + half * 0.75, height * 0.68, height * 0.95, (40, 48, 58), "vehicle")
        box(x - half, x - half * 0.6, 0.0, 0.35, (20, 20, 22), "vehicle")
        box(x + half * 0.6, x + half, 0.0, 0.35, (20, 20, 22), "vehicle")
        if along:  # rear lights
            box(x - half, x - half * 0.75, 0.75, 0.95, (200, 30, 30), "vehicle")
            box(x + half * 0.75, x + half, 0.75, 0.95, (200, 30, 30), "vehicle")
    elif kind == "person":
        tall, cloth = sprite[3], sprite[4]
        box(x - 0.18, x + 0.18, 0.0, tall * 0.5, (45, 45, 55), "person")
        box(x - 0.24, x + 0.24, tall * 0.5, tall * 0.85, cloth, "person")
        ellipse(x, tall * 0.92, 0.12, 0.12, (190, 150, 120), "person")
