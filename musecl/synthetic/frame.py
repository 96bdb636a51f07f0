"""The geographic frame of a synthetic city: local km coordinates, the boundary, the river/lake and the centres.

Everything is laid out in a local plane (x east, y north, km from the city centre); `LocalProjection` maps it to WGS84
lon/lat with an equirectangular projection (exact inverse, error < 0.1 % over a city's extent).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musecl.synthetic.presets import SyntheticCityConfig

KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_EQUATOR = 111.320
BOUNDARY_VERTICES = 360
COORD_DECIMALS = 7  # ~1 cm; the boundary is rounded so that the GeoJSON written is exactly the polygon used


@dataclass(frozen=True)
class LocalProjection:
    """Equirectangular projection around (lon0, lat0): local x/y in km <-> lon/lat in degrees."""

    lon0: float
    lat0: float

    @property
    def km_per_deg_lon(self) -> float:
        return KM_PER_DEG_LON_EQUATOR * float(np.cos(np.radians(self.lat0)))

    def to_local(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = (np.asarray(lon, dtype=np.float64) - self.lon0) * self.km_per_deg_lon
        y = (np.asarray(lat, dtype=np.float64) - self.lat0) * KM_PER_DEG_LAT
        return x, y

    def to_lonlat(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lon = self.lon0 + np.asarray(x, dtype=np.float64) / self.km_per_deg_lon
        lat = self.lat0 + np.asarray(y, dtype=np.float64) / KM_PER_DEG_LAT
        return lon, lat


@dataclass(frozen=True)
class Centre:
    """A business centre: position (km), weight (relative pull) and spread (km, Gaussian sd)."""

    x: float
    y: float
    weight: float
    spread_km: float


@dataclass(frozen=True)
class CityFrame:
    """The fixed geometry every latent field and observable is built on."""

    projection: LocalProjection
    radius_km: float  # mean radius (the boundary's area is pi radius^2)
    boundary_xy: np.ndarray  # (V, 2) closed ring in local km (first vertex repeated at the end)
    river_xy: np.ndarray | None  # (P, 2) densely sampled river centre line in local km
    river_width_km: float
    lake: tuple[float, float, float, float, float] | None  # (x, y, semi-axis a, semi-axis b, angle rad)
    centres: tuple[Centre, ...]  # centres[0] is the CBD
    entertainment: int  # index into centres of the nightlife district
    affluent_bearing: float  # direction (rad, counter-clockwise from east) of the affluent sector
    street_angle: float  # orientation (rad) of the street grid

    def boundary_lonlat(self):
        """The boundary as a shapely Polygon in lon/lat (rounded to COORD_DECIMALS)."""
        import shapely

        lon, lat = self.projection.to_lonlat(self.boundary_xy[:, 0], self.boundary_xy[:, 1])
        return shapely.Polygon(np.column_stack([lon, lat]).round(COORD_DECIMALS))

    def boundary_local(self):
        import shapely

        return shapely.Polygon(self.boundary_xy)

    def water_distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance (km) from each point to the nearest open water edge (0 on water)."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        dist = np.full(x.shape, np.inf)
        if self.river_xy is not None:
            from scipy.spatial import cKDTree

            d, _ = cKDTree(self.river_xy).query(np.column_stack([x.ravel(), y.ravel()]))
            dist = np.minimum(dist, np.maximum(d.reshape(x.shape) - self.river_width_km / 2, 0.0))
        if self.lake is not None:
            dist = np.minimum(dist, np.maximum(_ellipse_distance(x, y, self.lake), 0.0))
        return dist


def city_radius_km(config: SyntheticCityConfig) -> float:
    """Mean radius giving about `target_regions` H3 cells: cell areas vary over the globe, so use the centre's cell."""
    import h3

    cell = h3.latlng_to_cell(config.center_lat, config.center_lon, config.h3_resolution)
    return float(np.sqrt(config.target_regions * h3.cell_area(cell, "km^2") / np.pi))


def build_frame(config: SyntheticCityConfig, rng: np.random.Generator) -> CityFrame:
    """Draw the boundary (radius modulated by random harmonics), river, lake, centres and street grid of a city."""
    R = city_radius_km(config)
    projection = LocalProjection(config.center_lon, config.center_lat)

    # Boundary: r(theta) = R (1 + sum_k a_k cos(k theta + phi_k)), k = 2..5 with a_k ~ roughness / k, so the outline is
    # irregular but star-shaped (every ray from the centre crosses it once) and its area stays close to pi R^2.
    theta = np.linspace(0.0, 2 * np.pi, BOUNDARY_VERTICES, endpoint=False)
    ks = np.arange(2, 6)
    amps = config.boundary_roughness * rng.uniform(0.4, 1.0, ks.size) / ks * 2
    phases = rng.uniform(0, 2 * np.pi, ks.size)
    radius = R * (1 + (amps[:, None] * np.cos(ks[:, None] * theta[None, :] + phases[:, None])).sum(0))
    radius *= R / np.sqrt(np.mean(radius**2))  # keep the area at ~pi R^2 whatever the harmonics
    ring = np.column_stack([radius * np.cos(theta), radius * np.sin(theta)])
    ring = np.vstack([ring, ring[:1]])

    # River: a sinuous centre line through the city (offset from the centre), sampled every ~10 m.
    river_xy = None
    if config.river:
        angle = rng.uniform(0, np.pi)
        offset = rng.uniform(-0.25, 0.25) * R
        t = np.arange(-2.0 * R, 2.0 * R, 0.01)
        meander = (0.10 * R * np.sin(2 * np.pi * t / (0.9 * R) + rng.uniform(0, 2 * np.pi))
                   + 0.05 * R * np.sin(2 * np.pi * t / (0.37 * R) + rng.uniform(0, 2 * np.pi)))
        along = np.column_stack([np.cos(angle), np.sin(angle)])
        across = np.column_stack([-np.sin(angle), np.cos(angle)])
        river_xy = t[:, None] * along + (offset + meander)[:, None] * across

    lake = None
    if config.lake:
        a = config.lake_radius_km * rng.uniform(0.9, 1.3)
        b = config.lake_radius_km * rng.uniform(0.6, 0.9)
        phi = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.45, 0.65) * R
        lake = (dist * np.cos(phi), dist * np.sin(phi), a, b, rng.uniform(0, np.pi))

    # Centres: the CBD near the middle, subcentres on a ring at 35-70 % of the radius, spread out in angle.
    cbd = Centre(*(rng.normal(0, 0.05 * R, 2)), 1.0, 0.16 * R)
    n = int(config.n_subcentres)
    base = rng.uniform(0, 2 * np.pi)
    angles = base + 2 * np.pi * np.arange(n) / max(n, 1) + rng.uniform(-0.4, 0.4, n)
    dists = rng.uniform(0.35, 0.7, n) * R
    subs = tuple(
        Centre(float(d * np.cos(a)), float(d * np.sin(a)), float(w), float(s * R))
        for a, d, w, s in zip(angles, dists, rng.uniform(0.35, 0.65, n), rng.uniform(0.07, 0.11, n))
    )
    centres = (Centre(float(cbd.x), float(cbd.y), cbd.weight, cbd.spread_km), *subs)
    entertainment = int(rng.integers(0, len(centres)))
    return CityFrame(
        projection=projection,
        radius_km=float(R),
        boundary_xy=ring,
        river_xy=river_xy,
        river_width_km=config.river_width_m / 1000.0,
        lake=lake,
        centres=centres,
        entertainment=entertainment,
        affluent_bearing=float(rng.uniform(0, 2 * np.pi)),
        street_angle=float(rng.uniform(0, np.pi / 2)),
    )


def _ellipse_distance(x: np.ndarray, y: np.ndarray, lake: tuple[float, float, float, float, float]) -> np.ndarray:
    """Approximate signed distance (km) to an ellipse's edge: negative inside."""
    cx, cy, a, b, ang = lake
    dx, dy = x - cx, y - cy
    u = dx * np.cos(ang) + dy * np.sin(ang)
    v = -dx * np.sin(ang) + dy * np.cos(ang)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return (rho - 1.0) * np.sqrt(a * b)


class RegionSampler:
    """Uniform random points inside given regions (H3 hexagons), inside the city boundary and, by preference, on land.

    A point is drawn uniformly in its hexagon (triangle fan around the centre, in local km), then kept only if H3 puts
    it in the same cell, the boundary contains it and (when asked) the water latent there is < 0.5; rejected points are
    redrawn, vectorised, for a few rounds. Points that never succeed fall back to the land requirement being dropped,
    and finally to the region centre (which H3 and the boundary always accept).
    """

    def __init__(self, frame: CityFrame, regions, resolution: int, water_at=None) -> None:
        import h3
        import shapely

        from musecl.data.schema import REGION_ID

        self.frame = frame
        self.resolution = resolution
        self.water_at = water_at  # callable (lon, lat) -> water latent, or None
        ids = regions[REGION_ID].to_numpy()
        self.cells = np.array([h3.str_to_int(r) for r in ids], dtype=np.uint64)
        self.centre_lon = regions["lon"].to_numpy(dtype=np.float64)
        self.centre_lat = regions["lat"].to_numpy(dtype=np.float64)
        rings = [np.array(h3.cell_to_boundary(r), dtype=np.float64) for r in ids]  # (lat, lon) pairs
        n_vert = max(len(ring) for ring in rings)
        verts = np.zeros((len(ids), n_vert, 2))
        for i, ring in enumerate(rings):
            padded = np.vstack([ring, np.repeat(ring[-1:], n_vert - len(ring), axis=0)])
            verts[i, :, 0], verts[i, :, 1] = frame.projection.to_local(padded[:, 1], padded[:, 0])
        cx, cy = frame.projection.to_local(self.centre_lon, self.centre_lat)
        self.centre_xy = np.column_stack([cx, cy])
        self.verts = verts
        nxt = np.roll(verts, -1, axis=1)
        a = verts - self.centre_xy[:, None, :]
        b = nxt - self.centre_xy[:, None, :]
        area = 0.5 * np.abs(a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0])
        self.tri_cum = np.cumsum(area / area.sum(1, keepdims=True), axis=1)
        self.tri_cum[:, -1] = 1.0
        self.boundary = frame.boundary_lonlat()
        shapely.prepare(self.boundary)

    def in_city(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Points inside the boundary or in one of the regions' hexagons (what a bundle may hold)."""
        import shapely

        from musecl.data.regions import latlng_to_cells

        inside = shapely.contains_xy(self.boundary, lon, lat)
        if not inside.all():
            inside[~inside] = np.isin(latlng_to_cells(lat[~inside], lon[~inside], self.resolution), self.cells)
        return inside

    def _draw(self, region_idx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        u = rng.random(region_idx.size)
        tri = (u[:, None] > self.tri_cum[region_idx]).sum(1)
        tri = np.minimum(tri, self.verts.shape[1] - 1)
        p0 = self.centre_xy[region_idx]
        p1 = self.verts[region_idx, tri]
        p2 = self.verts[region_idx, (tri + 1) % self.verts.shape[1]]
        s = np.sqrt(rng.random(region_idx.size))[:, None]
        t = rng.random(region_idx.size)[:, None]
        xy = (1 - s) * p0 + s * (1 - t) * p1 + s * t * p2
        return xy[:, 0], xy[:, 1]

    def _valid(self, region_idx, lon, lat, need_land: bool) -> np.ndarray:
        import shapely

        from musecl.data.regions import latlng_to_cells

        ok = latlng_to_cells(lat, lon, self.resolution) == self.cells[region_idx]
        ok &= shapely.contains_xy(self.boundary, lon, lat)
        if need_land and self.water_at is not None:
            ok &= self.water_at(lon, lat) < 0.5
        return ok

    def sample(
        self,
        region_idx: np.ndarray,
        rng: np.random.Generator,
        avoid_water: bool = True,
        snap=None,
        max_rounds: int = 30,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """lon, lat (and an auxiliary value from `snap`, else zeros) of one point per entry of `region_idx`.

        `snap(x, y, rng) -> (x, y, aux)` moves a candidate point in local km (e.g. onto a street) before the checks.
        """
        region_idx = np.asarray(region_idx, dtype=np.int64)
        n = region_idx.size
        lon = self.centre_lon[region_idx].copy()
        lat = self.centre_lat[region_idx].copy()
        aux = np.zeros(n)
        todo = np.arange(n)
        for round_ in range(2 * max_rounds):
            if todo.size == 0:
                break
            need_land = avoid_water and round_ < max_rounds
            x, y = self._draw(region_idx[todo], rng)
            a = np.zeros(todo.size)
            if snap is not None:
                x, y, a = snap(x, y, rng)
            cand_lon, cand_lat = self.frame.projection.to_lonlat(x, y)
            ok = self._valid(region_idx[todo], cand_lon, cand_lat, need_land)
            lon[todo[ok]], lat[todo[ok]], aux[todo[ok]] = cand_lon[ok], cand_lat[ok], a[ok]
            todo = todo[~ok]
        return lon, lat, aux
