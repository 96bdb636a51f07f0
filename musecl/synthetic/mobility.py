"""Synthetic mobility: OD trips from a doubly-weighted gravity model with daily rhythms, and taxi GPS trajectories.

Trips have a purpose (commute, return home, errand, night out, night return). A purpose fixes which latent makes a
region a trip origin and which a destination (homes ~ residential, jobs ~ commercial, night spots ~ nightlife, ...)
and when in the day it happens; P(o, d | purpose) is proportional to O_p(o) D_p(d) exp(-dist(o, d) / decay). Taxis chain
such trips over a shift (cruise empty to a nearby pickup, wait, drive the fare) and log a GPS fix every 30-60 s along
L-shaped street-grid paths, like the T-Drive data MuseCL used; fixes outside the city are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from musecl.synthetic.frame import CityFrame
from musecl.synthetic.presets import SyntheticCityConfig

DAY_WEIGHTS = np.array([1.0, 1.0, 1.0, 1.0, 1.1, 0.8, 0.7])  # Monday..Sunday trip volume
BASE_SPEED_KMH = 30.0  # free-flow driving speed on the street grid
PEAK_SLOWDOWN = 0.4  # speed drops by up to 40 % at the rush-hour peaks
EMPTY_CRUISE_KM = 1.5  # taxis look for the next fare within roughly this distance
PICKUP_WAIT_MIN = 4.0  # mean wait (exponential) before a fare boards


@dataclass(frozen=True)
class Purpose:
    name: str
    origin: str  # mass name (see `region_masses`)
    destination: str
    weekday: tuple[float, float, float]  # (share of the day's trips, mean hour, sd hours)
    weekend: tuple[float, float, float]


PURPOSES: tuple[Purpose, ...] = (
    Purpose("commute", "homes", "jobs", (0.33, 8.2, 1.0), (0.08, 9.5, 1.5)),
    Purpose("return_home", "jobs", "homes", (0.31, 18.0, 1.3), (0.08, 17.0, 2.0)),
    Purpose("errand", "homes", "amenities", (0.22, 13.5, 3.5), (0.50, 14.0, 3.5)),
    Purpose("night_out", "homes", "night_spots", (0.08, 20.5, 1.5), (0.19, 21.0, 1.5)),
    Purpose("night_return", "night_spots", "homes", (0.06, 24.0, 1.3), (0.15, 25.0, 1.5)),
)


def region_masses(latents: pd.DataFrame) -> dict[str, np.ndarray]:
    """Trip-generating masses per region (on land only): homes, jobs, amenities, night spots."""
    land = latents["land_fraction"].to_numpy(dtype=np.float64)
    z = {c: latents[c].to_numpy(dtype=np.float64) for c in ("residential", "commercial", "nightlife", "green")}
    return {
        "homes": land * (0.03 + z["residential"]) ** 1.5,
        "jobs": land * (0.03 + z["commercial"]) ** 2.0,
        "amenities": land * (0.03 + 0.55 * z["commercial"] + 0.3 * z["residential"] + 0.15 * z["green"]) ** 1.5,
        "night_spots": land * (0.03 + z["nightlife"]) ** 2.5,
    }


def centre_distances(frame: CityFrame, regions: pd.DataFrame, area_km2: float) -> np.ndarray:
    """Distances (km) between region centres; the diagonal is the mean distance within a hexagon (~0.5 sqrt(area))."""
    x, y = frame.projection.to_local(regions["lon"].to_numpy(), regions["lat"].to_numpy())
    dist = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(dist, 0.5 * np.sqrt(area_km2))
    return dist


def speed_kmh(hour: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """Driving speed by time of day: slower at the weekday morning and evening peaks."""
    h = np.mod(hour, 24.0)
    peak = np.exp(-0.5 * ((h - 8.2) / 1.0) ** 2) + np.exp(-0.5 * ((h - 18.0) / 1.3) ** 2)
    return BASE_SPEED_KMH * (1.0 - PEAK_SLOWDOWN * np.minimum(peak, 1.0) * np.where(weekday, 1.0, 0.4))


def street_distance(frame: CityFrame, x0, y0, x1, y1) -> np.ndarray:
    """Manhattan distance (km) on the city's street grid (rotated by frame.street_angle)."""
    c, s = np.cos(frame.street_angle), np.sin(frame.street_angle)
    dx, dy = x1 - x0, y1 - y0
    return np.abs(dx * c + dy * s) + np.abs(-dx * s + dy * c)


def purpose_rates(hour: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """(n, purposes) relative rate of each purpose at the given hours (past day-0 midnight; may exceed 24)."""
    hour = np.asarray(hour, dtype=np.float64)
    h = np.mod(hour, 24.0)[:, None] + np.array([-24.0, 0.0, 24.0])[None, :]  # profiles wrap around midnight
    out = np.empty((hour.size, len(PURPOSES)))
    for k, p in enumerate(PURPOSES):
        share, mean, sd = np.where(weekday[:, None], np.array(p.weekday)[None, :], np.array(p.weekend)[None, :]).T
        out[:, k] = share * np.exp(-0.5 * ((h - mean[:, None]) / sd[:, None]) ** 2).sum(1) / sd
    return out


def _sample_rows(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One column index per row of a non-negative (n, m) weight matrix."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(1), weights.shape[1] - 1)


def generate_trips(
    config: SyntheticCityConfig,
    frame: CityFrame,
    latents: pd.DataFrame,
    dist: np.ndarray,
    sampler,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """`config.n_trips` OD trips over the week from `config.start_date` (schema columns of trips.parquet)."""
    n = int(config.n_trips)
    masses = region_masses(latents)
    n_reg = len(latents)
    day = rng.choice(7, size=n, p=DAY_WEIGHTS / DAY_WEIGHTS.sum())
    weekday = day < 5
    shares = np.array([[p.weekday[0], p.weekend[0]] for p in PURPOSES])
    purpose = np.where(
        weekday,
        rng.choice(len(PURPOSES), size=n, p=shares[:, 0] / shares[:, 0].sum()),
        rng.choice(len(PURPOSES), size=n, p=shares[:, 1] / shares[:, 1].sum()),
    )
    origin = np.empty(n, dtype=np.int64)
    dest = np.empty(n, dtype=np.int64)
    hour = np.empty(n)
    decay = np.exp(-dist / config.trip_decay_km)
    for k, p in enumerate(PURPOSES):
        sel = np.flatnonzero(purpose == k)
        if sel.size == 0:
            continue
        od = masses[p.origin][:, None] * masses[p.destination][None, :] * decay
        flat = rng.choice(n_reg * n_reg, size=sel.size, p=(od / od.sum()).ravel())
        origin[sel], dest[sel] = np.divmod(flat, n_reg)
        prof = np.where(weekday[sel, None], np.array(p.weekday)[None, :], np.array(p.weekend)[None, :])
        hour[sel] = prof[:, 1] + prof[:, 2] * rng.standard_normal(sel.size)
    hour = np.clip(hour, 0.0, 30.0)

    olon, olat, _ = sampler.sample(origin, rng)
    dlon, dlat, _ = sampler.sample(dest, rng)
    ox, oy = frame.projection.to_local(olon, olat)
    dx, dy = frame.projection.to_local(dlon, dlat)
    road_km = street_distance(frame, ox, oy, dx, dy)
    speed = speed_kmh(hour, weekday) * rng.lognormal(0, 0.15, n)
    minutes = 60 * road_km / speed + rng.uniform(1, 3, n)

    t0 = np.datetime64(config.start_date, "s")
    start = t0 + (day * 86400 + np.round(hour * 3600)).astype("timedelta64[s]")
    end = start + np.round(minutes * 60).astype("timedelta64[s]")
    order = np.lexsort((np.arange(n), start))
    width = max(6, len(str(n)))
    return pd.DataFrame(
        {
            "trip_id": np.strings.add("trip_", np.strings.zfill(np.arange(n).astype(str), width)).astype(object),
            "origin_lon": olon[order],
            "origin_lat": olat[order],
            "dest_lon": dlon[order],
            "dest_lat": dlat[order],
            "start_time": start[order].astype("datetime64[ms]"),
            "end_time": end[order].astype("datetime64[ms]"),
        }
    )


def generate_trajectories(
    config: SyntheticCityConfig,
    frame: CityFrame,
    latents: pd.DataFrame,
    dist: np.ndarray,
    sampler,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Taxi GPS logs on the first day: `config.n_taxis` vehicles each working one shift (schema of trajectories)."""
    n_taxi = int(config.n_taxis)
    columns = {"vehicle_id": np.array([], dtype=object), "time": np.array([], dtype="datetime64[ms]"),
               "lon": np.array([], dtype=np.float64), "lat": np.array([], dtype=np.float64)}
    if n_taxi == 0:
        return pd.DataFrame(columns)
    masses = region_masses(latents)
    shift_s = config.taxi_shift_hours * 3600.0
    start_h = rng.uniform(5.0, max(5.0, 24.0 - config.taxi_shift_hours), n_taxi)
    weekday = np.ones(n_taxi, dtype=bool)  # day 0 of start_date (a Monday by default)
    # an upper bound on fares per shift: even at the shortest plausible fare (~5 min) no taxi runs out of waypoints
    n_fares = int(np.ceil(shift_s / 300.0)) + 1

    home = _sample_rows(np.broadcast_to(masses["homes"], (n_taxi, len(latents))), rng)
    lon, lat, _ = sampler.sample(home, rng)
    cur_x, cur_y = frame.projection.to_local(lon, lat)
    cur_region = home
    t = start_h * 3600.0
    xs, ys, ts = [cur_x], [cur_y], [t]
    near = np.exp(-dist / EMPTY_CRUISE_KM)
    decay = np.exp(-dist / config.trip_decay_km)
    origin_mass = np.stack([masses[p.origin] for p in PURPOSES])
    dest_mass = np.stack([masses[p.destination] for p in PURPOSES])
    for _ in range(n_fares):
        purpose = _sample_rows(purpose_rates(t / 3600.0, weekday), rng)
        pickup = _sample_rows(origin_mass[purpose] * near[cur_region], rng)
        drop = _sample_rows(dest_mass[purpose] * decay[pickup], rng)
        plon, plat, _ = sampler.sample(pickup, rng)
        dlon, dlat, _ = sampler.sample(drop, rng)
        px, py = frame.projection.to_local(plon, plat)
        qx, qy = frame.projection.to_local(dlon, dlat)
        for (ax, ay, bx, by), wait in (((cur_x, cur_y, px, py), True), ((px, py, qx, qy), False)):
            speed = speed_kmh(t / 3600.0, weekday) * rng.lognormal(0, 0.15, n_taxi) / 3600.0  # km/s
            cx, cy = _corner(frame, ax, ay, bx, by, rng)
            t1 = t + np.hypot(cx - ax, cy - ay) / speed
            t2 = t1 + np.hypot(bx - cx, by - cy) / speed + 1.0
            xs += [cx, bx]
            ys += [cy, by]
            ts += [t1, t2]
            t = t2
            if wait:  # stand at the pickup point until the fare boards
                t = t + rng.exponential(PICKUP_WAIT_MIN * 60.0, n_taxi) + 1.0
                xs.append(bx)
                ys.append(by)
                ts.append(t)
        cur_x, cur_y, cur_region = qx, qy, drop
    wx, wy, wt = np.stack(xs, 1), np.stack(ys, 1), np.stack(ts, 1)  # (taxis, waypoints)
    end = start_h * 3600.0 + shift_s
    if (wt[:, -1] < end).any():
        raise RuntimeError("taxi waypoints end before the shift does (n_fares bound too small)")

    lo, hi = config.gps_interval_s
    max_fix = int(np.ceil(shift_s / lo)) + 1
    fix_t = start_h[:, None] * 3600.0 + np.cumsum(rng.uniform(lo, hi, (n_taxi, max_fix)), axis=1) - lo
    fix_t = np.round(fix_t)  # GPS loggers report whole seconds
    keep = fix_t <= end[:, None]
    taxi = np.broadcast_to(np.arange(n_taxi)[:, None], fix_t.shape)[keep]
    fix_t = fix_t[keep]
    # One np.interp for all taxis: offset each taxi's clock so the concatenated waypoint times stay increasing.
    offset = 10.0 * 86400.0
    glob_w = (wt + offset * np.arange(n_taxi)[:, None]).ravel()
    glob_f = fix_t + offset * taxi
    fx = np.interp(glob_f, glob_w, wx.ravel())
    fy = np.interp(glob_f, glob_w, wy.ravel())
    noise_km = config.gps_noise_m / 1000.0
    fx = fx + rng.normal(0, noise_km, fx.size)
    fy = fy + rng.normal(0, noise_km, fy.size)
    flon, flat = frame.projection.to_lonlat(fx, fy)
    # Like a data provider clipping logs to the study area, fixes outside the city are dropped (a taxi crossing a
    # concave bit of the boundary leaves a gap in its log).
    inside = sampler.in_city(flon, flat)
    flon, flat, fix_t, taxi = flon[inside], flat[inside], fix_t[inside], taxi[inside]
    width = max(4, len(str(n_taxi)))
    ids = np.strings.add("taxi_", np.strings.zfill(np.arange(n_taxi).astype(str), width)).astype(object)
    t0 = np.datetime64(config.start_date, "s")
    return pd.DataFrame(
        {
            "vehicle_id": ids[taxi],
            "time": (t0 + fix_t.astype(np.int64).astype("timedelta64[s]")).astype("datetime64[ms]"),
            "lon": flon,
            "lat": flat,
        }
    )


def _corner(frame: CityFrame, ax, ay, bx, by, rng: np.random.Generator):
    """The turn of an L-shaped street-grid path from a to b (along one grid axis first, chosen at random)."""
    c, s = np.cos(frame.street_angle), np.sin(frame.street_angle)
    du = (bx - ax) * c + (by - ay) * s
    dv = -(bx - ax) * s + (by - ay) * c
    first_u = rng.random(np.shape(ax)) < 0.5
    return ax + np.where(first_u, du * c, -dv * s), ay + np.where(first_u, du * s, dv * c)
