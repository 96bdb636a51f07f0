"""Checks of the image tables (`remote_sensing.parquet`, `street_view.parquet`) and of the image files they
reference: regions or street-view coordinates, headings, paths inside the bundle, files that exist and decode.

Files are listed with one directory walk per image folder and decoded once each, in a few threads (Pillow releases
the GIL while decoding). The region of every usable street-view image (`ctx.sv_regions`) is left for the coverage
check.
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from musecl.contract import REGION_ID
from musecl.data import schema
from musecl.data.validate.context import Context, short
from musecl.data.validate.points import check_points

# Image table -> the folder (relative to the bundle) its images must lie under.
IMAGE_FOLDERS = {"remote_sensing": schema.REMOTE_SENSING_DIR, "street_view": schema.STREET_VIEW_DIR}


def check_images_tables(ctx: Context) -> None:
    """Per image table: street-view points and headings or remote-sensing regions, then the image files."""
    for name, folder in IMAGE_FOLDERS.items():
        if name not in ctx.usable:
            continue
        if name == "street_view":
            check_points(ctx, name, "lon", "lat")
            frame = ctx.frames[name]
            if "heading" in frame.columns:
                heading = frame["heading"].to_numpy(dtype=np.float64, na_value=np.nan)
                ctx.rows(name, ~np.isnan(heading) & ~((heading >= 0) & (heading < 360)),
                         "have a heading outside [0, 360)", "degrees clockwise from north in [0, 360) (or empty)",
                         ["heading"], reason="bad heading")
        else:
            ids = ctx.frames[name][REGION_ID].astype("string")
            known = ids.isin(ctx.region_ids).to_numpy(dtype=bool) if ctx.region_ids is not None else None
            if known is not None:
                ctx.rows(name, ~known, f"refer to a region not in {schema.REGIONS_FILE}",
                         f"a region_id of {schema.REGIONS_FILE}", [REGION_ID], reason="unknown region_id")
        check_image_files(ctx, name, folder)
    if "street_view" in ctx.usable and ctx.region_ids is not None and ctx.resolution is None:
        ctx.not_checked("the region of each street-view image, and so which regions have one",
                        ctx.missing_resolution())
    if "street_view" in ctx.usable and ctx.region_ids is not None and ctx.resolution is not None:
        from musecl.data.regions import assign_points_to_regions

        frame = ctx.frames["street_view"]
        ok = ctx.ok["street_view"]
        regions = np.full(len(frame), None, dtype=object)
        regions[ok] = assign_points_to_regions(frame["lon"].to_numpy(np.float64)[ok],
                                               frame["lat"].to_numpy(np.float64)[ok], ctx.region_ids,
                                               ctx.resolution)
        ctx.sv_regions = regions


def check_image_files(ctx: Context, name: str, folder: str) -> None:
    """Paths stay under `folder` (also once symbolic links are resolved), the files exist (one directory walk) and
    decode with Pillow; images that are not 8-bit RGB are counted in a warning (they are converted when decoded)."""
    file = schema.TABLES[name].file
    paths = ctx.frames[name]["path"].astype("string")
    bad_path = (
        paths.isna()
        | ~paths.str.startswith(folder + "/").fillna(False)
        | paths.str.contains(r"(?:^|/)\.\.(?:/|$)|\\", regex=True).fillna(False)
    ).to_numpy(dtype=bool)
    ctx.rows(name, bad_path, f"have an image path outside {folder}/",
             f"a relative path inside the bundle under {folder}/ (no absolute paths, no '..')", ["path"],
             reason="image path outside the bundle")
    on_disk = files_under(ctx.root, folder)
    exists = paths.isin(on_disk).to_numpy(dtype=bool)
    ctx.rows(name, ~exists, "reference an image file that does not exist",
             f"an existing file, relative to the bundle folder {ctx.root}", ["path"], reason="missing image file")
    check_links(ctx, name, folder, paths)
    referenced = sorted(set(paths[ctx.ok[name]].tolist()))
    unreferenced = on_disk - set(paths.dropna().tolist())
    if unreferenced:
        ctx.warn(f"{folder}/: {len(unreferenced)} file(s) are not referenced by {file} and are ignored "
                 f"(first: {sorted(unreferenced)[0]})")
    if not ctx.check_images or not referenced:
        return
    results = decode_images(ctx.root, referenced, ctx.progress, desc=f"decoding {folder}")
    failures = {p: err for p, (err, _, _) in zip(referenced, results) if err is not None}
    sides = {p: side for p, (err, side, _) in zip(referenced, results) if err is None}
    unreadable = paths.isin(list(failures)).to_numpy(dtype=bool)
    if (unreadable & ctx.ok[name]).any():
        first = paths.iloc[int(np.flatnonzero(unreadable & ctx.ok[name])[0])]
        ctx.rows(name, unreadable, f"reference a file Pillow cannot decode (first error: {failures[first]})",
                 "a readable image (PNG, JPEG, ...)", ["path"], reason="unreadable image")
    side = paths.map(sides).astype("float64").fillna(np.inf).to_numpy()
    ctx.rows(name, side < ctx.min_image_side, f"reference an image smaller than {ctx.min_image_side} px",
             f"images at least {ctx.min_image_side} px wide and high", ["path"], reason="image too small")
    kept = set(paths[ctx.ok[name]].dropna().tolist())
    notes = {p: note for p, (err, _, note) in zip(referenced, results) if err is None and note and p in kept}
    if notes:
        counts = Counter(notes.values())
        kinds = ", ".join(f"{n} {note}" for note, n in counts.most_common())
        ctx.warn(f"{file}: column 'path': {len(notes)} image(s) are not 8-bit RGB and are converted when decoded: "
                 f"{kinds} (first: {min(notes)}); expected 8-bit RGB images (converted as "
                 "musecl.data.images.to_rgb8 does, which the image caches use too)")


def check_links(ctx: Context, name: str, folder: str, paths) -> None:
    """Symbolic links: every image path must resolve (no loop) to a file inside the bundle or its image folder.

    The image folder itself may be a link (to a bigger disk); a file under it that links elsewhere is refused.
    """
    allowed = [ctx.root.resolve(), (ctx.root / folder).resolve()]
    looping, leaving = [], []
    targets: dict[str, str] = {}  # path -> the error (loop) or where it leads (outside)
    for rel in paths[ctx.ok[name]].dropna().unique():
        try:
            real = (ctx.root / rel).resolve(strict=True)
        except (RuntimeError, OSError) as err:  # RuntimeError: "Symlink loop" (Python < 3.13); OSError: ELOOP
            targets[rel] = short(err)
            looping.append(rel)
            continue
        if not any(real.is_relative_to(base) for base in allowed):
            targets[rel] = str(real)
            leaving.append(rel)
    loops = paths.isin(looping).fillna(False).to_numpy(dtype=bool)
    outside = paths.isin(leaving).fillna(False).to_numpy(dtype=bool)
    if loops.any():
        first = paths[loops & ctx.ok[name]].iloc[0]
        ctx.rows(name, loops, f"are symbolic links that loop or cannot be resolved ({targets[first]})",
                 "a path that resolves to an image file (no symlink loop)", ["path"], reason="symlink loop")
    if outside.any():
        first = paths[outside & ctx.ok[name]].iloc[0]
        ctx.rows(name, outside, f"are symbolic links to a file outside the bundle (the first leads to "
                 f"{targets[first]})", f"image files inside the bundle folder {ctx.root} (copy the file in instead "
                 "of linking it)", ["path"], reason="symlink outside the bundle")


def files_under(root: Path, folder: str) -> set[str]:
    """Bundle-relative posix paths of every file under `folder` (one walk instead of one stat per row).

    Links to folders are followed (image folders are often links to big disks), but a folder that is one of its own
    ancestors (a link loop such as a -> b, b -> a or a link to '.') is not entered again, so the walk always ends.
    """
    base = root / folder
    found: set[str] = set()
    ancestors: dict[str, frozenset] = {}
    for dirpath, dirnames, files in os.walk(base, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        ident = (info.st_dev, info.st_ino)
        above = ancestors.get(os.path.dirname(dirpath), frozenset())
        if ident in above:  # a loop: this folder is already on the path from the base
            dirnames[:] = []
            continue
        ancestors[dirpath] = above | {ident}
        rel = Path(dirpath).relative_to(root).as_posix()
        found.update(f"{rel}/{f}" for f in files)
    return found


def decode_one(path: Path) -> tuple[str | None, int, str | None]:
    """(None, smaller side in pixels, conversion note) when the file decodes to 8-bit RGB, else (the error, 0, None)."""
    from PIL import Image

    from musecl.data.images import conversion_note, to_rgb8

    try:
        with Image.open(path) as img:
            img.load()  # decodes every pixel: truncated or corrupt files fail here
            note = conversion_note(img)
            to_rgb8(img)  # as the image caches decode it (a float image outside [0, 1] fails here)
            return None, min(img.size), note
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        detail = short(err).replace(f"'{path}'", "").replace(str(path), "").strip()
        return (f"{type(err).__name__}: {detail}" if detail else type(err).__name__), 0, None


def decode_images(root: Path, paths: list[str], progress: bool, desc: str) -> list[tuple[str | None, int, str | None]]:
    """Decode each image once; Pillow releases the GIL while decoding, so a few threads help."""
    from tqdm import tqdm

    if not paths:
        return []
    workers = max(1, min(8, (os.cpu_count() or 1)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(decode_one, (root / p for p in paths), chunksize=64), total=len(paths), desc=desc,
                         unit="img", disable=not progress))
