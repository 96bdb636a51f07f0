"""GPS trajectories in the T-Drive layout (one text file per taxi: `id,time,lon,lat`) into `trajectories.parquet`.

Files are read in groups of `files_per_chunk` and written as they come. Only fixes inside a region are kept; the fixes
outside still count for the region entries/exits (MuseCL's mobility counts), which are computed on every valid fix in
time order per vehicle: a taxi *enters* a region when its fix lies in that region and its previous fix did not.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from musecl.opendata.config import TrajectoriesConfig
from musecl.opendata.points import RegionAssigner, coordinates_wgs84, parse_times, valid_coordinates
from musecl.opendata.report import BAD_COORDINATES, BAD_TIME, OUTSIDE, BuildError, ReaderReport

MALFORMED = "malformed line"
SCHEMA = pa.schema([("vehicle_id", pa.string()), ("time", pa.timestamp("us")), ("lon", pa.float64()),
                    ("lat", pa.float64())])


@dataclass
class TrajectoryCounts:
    """Per-region taxi entries and exits (MuseCL's m_in and m_out), over all vehicles."""

    entries: np.ndarray
    exits: np.ndarray


def trajectory_files(config: TrajectoriesConfig) -> list[Path]:
    files = sorted(p for p in config.folder.rglob(config.pattern) if p.is_file())
    if not files:
        raise BuildError(f"{config.folder}: no file matches trajectories.pattern {config.pattern!r}")
    return files


def _count_lines(data: bytes) -> int:
    """Non-blank lines of a file's bytes (what the parser will see, malformed lines included)."""
    if not data.strip():
        return 0
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return lines - data.count(b"\n\n") - int(data.startswith(b"\n"))


def _parse(data: bytes, config: TrajectoriesConfig, source: str) -> pd.DataFrame:
    # All columns are parsed (no usecols), so a line with more fields than `columns` is malformed and skipped; lon/lat
    # are left to the parser's number detection (text only where a value is not a number, then coerced later).
    names = [f"{c}_{i}" if c == "skip" else c for i, c in enumerate(config.columns)]
    try:
        frame = pd.read_csv(
            io.BytesIO(data), sep=config.separator, header=None, names=names,
            dtype={"vehicle_id": "str", "time": "str"}, on_bad_lines="skip", skip_blank_lines=True, engine="c",
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise BuildError(f"{source}: cannot parse as trajectory files with columns {list(config.columns)} "
                         f"separated by {config.separator!r} ({err})") from err
    return frame[[c for c in config.columns if c != "skip"]]


def _read_group(paths: list[Path], config: TrajectoriesConfig, report: ReaderReport) -> pd.DataFrame | None:
    """A group of taxi files as one frame. Files are concatenated and parsed in one call (T-Drive has 10,357 small
    files; a parser call per file would dominate); lines are counted so malformed ones can be reported."""
    chunks, stems, counts, kept_paths = [], [], [], []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise BuildError(f"{path}: cannot read trajectory file ({err})") from err
        if config.header:
            data = data.split(b"\n", 1)[1] if b"\n" in data else b""
        n_lines = _count_lines(data)
        if n_lines == 0:
            report.drop("empty file", 1)
            continue
        chunks.append(data if data.endswith(b"\n") else data + b"\n")
        stems.append(path.stem)
        counts.append(n_lines)
        kept_paths.append(path)
    if not chunks:
        return None
    report.read += sum(counts)
    if "vehicle_id" in config.columns:
        frame = _parse(b"".join(chunks), config, f"{paths[0].parent} ({paths[0].name}...)")
    else:  # the file name is the vehicle: parse file by file to know which rows came from which
        frames = []
        for data, stem, path in zip(chunks, stems, kept_paths):
            frame = _parse(data, config, str(path))
            frames.append(frame.assign(vehicle_id=stem))
        frame = pd.concat(frames, ignore_index=True)
    report.drop(MALFORMED, sum(counts) - len(frame))
    return frame


def read_trajectories(
    config: TrajectoriesConfig, assigner: RegionAssigner, out_path: Path, progress: bool = True
) -> tuple[ReaderReport, TrajectoryCounts]:
    """Stream the taxi files into `out_path` (Parquet, sorted by vehicle and time within each group of files)."""
    import pyarrow.parquet as pq
    from tqdm import tqdm

    files = trajectory_files(config)
    report = ReaderReport("trajectories", str(config.folder))
    report.note(f"{len(files):,} files matching {config.pattern!r}")
    if config.crs is not None:
        from musecl.opendata.crs import crs_note

        report.note(crs_note(config.crs, 0).replace("0 coordinates", "GPS fixes"))
    entries = np.zeros(assigner.n_regions, dtype=np.int64)
    exits = np.zeros(assigner.n_regions, dtype=np.int64)
    with pq.ParquetWriter(out_path, SCHEMA) as writer:
        for start in tqdm(range(0, len(files), config.files_per_chunk), desc="trajectory files", unit=" groups",
                          disable=not progress):
            group = _read_group(files[start:start + config.files_per_chunk], config, report)
            if group is None:
                continue
            table = _clean_group(group, config, assigner, report, entries, exits)
            if table is not None:
                writer.write_table(table)
    report.check_outside_share()
    report.require_kept("trajectory points")
    return report, TrajectoryCounts(entries, exits)


def _clean_group(
    frame: pd.DataFrame, config: TrajectoriesConfig, assigner: RegionAssigner, report: ReaderReport,
    entries: np.ndarray, exits: np.ndarray,
) -> pa.Table | None:
    lon, lat = coordinates_wgs84(frame, "lon", "lat", config.crs)
    valid = valid_coordinates(lon, lat)
    report.drop(BAD_COORDINATES, int((~valid).sum()))
    report.test_swap(assigner, lon, lat, ~valid)
    times = parse_times(frame["time"], config.time_format)
    good_time = times.notna().to_numpy().copy()
    report.drop(BAD_TIME, int((valid & ~good_time).sum()))
    valid &= good_time
    # Vehicles as integer codes (no Python string per fix); time order per vehicle (lexsort is stable).
    codes, names = pd.factorize(frame["vehicle_id"].astype("str").str.strip(), sort=True)
    codes, lon, lat, times = codes[valid], lon[valid], lat[valid], times.to_numpy()[valid]
    order = np.lexsort((times, codes))
    codes, lon, lat, times = codes[order], lon[order], lat[order], times[order]
    region = assigner.assign(lon, lat)
    same_vehicle = np.zeros(len(region), dtype=bool)
    same_vehicle[1:] = codes[1:] == codes[:-1]
    previous = np.full(len(region), -1, dtype=np.int64)
    previous[1:] = region[:-1]
    previous[~same_vehicle] = -1  # the first fix of a vehicle enters its region
    changed = region != previous
    entries += assigner.counts(np.where(changed, region, -1))
    exits += assigner.counts(np.where(changed & same_vehicle, previous, -1))
    inside = region >= 0
    report.drop(OUTSIDE, int((~inside).sum()))
    report.test_swap(assigner, lon, lat, ~inside)
    report.kept += int(inside.sum())
    if not inside.any():
        return None
    import pyarrow.compute as pc

    vehicle = pc.take(pa.array(np.asarray(names, dtype=object), type=pa.string()), pa.array(codes[inside]))
    return pa.Table.from_arrays([vehicle, pa.array(times[inside], type=pa.timestamp("us")), pa.array(lon[inside]),
                                 pa.array(lat[inside])], schema=SCHEMA)
