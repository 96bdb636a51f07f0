"""Population-mobility counts per region: the inflow m^in and outflow m^out that MuseCL's λ^PM is built from.

Two kinds of input give the same table (one row per region, columns `inflow`, `outflow`):

* GPS trajectories (vehicle id, time, lon, lat), counted with the rule of MuseCL's `mobility_count`: walk each vehicle's
  fixes in time order; when a fix lies in a different region than the vehicle's previous fix, the new region gains one
  inflow and the previous region one outflow. Fixes that stay in the same region add nothing; fixes outside every region
  are skipped (the authors skipped points outside the city's box), so a vehicle leaving through A and re-entering
  through B counts as A -> B. The authors also count each vehicle's first fix as an inflow (`first_fix_inflow`).
* Trips (origin and destination points): a trip from region A to region B adds one outflow to A and one inflow to B.
  A trip that starts and ends in the same region moves between no regions and adds nothing (the trajectory rule),
  unless `count_intra_region` is set; a trip with one end outside every region adds only its inside end.

Everything is vectorised: one h3 call per point and `numpy.bincount` for the counting.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID

COLUMNS = ("inflow", "outflow")


def _region_codes(lon: np.ndarray, lat: np.ndarray, region_ids: pd.Index, resolution: int) -> np.ndarray:
    """Position of each point's region in `region_ids`, -1 where the point is in none of them."""
    from musecl.data.regions import assign_points_to_regions

    names = assign_points_to_regions(np.asarray(lon), np.asarray(lat), region_ids, resolution)
    codes = region_ids.get_indexer(pd.Index(names.astype(object)))
    codes[pd.isna(names)] = -1
    return codes


def _require(table: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing} (have {list(table.columns)})")


def _as_frame(inflow: np.ndarray, outflow: np.ndarray, region_ids: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(
        {"inflow": inflow.astype(np.int64), "outflow": outflow.astype(np.int64)},
        index=pd.Index(region_ids, name=REGION_ID),
    )


def transitions_from_codes(
    vehicle: np.ndarray, codes: np.ndarray, n_regions: int, first_fix_inflow: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Inflow and outflow counts from time-ordered fixes already mapped to region positions (-1 = outside).

    `vehicle` and `codes` must be sorted by vehicle, then time. Outside fixes are dropped first, so the previous region
    of a fix is the vehicle's last fix inside the city.
    """
    inside = codes >= 0
    vehicle, codes = vehicle[inside], codes[inside]
    if codes.size == 0:
        zeros = np.zeros(n_regions, dtype=np.int64)
        return zeros, zeros.copy()
    same_vehicle = np.zeros(codes.size, dtype=bool)
    same_vehicle[1:] = vehicle[1:] == vehicle[:-1]
    moved = np.zeros(codes.size, dtype=bool)
    moved[1:] = same_vehicle[1:] & (codes[1:] != codes[:-1])
    entered = moved | (~same_vehicle if first_fix_inflow else False)
    inflow = np.bincount(codes[entered], minlength=n_regions)
    previous = codes[np.flatnonzero(moved) - 1]
    outflow = np.bincount(previous, minlength=n_regions)
    return inflow, outflow


def mobility_from_trajectories(
    trajectories: pd.DataFrame,
    region_ids: pd.Index | list[str],
    resolution: int,
    first_fix_inflow: bool = True,
) -> pd.DataFrame:
    """Inflow/outflow per region from vehicle GPS fixes (columns vehicle_id, time, lon, lat), MuseCL's rule."""
    _require(trajectories, ("vehicle_id", "time", "lon", "lat"), "trajectories")
    region_ids = pd.Index(region_ids)
    # A stable sort keeps the file order of fixes with equal timestamps.
    ordered = trajectories.sort_values(["vehicle_id", "time"], kind="stable")
    codes = _region_codes(ordered["lon"].to_numpy(), ordered["lat"].to_numpy(), region_ids, resolution)
    vehicle = pd.factorize(ordered["vehicle_id"])[0]
    inflow, outflow = transitions_from_codes(vehicle, codes, len(region_ids), first_fix_inflow)
    return _as_frame(inflow, outflow, region_ids)


def mobility_from_trips(
    trips: pd.DataFrame,
    region_ids: pd.Index | list[str],
    resolution: int,
    count_intra_region: bool = False,
) -> pd.DataFrame:
    """Inflow/outflow per region from origin-destination trips (columns origin_lon/lat, dest_lon/lat)."""
    _require(trips, ("origin_lon", "origin_lat", "dest_lon", "dest_lat"), "trips")
    region_ids = pd.Index(region_ids)
    origin = _region_codes(trips["origin_lon"].to_numpy(), trips["origin_lat"].to_numpy(), region_ids, resolution)
    dest = _region_codes(trips["dest_lon"].to_numpy(), trips["dest_lat"].to_numpy(), region_ids, resolution)
    counted = (origin != dest) | bool(count_intra_region)
    out_ok = counted & (origin >= 0)
    in_ok = counted & (dest >= 0)
    outflow = np.bincount(origin[out_ok], minlength=len(region_ids))
    inflow = np.bincount(dest[in_ok], minlength=len(region_ids))
    return _as_frame(inflow, outflow, region_ids)


def mobility_counts(
    bundle,
    source: Literal["auto", "trips", "trajectories", "both"] = "auto",
    first_fix_inflow: bool = True,
    count_intra_region: bool = False,
) -> pd.DataFrame:
    """Inflow/outflow per region of a city bundle (one row per region, bundle order).

    `source`: `trajectories` (MuseCL's taxi GPS rule), `trips`, `both` (sum of the two), or `auto` = trajectories when
    the bundle has them, else trips.
    """
    from musecl.data.bundle import BundleError

    region_ids = pd.Index(bundle.regions()[REGION_ID].astype(str).to_numpy(dtype=object), name=REGION_ID)
    has_traj, has_trips = bundle.has("trajectories"), bundle.has("trips")
    if source == "auto":
        source = "trajectories" if has_traj else "trips"
    if source not in ("trips", "trajectories", "both"):
        raise ValueError(f"pairs.mobility.source must be auto, trips, trajectories or both, got {source!r}")
    parts = []
    if source in ("trajectories", "both"):
        if not has_traj:
            raise BundleError(f"{bundle.root}: mobility source '{source}' needs trajectories.parquet, which is missing")
        parts.append(mobility_from_trajectories(bundle.trajectories(), region_ids, bundle.h3_resolution, first_fix_inflow))
    if source in ("trips", "both"):
        if not has_trips:
            raise BundleError(f"{bundle.root}: mobility source '{source}' needs trips.parquet, which is missing")
        parts.append(mobility_from_trips(bundle.trips(), region_ids, bundle.h3_resolution, count_intra_region))
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total
