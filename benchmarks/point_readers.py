"""Benchmark of the point readers of `musecl.opendata`: points per second and peak memory.

    .venv/bin/python benchmarks/point_readers.py                       # 3 M trips, 2 M GPS fixes
    .venv/bin/python benchmarks/point_readers.py --trips 20000000 --json reports/benchmarks/point_readers.json

Inputs are generated on the fly in a temporary folder, in the layouts the readers were written for: an NYC-TLC-style
trip CSV and the same as Parquet, and a T-Drive-style folder with one text file per taxi. Each reader runs in a fresh
process so its peak resident memory (VmHWM) is its own; "peak - before" subtracts the resident memory of that process
after imports and region set-up, before reading: the memory the reader itself needed. The region assignment alone (one H3 call per point, then a binary search) is timed too.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CENTRE = (116.40, 39.90)  # Beijing, where T-Drive was recorded
HALF_SIZE_DEG = (0.12, 0.09)  # ~20 km x 20 km


def _memory_mb() -> tuple[float, float]:
    """(current resident memory, peak resident memory so far) of this process, in MB (Linux /proc)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024.0, int(fields["VmHWM"].split()[0]) / 1024.0
    except (OSError, KeyError):  # not Linux: only the peak is known
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return peak, peak


def _points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # 95 % inside the box, 5 % far away (other cities' trips, bad fixes): the readers must drop them.
    lon = CENTRE[0] + rng.uniform(-1, 1, n) * HALF_SIZE_DEG[0] * 1.05
    lat = CENTRE[1] + rng.uniform(-1, 1, n) * HALF_SIZE_DEG[1] * 1.05
    far = rng.random(n) < 0.05
    lon[far] += 3.0
    return lon.round(6), lat.round(6)


def write_trips(folder: Path, n: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    o_lon, o_lat = _points(rng, n)
    d_lon, d_lat = _points(rng, n)
    start = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 31 * 86_400, n), unit="s")
    frame = pd.DataFrame({
        "VendorID": rng.integers(1, 3, n), "tpep_pickup_datetime": start,
        "tpep_dropoff_datetime": start + pd.to_timedelta(rng.integers(60, 3_600, n), unit="s"),
        "passenger_count": rng.integers(1, 5, n), "trip_distance": rng.gamma(2.0, 1.5, n).round(2),
        "pickup_longitude": o_lon, "pickup_latitude": o_lat, "dropoff_longitude": d_lon, "dropoff_latitude": d_lat,
        "fare_amount": rng.gamma(2.0, 6.0, n).round(2),
    })
    parquet = folder / "trips.parquet"
    frame.to_parquet(parquet, index=False, row_group_size=1_000_000)
    csv = folder / "trips.csv"
    frame.to_csv(csv, index=False, date_format="%Y-%m-%d %H:%M:%S")
    return csv, parquet


def write_tdrive(folder: Path, n_points: int, n_taxis: int, seed: int) -> Path:
    rng = np.random.default_rng(seed + 1)
    out = folder / "taxi_log_2008_by_id"
    out.mkdir()
    per_taxi = n_points // n_taxis
    for taxi in range(1, n_taxis + 1):
        lon, lat = _points(rng, per_taxi)
        times = pd.Timestamp("2008-02-02") + pd.to_timedelta(np.cumsum(rng.integers(30, 300, per_taxi)), unit="s")
        pd.DataFrame({"id": taxi, "time": times.strftime("%Y-%m-%d %H:%M:%S"), "lon": lon, "lat": lat}).to_csv(
            out / f"{taxi}.txt", index=False, header=False)
    return out


def _assigner(resolution: int):
    import shapely

    from musecl.opendata.points import RegionAssigner
    from musecl.data.regions import regions_from_boundary

    box = shapely.box(CENTRE[0] - HALF_SIZE_DEG[0], CENTRE[1] - HALF_SIZE_DEG[1], CENTRE[0] + HALF_SIZE_DEG[0],
                      CENTRE[1] + HALF_SIZE_DEG[1])
    regions = regions_from_boundary(box, resolution)
    return RegionAssigner(regions["region_id"].to_numpy(), resolution)


def _run(kind: str, path: str, resolution: int, chunk_rows: int, queue: mp.Queue) -> None:
    """One measurement, in its own process."""
    from musecl.opendata.config import TrajectoriesConfig, TripsConfig
    from musecl.opendata.trajectories import read_trajectories
    from musecl.opendata.trips import read_trips

    assigner = _assigner(resolution)
    base, _ = _memory_mb()
    out = Path(tempfile.mkdtemp()) / "out.parquet"
    started = time.perf_counter()
    if kind.startswith("trips"):
        config = TripsConfig(files=(Path(path),), start_time="tpep_pickup_datetime",
                             end_time="tpep_dropoff_datetime", origin_lon="pickup_longitude",
                             origin_lat="pickup_latitude", dest_lon="dropoff_longitude", dest_lat="dropoff_latitude",
                             time_format="%Y-%m-%d %H:%M:%S", chunk_rows=chunk_rows)
        report, _ = read_trips(config, assigner, out, seed=0, progress=False)
        points = 2 * report.read  # origin and destination
    else:
        config = TrajectoriesConfig(folder=Path(path))
        report, _ = read_trajectories(config, assigner, out, progress=False)
        points = report.read
    seconds = time.perf_counter() - started
    _, peak = _memory_mb()
    queue.put({"reader": kind, "rows": report.read, "points": points, "kept": report.kept, "seconds": seconds,
               "points_per_s": points / seconds, "base_rss_mb": base, "peak_rss_mb": peak,
               "peak_minus_base_mb": peak - base, "regions": assigner.n_regions})


def _assignment(n: int, resolution: int, queue: mp.Queue) -> None:
    from musecl.data.regions import latlng_to_cells

    assigner = _assigner(resolution)
    rng = np.random.default_rng(7)
    lon, lat = _points(rng, n)
    started = time.perf_counter()
    latlng_to_cells(lat, lon, resolution)
    h3_seconds = time.perf_counter() - started
    started = time.perf_counter()
    assigner.assign(lon, lat)
    seconds = time.perf_counter() - started
    nan = float("nan")
    queue.put({"reader": "h3 latlng_to_cells only", "rows": n, "points": n, "kept": n, "seconds": h3_seconds,
               "points_per_s": n / h3_seconds, "base_rss_mb": nan, "peak_rss_mb": nan, "peak_minus_base_mb": nan,
               "regions": assigner.n_regions})
    queue.put({"reader": "RegionAssigner.assign (h3 + lookup)", "rows": n, "points": n, "kept": n,
               "seconds": seconds, "points_per_s": n / seconds, "base_rss_mb": nan, "peak_rss_mb": nan,
               "peak_minus_base_mb": nan, "regions": assigner.n_regions})


def _in_process(target, *args) -> list[dict]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    results = []
    while proc.is_alive() or not queue.empty():
        try:
            results.append(queue.get(timeout=1))
        except Exception:
            continue
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"benchmark process {target.__name__}{args} failed with exit code {proc.exitcode}")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trips", type=int, default=3_000_000, help="trip rows (default 3 M)")
    parser.add_argument("--trajectory-points", type=int, default=2_000_000, help="GPS fixes (default 2 M)")
    parser.add_argument("--taxis", type=int, default=2_000, help="taxi files the fixes are spread over")
    parser.add_argument("--resolution", type=int, default=8, help="H3 resolution of the regions (default 8)")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000, help="rows per chunk of the trip reader")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        csv, parquet = write_trips(folder, args.trips, args.seed)
        tdrive = write_tdrive(folder, args.trajectory_points, args.taxis, args.seed)
        print(f"inputs generated in {time.perf_counter() - started:.0f} s "
              f"(trips.csv {csv.stat().st_size / 1e6:.0f} MB, trips.parquet {parquet.stat().st_size / 1e6:.0f} MB)",
              file=sys.stderr)
        rows += _in_process(_assignment, args.trips, args.resolution)
        rows += _in_process(_run, "trips (CSV)", str(csv), args.resolution, args.chunk_rows)
        rows += _in_process(_run, "trips (Parquet)", str(parquet), args.resolution, args.chunk_rows)
        # Memory follows the chunk, not the file: the same file with chunks four times smaller.
        rows += _in_process(_run, f"trips (Parquet, chunk_rows {args.chunk_rows // 4:,})", str(parquet),
                            args.resolution, args.chunk_rows // 4)
        rows += _in_process(_run, "trajectories (T-Drive)", str(tdrive), args.resolution, args.chunk_rows)
    print(f"\nH3 resolution {args.resolution}, {rows[0]['regions']} regions, chunk_rows {args.chunk_rows:,}\n")
    print("| reader | rows | points | kept rows | seconds | points/s | RSS before (MB) | peak RSS (MB) | peak - before (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['reader']} | {int(r['rows']):,} | {int(r['points']):,} | {int(r['kept']):,} | {r['seconds']:.2f} | "
              f"{r['points_per_s'] / 1e6:.2f} M | {r['base_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
              f"{r['peak_minus_base_mb']:.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
