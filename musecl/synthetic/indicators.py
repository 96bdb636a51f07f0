"""Socioeconomic indicators of a synthetic city: the paper's six, raw scale, one row per region.

Three are independent noisy functions of the latents (population density, housing density, crime); three are counted
from the bundle's own observable tables, as the paper counted them from its input data (POIs, comments, taxi entries).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID

INDICATOR_SPECS: dict[str, dict[str, str]] = {
    "population_density": {
        "transform": "log1p",
        "unit": "people per km2",
        "derived_from": "latents",
        "description": "residents per km2 of the hexagon: 14000 * land * (0.02 + residential)^1.6 * "
        "exp(0.2 commercial - 0.5 affluence) * LogNormal(0, 0.3)",
    },
    "housing_density": {
        "transform": "log1p",
        "unit": "dwellings listed per region",
        "derived_from": "latents",
        "description": "Poisson(500 * land * (0.02 + residential)^1.3 * exp(0.4 affluence - 0.3 green) * "
        "LogNormal(0, 0.4))",
    },
    "mobility_count": {
        "transform": "log1p",
        "unit": "taxi entries per region",
        "derived_from": "trajectories.parquet",
        "description": "counted from trajectories.parquet: GPS fixes whose region differs from the same taxi's "
        "previous fix (a taxi's first fix counts as an entry), MuseCL's mobility.py rule",
    },
    "poi_count": {
        "transform": "log1p",
        "unit": "POIs per region",
        "derived_from": "pois.parquet",
        "description": "counted from pois.parquet: POIs located in the region",
    },
    "comment_count": {
        "transform": "log1p",
        "unit": "review comments per region",
        "derived_from": "pois.parquet",
        "description": "counted from pois.parquet: sum of n_comments of the region's POIs",
    },
    "crime": {
        "transform": "log1p",
        "unit": "incidents per region",
        "derived_from": "latents",
        "description": "Poisson(3 * land * exp(1.6 nightlife + 0.8 commercial + 0.9 residential - 1.3 affluence - "
        "0.4 green) * LogNormal(0, 0.5))",
    },
}
INDICATOR_NAMES = tuple(INDICATOR_SPECS)
# `derived_from` says where an indicator comes from: "latents" (an independent draw no input table contains) or the
# bundle file it is counted from (so a method reading that file sees the target: see docs/synthetic_city.md, leakage).


def _lognormal(rng: np.random.Generator, sd: float, n: int) -> np.ndarray:
    """Multiplicative noise with mean 1."""
    return rng.lognormal(-0.5 * sd**2, sd, n)


def generate_indicators(
    latents: pd.DataFrame,
    poi_region: np.ndarray,
    n_comments: np.ndarray,
    trajectory_regions: np.ndarray,
    trajectory_vehicles: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Indicators per region (rows aligned with `latents`).

    poi_region / n_comments: region index (row of `latents`) and comment count of every POI.
    trajectory_regions / trajectory_vehicles: region index (-1 outside every region) and vehicle code of every GPS fix,
    sorted by vehicle then time.
    """
    n = len(latents)
    z = {c: latents[c].to_numpy(dtype=np.float64) for c in latents.columns if c != REGION_ID}
    land = z["land_fraction"]
    res, com, aff, grn, ngt = z["residential"], z["commercial"], z["affluence"], z["green"], z["nightlife"]

    population = 14000.0 * land * (0.02 + res) ** 1.6 * np.exp(0.2 * com - 0.5 * aff) * _lognormal(rng, 0.3, n)
    housing = rng.poisson(500.0 * land * (0.02 + res) ** 1.3 * np.exp(0.4 * aff - 0.3 * grn) * _lognormal(rng, 0.4, n))
    crime = rng.poisson(
        3.0 * land * np.exp(1.6 * ngt + 0.8 * com + 0.9 * res - 1.3 * aff - 0.4 * grn) * _lognormal(rng, 0.5, n)
    )
    poi_count = np.bincount(poi_region, minlength=n)
    comment_count = np.bincount(poi_region, weights=n_comments.astype(np.float64), minlength=n)
    mobility = taxi_entries(trajectory_regions, trajectory_vehicles, n)
    return pd.DataFrame(
        {
            REGION_ID: latents[REGION_ID].to_numpy(),
            "population_density": population.astype(np.float64),
            "housing_density": housing.astype(np.float64),
            "mobility_count": mobility.astype(np.float64),
            "poi_count": poi_count.astype(np.float64),
            "comment_count": comment_count.astype(np.float64),
            "crime": crime.astype(np.float64),
        }
    )


def taxi_entries(region: np.ndarray, vehicle: np.ndarray, n_regions: int) -> np.ndarray:
    """Entries per region: fixes in a region other than the same vehicle's previous fix's region (first fix counts).

    `region` is -1 for fixes outside every region; leaving the city and coming back counts as a new entry.
    """
    region = np.asarray(region)
    vehicle = np.asarray(vehicle)
    if region.size == 0:
        return np.zeros(n_regions, dtype=np.int64)
    new_vehicle = np.r_[True, vehicle[1:] != vehicle[:-1]]
    changed = np.r_[True, region[1:] != region[:-1]]
    entry = (new_vehicle | changed) & (region >= 0)
    return np.bincount(region[entry], minlength=n_regions)
