"""Mobility counting (MuseCL's rule) on a hand-made trajectory and hand-made trips."""
from __future__ import annotations

import json

import h3
import numpy as np
import pandas as pd
import pytest

from musecl.data.bundle import CityBundle
from musecl.data.regions import regions_frame
from musecl.mobility import mobility_counts, mobility_from_trajectories, mobility_from_trips

RES = 8
A = h3.latlng_to_cell(39.90, 116.40, RES)
B, C = sorted(h3.grid_ring(A, 1))[:2]
OUTSIDE = sorted(h3.grid_ring(A, 3))[0]  # a cell that is not a region
REGIONS = pd.Index([A, B, C], name="region_id")


def centre(cell: str) -> tuple[float, float]:
    lat, lon = h3.cell_to_latlng(cell)
    return lon, lat


def trajectory() -> pd.DataFrame:
    """Taxi v1: A A B B C (outside) C A; taxi v2: B B. Rows deliberately shuffled (counting must sort by time)."""
    path = [("v1", A), ("v1", A), ("v1", B), ("v1", B), ("v1", C), ("v1", OUTSIDE), ("v1", C), ("v1", A), ("v2", B), ("v2", B)]
    rows = []
    for i, (vehicle, cell) in enumerate(path):
        lon, lat = centre(cell)
        rows.append({"vehicle_id": vehicle, "time": pd.Timestamp("2024-03-04 08:00") + pd.Timedelta(minutes=i), "lon": lon, "lat": lat})
    table = pd.DataFrame(rows)
    return table.sample(frac=1.0, random_state=3).reset_index(drop=True)


def test_trajectory_counts_follow_the_papers_rule():
    counts = mobility_from_trajectories(trajectory(), REGIONS, RES)
    # v1: first fix enters A; A->B, B->C, C->(outside, skipped)->C adds nothing, C->A; v2: first fix enters B, stays.
    assert counts.loc[A].tolist() == [2, 1]
    assert counts.loc[B].tolist() == [2, 1]
    assert counts.loc[C].tolist() == [1, 1]
    assert list(counts.columns) == ["inflow", "outflow"]


def test_trajectory_counts_without_first_fix_inflow():
    counts = mobility_from_trajectories(trajectory(), REGIONS, RES, first_fix_inflow=False)
    assert counts["inflow"].tolist() == [1, 1, 1]
    assert counts["outflow"].tolist() == [1, 1, 1]
    # every counted move adds one inflow and one outflow
    assert counts["inflow"].sum() == counts["outflow"].sum()


def test_staying_in_one_region_adds_nothing():
    lon, lat = centre(A)
    table = pd.DataFrame({"vehicle_id": ["x"] * 5, "time": pd.date_range("2024-03-04", periods=5, freq="min"),
                          "lon": lon + np.linspace(0, 1e-4, 5), "lat": lat})
    counts = mobility_from_trajectories(table, REGIONS, RES, first_fix_inflow=False)
    assert counts.to_numpy().sum() == 0


def trips() -> pd.DataFrame:
    pairs = [(A, B), (B, B), (A, OUTSIDE), (OUTSIDE, C), (C, A)]
    rows = []
    for i, (o, d) in enumerate(pairs):
        (olon, olat), (dlon, dlat) = centre(o), centre(d)
        rows.append({"trip_id": f"t{i}", "origin_lon": olon, "origin_lat": olat, "dest_lon": dlon, "dest_lat": dlat,
                     "start_time": pd.Timestamp("2024-03-04")})
    return pd.DataFrame(rows)


def test_trip_counts():
    counts = mobility_from_trips(trips(), REGIONS, RES)
    assert counts.loc[A].tolist() == [1, 2]  # in from C; out to B and to outside
    assert counts.loc[B].tolist() == [1, 0]  # the B->B trip adds nothing
    assert counts.loc[C].tolist() == [1, 1]
    with_intra = mobility_from_trips(trips(), REGIONS, RES, count_intra_region=True)
    assert with_intra.loc[B].tolist() == [2, 1]


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="vehicle_id"):
        mobility_from_trajectories(trajectory().drop(columns="vehicle_id"), REGIONS, RES)


def test_mobility_counts_reads_a_bundle(tmp_path):
    regions_frame([A, B, C]).to_parquet(tmp_path / "regions.parquet")
    (tmp_path / "city.json").write_text(json.dumps({"name": "hand-made", "h3_resolution": RES}))
    trajectory().to_parquet(tmp_path / "trajectories.parquet")
    trips().to_parquet(tmp_path / "trips.parquet")
    bundle = CityBundle(tmp_path)
    auto = mobility_counts(bundle)  # trajectories preferred
    assert auto.loc[A].tolist() == [2, 1]
    both = mobility_counts(bundle, source="both")
    assert both.loc[A].tolist() == [3, 3]
    assert list(both.index) == [A, B, C]
    (tmp_path / "trips.parquet").unlink()
    with pytest.raises(ValueError, match="trips.parquet"):
        mobility_counts(bundle, source="trips")
