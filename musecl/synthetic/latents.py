"""Latent fields of a synthetic city: smooth rasters in [0, 1] from which every observable is drawn.

Six latents (LATENT_NAMES) live on a fine raster in local km coordinates. They come from a polycentric layout (CBD plus
subcentres), the water geometry and spatially correlated noise (Gaussian-filtered white noise); docs/synthetic_city.md
states each causal link. Region latents are raster means over each hexagon.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from musecl.synthetic.frame import CityFrame, LocalProjection
from musecl.synthetic.presets import SyntheticCityConfig

LATENT_NAMES = ("residential", "commercial", "green", "water", "affluence", "nightlife")
RASTER_MARGIN_KM = 1.5  # the raster extends past the boundary so that hexagons cut by it are fully covered


@dataclass(frozen=True)
class LatentField:
    """The latent rasters with bilinear sampling at lon/lat points (what the image renderers call per pixel)."""

    projection: LocalProjection
    x0: float  # local km of raster column 0's centre
    y0: float  # local km of raster row 0's centre (rows go north)
    cell_km: float
    rasters: dict[str, np.ndarray]  # name -> (rows, cols) float32 in [0, 1]

    @property
    def names(self) -> tuple[str, ...]:
        return LATENT_NAMES

    @property
    def shape(self) -> tuple[int, int]:
        return self.rasters[LATENT_NAMES[0]].shape

    def grid_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """Local km coordinates of every raster cell centre, as two (rows, cols) arrays."""
        rows, cols = self.shape
        x = self.x0 + self.cell_km * np.arange(cols)
        y = self.y0 + self.cell_km * np.arange(rows)
        return np.meshgrid(x, y)

    def sample(self, lon: np.ndarray, lat: np.ndarray) -> dict[str, np.ndarray]:
        """Bilinearly interpolated latents at lon/lat points of any (equal) shape; values in [0, 1]."""
        from scipy.ndimage import map_coordinates

        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        if lon.shape != lat.shape:
            raise ValueError(f"LatentField.sample: lon and lat differ in shape ({lon.shape} vs {lat.shape})")
        x, y = self.projection.to_local(lon, lat)
        coords = np.stack([((y - self.y0) / self.cell_km).ravel(), ((x - self.x0) / self.cell_km).ravel()])
        return {
            name: np.clip(map_coordinates(self.rasters[name], coords, order=1, mode="nearest"), 0.0, 1.0)
            .reshape(lon.shape)
            .astype(np.float64)
            for name in LATENT_NAMES
        }


def build_latent_field(config: SyntheticCityConfig, frame: CityFrame, rng: np.random.Generator) -> LatentField:
    """The six latent rasters of a city (see docs/synthetic_city.md for every term)."""
    import shapely

    R = frame.radius_km
    cell = config.raster_cell_m / 1000.0
    ext = np.abs(frame.boundary_xy).max() + RASTER_MARGIN_KM
    n = int(np.ceil(2 * ext / cell)) + 1
    x0 = y0 = -ext
    xs = x0 + cell * np.arange(n)
    X, Y = np.meshgrid(xs, xs)
    inside = shapely.contains_xy(frame.boundary_local(), X, Y)

    def noise(length_km: float) -> np.ndarray:
        """Spatially correlated noise, unit standard deviation (Gaussian-filtered white noise)."""
        from scipy.ndimage import gaussian_filter

        field = gaussian_filter(rng.standard_normal((n, n)), sigma=length_km / cell, mode="reflect")
        return (field - field.mean()) / field.std()

    def bump(c, spread_scale: float = 1.0) -> np.ndarray:
        return np.exp(-((X - c.x) ** 2 + (Y - c.y) ** 2) / (2 * (c.spread_km * spread_scale) ** 2))

    L = config.noise_length_km
    s = config.noise_strength
    r = np.hypot(X, Y)

    # Water: river band and lake, with a one-cell soft edge (fractional cover at the shore).
    water_dist = frame.water_distance(X, Y)
    water = np.zeros_like(X)
    if frame.river_xy is not None or frame.lake is not None:
        water = (water_dist <= 0).astype(np.float64)
        from scipy.ndimage import gaussian_filter

        water = np.clip(gaussian_filter(water, sigma=0.5), 0, 1)
    land = 1.0 - water
    waterfront = np.exp(-water_dist / 0.4) * land  # attractive shore strip, ~400 m deep

    # Jobs concentrate tightly at the centres (agglomeration); homes spread wider, decay with distance from the
    # centre (monocentric density gradient) and are displaced from the very core by offices.
    core = sum(c.weight * bump(c) for c in frame.centres)
    wide = sum(c.weight * bump(c, 2.5) for c in frame.centres)
    gradient = np.exp(-(r**2) / (2 * (0.55 * R) ** 2))
    commercial = 1.0 * core + 0.15 * gradient + s * 0.5 * noise(L)
    residential = 0.7 * gradient + 0.5 * wide - 0.45 * core + s * 0.6 * noise(L)

    # Scaled on the city's land, then multiplied by the land share: nobody lives, works or goes out on the water.
    on_land = inside & (water < 0.5)
    commercial_s = _scale(commercial, on_land) * land
    residential_s = _scale(residential, on_land) * land
    built = 0.5 * (commercial_s + residential_s)

    # Green: what is not built up, plus parks (larger-scale noise blobs) and shore parks; water itself is not green.
    green = -1.0 * built + 0.35 * waterfront + 0.25 * r / R + s * 1.0 * noise(1.5 * L)
    green_s = _scale(green, on_land) * land

    # Nightlife: follows commercial activity, peaks in one entertainment district and along the waterfront.
    ent = frame.centres[frame.entertainment]
    nightlife = 0.6 * commercial_s + 0.8 * bump(ent, 1.3) + 0.25 * waterfront + s * 0.5 * noise(0.7 * L)
    nightlife_s = _scale(nightlife, on_land) * land

    # Affluence: one favoured sector of the city (a cosine lobe around a bearing), near green space and water.
    bearing = np.arctan2(Y, X)
    sector = np.clip(np.cos(bearing - frame.affluent_bearing), 0, None) ** 2 * np.clip(r / (0.3 * R), 0, 1)
    affluence = 0.7 * sector + 0.35 * green_s + 0.35 * waterfront + s * 0.8 * noise(1.5 * L)
    affluence_s = _scale(affluence, on_land)

    rasters = {
        "residential": residential_s,
        "commercial": commercial_s,
        "green": green_s,
        "water": water,
        "affluence": affluence_s,
        "nightlife": nightlife_s,
    }
    return LatentField(
        projection=frame.projection,
        x0=float(x0),
        y0=float(y0),
        cell_km=float(cell),
        rasters={k: np.ascontiguousarray(v, dtype=np.float32) for k, v in rasters.items()},
    )


def _scale(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Map to [0, 1] by the 1st and 99th percentiles inside the city (robust min-max), clipped."""
    lo, hi = np.percentile(values[inside], [1, 99])
    return np.clip((values - lo) / max(hi - lo, 1e-9), 0.0, 1.0)


def region_latents(field: LatentField, frame: CityFrame, regions: pd.DataFrame, resolution: int) -> pd.DataFrame:
    """Per region: the mean of each latent raster over the hexagon, plus `land_fraction` (share of the hexagon inside
    the boundary and on land) and `n_cells` (raster cells averaged). Regions too small for any raster cell take the
    value at their centre."""
    import shapely

    from musecl.data.regions import latlng_to_cells
    from musecl.data.schema import REGION_ID

    X, Y = field.grid_xy()
    lon, lat = field.projection.to_lonlat(X.ravel(), Y.ravel())
    cells = latlng_to_cells(lat, lon, resolution)
    import h3

    region_cells = np.array([h3.str_to_int(r) for r in regions[REGION_ID]], dtype=np.uint64)
    order = np.argsort(region_cells)
    pos = np.searchsorted(region_cells[order], cells)
    pos = np.clip(pos, 0, len(order) - 1)
    hit = region_cells[order][pos] == cells
    idx = order[pos[hit]]
    counts = np.bincount(idx, minlength=len(regions)).astype(np.float64)
    out = pd.DataFrame({REGION_ID: regions[REGION_ID].to_numpy()})
    centre = field.sample(regions["lon"].to_numpy(), regions["lat"].to_numpy())
    safe = np.maximum(counts, 1)
    for name in LATENT_NAMES:
        sums = np.bincount(idx, weights=field.rasters[name].ravel()[hit].astype(np.float64), minlength=len(regions))
        out[name] = np.where(counts > 0, sums / safe, centre[name])
    inside = shapely.contains_xy(frame.boundary_local(), X.ravel(), Y.ravel())[hit]
    land = (1.0 - field.rasters["water"].ravel()[hit]) * inside
    land_sum = np.bincount(idx, weights=land, minlength=len(regions))
    out["land_fraction"] = np.where(counts > 0, land_sum / safe, 1.0 - centre["water"])
    out["n_cells"] = counts.astype(np.int64)
    return out
