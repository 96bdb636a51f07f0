"""Street-view images: a folder plus a metadata table (image path, lon, lat, optional heading) into the bundle.

This is the shape of most street-view exports: a Mapillary or KartaView download with its metadata CSV, images fetched
from the Google Street View Static API or Baidu Panorama API with the request parameters logged, or any geotagged photo
set. Equirectangular panoramas can be split into four 90-degree views (0-90, 90-180, 180-270, 270-360 degrees of the
panorama's width), as MuseCL did; with a heading column, each view's heading is the compass direction of its centre,
taking the heading to be the direction of the panorama's centre column (Google's and Mapillary's convention).
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from musecl.opendata.config import StreetViewConfig
from musecl.opendata.points import RegionAssigner, coordinates_wgs84, require_columns, table_columns, valid_coordinates
from musecl.opendata.report import BAD_COORDINATES, DUPLICATE, OUTSIDE, UNREADABLE, BuildError, ReaderReport
from musecl.data.schema import STREET_VIEW_DIR

JPEG_QUALITY = 90
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _split_views(image, panoramas: bool) -> list:
    if not panoramas:
        return [image]
    width, height = image.size
    edges = [round(k * width / 4) for k in range(5)]
    return [image.crop((edges[k], 0, edges[k + 1], height)) for k in range(4)]


def _process(source: Path, targets: list[Path], panoramas: bool, max_size: int | None
             ) -> tuple[str | None, tuple[int, int] | None]:
    """Decode one image, split and downscale it, write its view(s): (the failure reason or None, its size)."""
    from PIL import Image

    from musecl.data.images import to_rgb8

    if not source.is_file():
        return "missing file", None
    try:
        with Image.open(source) as img:
            img = to_rgb8(img)
    except Exception as err:
        return f"cannot decode ({type(err).__name__})", None
    for view, target in zip(_split_views(img, panoramas), targets):
        if max_size is not None and max(view.size) > max_size:
            scale = max_size / max(view.size)
            view = view.resize((max(1, round(view.width * scale)), max(1, round(view.height * scale))),
                               Image.Resampling.LANCZOS)
        view.save(target, format="JPEG", quality=JPEG_QUALITY)
    return None, img.size


def not_two_to_one(sizes: list[tuple[int, int] | None]) -> list[int]:
    """Positions of the panoramas whose width is not twice their height (1 % tolerance): not full equirectangular
    360 x 180 degree panoramas (cropped, partial or cube-face images)."""
    return [i for i, s in enumerate(sizes) if s is not None and abs(s[0] / s[1] - 2.0) > 0.02]


def read_street_view(
    config: StreetViewConfig, assigner: RegionAssigner, bundle_root: Path, workers: int = 1, progress: bool = True
) -> tuple[pd.DataFrame, ReaderReport]:
    """Copy the images inside the city (split/downscaled as configured) into the bundle; return the image index."""
    from tqdm import tqdm

    report = ReaderReport("street view", str(config.metadata))
    wanted = [c for c in (config.path, config.lon, config.lat, config.heading, config.image_id) if c]
    require_columns(config.metadata, wanted, table_columns(config.metadata, config.separator),
                    "street_view.columns")
    text_cols = [c for c in (config.path, config.image_id) if c]
    try:
        meta = pd.read_csv(config.metadata, sep=config.separator, usecols=list(dict.fromkeys(wanted)),
                           dtype={c: "str" for c in text_cols})
    except Exception as err:
        raise BuildError(f"{config.metadata}: cannot read the street-view metadata ({err})") from err
    report.read = len(meta)
    lon, lat = coordinates_wgs84(meta, config.lon, config.lat, config.crs)
    if config.crs is not None:
        from musecl.opendata.crs import crs_note

        report.note(crs_note(config.crs, len(meta)))
    valid = valid_coordinates(lon, lat) & meta[config.path].notna().to_numpy()
    report.drop(BAD_COORDINATES, int((~valid).sum()))
    region = assigner.assign_valid(lon, lat, valid)
    report.drop(OUTSIDE, int((valid & (region == -1)).sum()))
    report.test_swap(assigner, lon, lat, region < 0)
    keep = region >= 0
    heading = (pd.to_numeric(meta[config.heading], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
               if config.heading else np.full(len(meta), np.nan))
    paths = meta[config.path].astype("str").to_numpy(dtype=object)
    ids = (meta[config.image_id].astype("str").to_numpy(dtype=object) if config.image_id
           else np.array([str(Path(p).with_suffix("")) for p in paths], dtype=object))
    dup = pd.Series(ids).duplicated().to_numpy() & keep
    report.drop(DUPLICATE, int(dup.sum()))
    keep &= ~dup
    rows = np.flatnonzero(keep)
    out_dir = bundle_root / STREET_VIEW_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    n_views = 4 if config.panoramas else 1
    jobs, records, used = [], [], set()
    for i in rows:
        stem = _UNSAFE.sub("_", ids[i]).strip("._") or "image"
        if stem in used:
            stem = f"{stem}_{i}"
        used.add(stem)
        names = [f"{stem}_{k * 90:03d}.jpg" for k in range(4)] if config.panoramas else [f"{stem}.jpg"]
        jobs.append((config.folder / paths[i], [out_dir / n for n in names]))
        for k, name in enumerate(names):
            view_heading = ((heading[i] - 180.0 + 45.0 + 90.0 * k) % 360.0) if config.panoramas else heading[i] % 360.0
            records.append({
                "image_id": f"{ids[i]}_{k * 90:03d}" if config.panoramas else str(ids[i]),
                "path": f"{STREET_VIEW_DIR}/{name}", "lon": lon[i], "lat": lat[i], "heading": view_heading,
                "_row": i,
            })

    def run(job):
        return _process(job[0], job[1], config.panoramas, config.max_size)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(tqdm(pool.map(run, jobs), total=len(jobs), desc="street-view images", unit=" images",
                            disable=not progress))
    sizes = [size for _, size in results]
    results = [reason for reason, _ in results]
    failed_rows = {rows[j] for j, reason in enumerate(results) if reason is not None}
    failures = [(str(jobs[j][0]), reason) for j, reason in enumerate(results) if reason is not None]
    report.drop(UNREADABLE, len(failures))
    if failures:
        report.note(f"{len(failures)} images missing or undecodable, e.g. {failures[0][0]} ({failures[0][1]})")
    index = pd.DataFrame(records, columns=["image_id", "path", "lon", "lat", "heading", "_row"])
    index = index[~index["_row"].isin(failed_rows)].drop(columns="_row").reset_index(drop=True)
    if not config.heading:
        index = index.drop(columns="heading")
    report.kept = len(rows) - len(failures)
    if config.panoramas:
        report.note(f"{report.kept:,} panoramas split into {len(index):,} views of 90 degrees")
        odd = not_two_to_one(sizes)
        if odd:
            w, h = sizes[odd[0]]
            report.warn(f"{len(odd):,} of {report.kept:,} panoramas are not 2:1 (e.g. {paths[rows[odd[0]]]}: {w}x{h} "
                        f"px, {w / h:.2f}:1), so not full 360x180-degree equirectangular panoramas (cropped in height, "
                        "partial in width, or not panoramas); each was still cut into four quarter-width views as if "
                        "it spans 360 degrees: where it spans less, the views cover less than 90 degrees and their "
                        "headings are off")
    report.check_outside_share()
    report.require_kept("street-view images")
    assert len(index) == report.kept * n_views
    return index, report
