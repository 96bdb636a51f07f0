"""Decode every image of a modality once into a compact uint8 array, so that training never waits on JPEG/PNG decoding.

A cache is a folder (DVC-tracked) with
  images.npy   (n_images, height, width, 3) uint8, read as a memory map
  index.parquet image_id, region_id, path (row i describes images[i])
  meta.json    modality, size, source bundle, counts
Images are centre-cropped to the modality's most common aspect ratio and resized so the short side is `image_size`,
once, with Pillow's antialiased bilinear filter. Writing goes through `storage.atomic_dir`: an interrupted build leaves no
cache behind.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from PIL import Image

from musecl.contract import IMAGE_TABLES as MODALITIES  # modality -> bundle table
from musecl.contract import REGION_ID

IMAGES_FILE, INDEX_FILE, META_FILE = "images.npy", "index.parquet", "meta.json"


def image_table(bundle, modality: str) -> pd.DataFrame:
    """The modality's images with their region: remote sensing names it; street view is assigned by its lon/lat (h3).

    Street-view images whose camera lies in no region are left out and counted in `table.attrs["outside_regions"]`.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {sorted(MODALITIES)}")
    table = bundle.read(MODALITIES[modality])
    regions = bundle.regions()[REGION_ID].astype(str).to_numpy(dtype=object)
    if modality == "rs":
        out = table[["image_id", REGION_ID, "path"]].copy()
        unknown = ~pd.Index(out[REGION_ID].astype(object)).isin(regions)
        if unknown.any():
            raise ValueError(
                f"{bundle.root}/remote_sensing.parquet: row {int(np.flatnonzero(unknown)[0])} has region_id "
                f"{out[REGION_ID].iloc[int(np.flatnonzero(unknown)[0])]!r}, which is not in regions.parquet"
            )
        outside = 0
    else:
        from musecl.data.regions import assign_points_to_regions

        assigned = assign_points_to_regions(table["lon"].to_numpy(), table["lat"].to_numpy(), regions, bundle.h3_resolution)
        inside = ~pd.isna(assigned)
        out = table.loc[inside, ["image_id", "path"]].copy()
        out.insert(1, REGION_ID, assigned[inside])
        outside = int((~inside).sum())
    out = out.astype({"image_id": object, REGION_ID: object, "path": object}).reset_index(drop=True)
    out.attrs["outside_regions"] = outside
    return out


@dataclass
class ImageCache:
    """A built cache: `images` is a read-only memory map, `index` describes its rows."""

    root: Path
    images: np.ndarray
    index: pd.DataFrame
    meta: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> ImageCache:
        root = Path(root)
        for name in (IMAGES_FILE, INDEX_FILE, META_FILE):
            if not (root / name).is_file():
                raise FileNotFoundError(f"image cache {root}: missing {name} (build it with build_image_cache)")
        images = np.load(root / IMAGES_FILE, mmap_mode="r")
        index = pd.read_parquet(root / INDEX_FILE)
        index = index.astype({c: object for c in index.columns if c in ("image_id", REGION_ID, "path")})
        meta = json.loads((root / META_FILE).read_text())
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or len(images) != len(index):
            raise ValueError(
                f"image cache {root}: images.npy has shape {images.shape} {images.dtype}, expected "
                f"({len(index)}, H, W, 3) uint8 to match index.parquet"
            )
        return cls(root, images, index, meta)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def rows(self, image_ids: Iterable[str], what: str = "image_id") -> np.ndarray:
        """Cache rows of `image_ids`; an unknown id is an error naming it."""
        ids = pd.Index(np.asarray(list(image_ids) if not isinstance(image_ids, (np.ndarray, pd.Series, pd.Index)) else image_ids, dtype=object))
        rows = pd.Index(self.index["image_id"]).get_indexer(ids)
        if (rows < 0).any():
            bad = ids[int(np.flatnonzero(rows < 0)[0])]
            raise KeyError(f"{what} {bad!r} is not in the image cache {self.root} ({len(self)} images)")
        return rows.astype(np.int64)

    @property
    def fingerprint(self) -> str:
        return str(self.meta.get("fingerprint", ""))


def table_fingerprint(table: pd.DataFrame, shape: tuple[int, int], image_root: str | Path | None = None) -> str:
    """Identity of a cache's content: image ids, regions, paths, the cached image shape and, given `image_root`, a
    digest of each file's bytes (so edited images are noticed without decoding them, and a regenerated but identical
    city gives the same fingerprint: no modification time enters it, so the cache is the same bytes on every run)."""
    columns = [c for c in ("image_id", REGION_ID, "path") if c in table.columns]
    frame = table[columns].astype(str)
    if image_root is not None:
        digests = [hashlib.blake2b((Path(image_root) / p).read_bytes(), digest_size=8).hexdigest()
                   for p in table["path"].astype(str)]
        frame = frame.assign(content=digests)
    digest = int(pd.util.hash_pandas_object(frame, index=False).sum()) & 0xFFFFFFFFFFFFFFFF
    return f"{digest:016x}-{len(table)}-{shape[0]}x{shape[1]}"


def _target_shape(sizes: list[tuple[int, int]], image_size: int) -> tuple[int, int]:
    """(height, width): the most common aspect ratio, short side = image_size."""
    w, h = Counter(sizes).most_common(1)[0][0]
    if h <= w:
        return image_size, int(round(image_size * w / h))
    return int(round(image_size * h / w)), image_size


def _load_one(path: Path, shape: tuple[int, int]) -> np.ndarray:
    from musecl.data.images import to_rgb8  # high-depth images scaled to 8 bits, never clipped

    height, width = shape
    try:
        with Image.open(path) as img:
            img = to_rgb8(img)
            w, h = img.size
            target = width / height
            if abs(w / h - target) > 1e-3:  # centre-crop to the cache's aspect ratio
                if w / h > target:
                    cw = int(round(h * target))
                    img = img.crop(((w - cw) // 2, 0, (w - cw) // 2 + cw, h))
                else:
                    ch = int(round(w / target))
                    img = img.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
            if img.size != (width, height):
                img = img.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=None)
            return np.asarray(img, dtype=np.uint8)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: image file missing") from err
    except (OSError, ValueError) as err:  # ValueError: a float image outside [0, 1] (musecl.data.images.to_rgb8)
        raise ValueError(f"{path}: cannot decode image ({err})") from err


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with Image.open(path) as img:  # reads the header only
            return img.size
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: image file missing") from err
    except OSError as err:
        raise ValueError(f"{path}: cannot read image header ({err})") from err


def build_image_cache(
    table: pd.DataFrame,
    image_root: str | Path,
    out_dir: str | Path,
    image_size: int,
    modality: str = "",
    workers: int = 2,
    progress: bool = True,
    chunk: int = 256,
) -> ImageCache:
    """Decode the images of `table` (image_id, region_id, path relative to `image_root`) into a cache at `out_dir`.

    Decoding runs in `workers` threads (Pillow releases the GIL while decoding and resizing).
    """
    from musecl.storage import atomic_dir

    for column in ("image_id", REGION_ID, "path"):
        if column not in table.columns:
            raise ValueError(f"image table: missing column '{column}' (have {list(table.columns)})")
    if len(table) == 0:
        raise ValueError(f"image table for modality {modality!r} is empty: nothing to cache")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 px, got {image_size}")
    root = Path(image_root)
    paths = [root / p for p in table["path"].astype(str)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        sizes = list(pool.map(_image_size, paths, chunksize=64))
    shape = _target_shape(sizes, image_size)
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(paths), desc=f"caching {modality or 'images'}", unit="img", mininterval=10.0)
        except ImportError:
            bar = None
    index = table[["image_id", REGION_ID, "path"]].astype(object).reset_index(drop=True)
    with atomic_dir(out_dir) as tmp:
        images = np.lib.format.open_memmap(tmp / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=(len(paths), *shape, 3))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for start in range(0, len(paths), chunk):
                part = paths[start : start + chunk]
                images[start : start + len(part)] = np.stack(list(pool.map(lambda p: _load_one(p, shape), part)))
                if bar is not None:
                    bar.update(len(part))
        images.flush()
        del images
        index.to_parquet(tmp / INDEX_FILE, index=False)
        meta = {
            "modality": modality,
            "n_images": len(index),
            "height": shape[0],
            "width": shape[1],
            "image_size": image_size,
            "source": Path(root).name,  # the bundle folder's name only: no machine path in a DVC output
            "fingerprint": table_fingerprint(index, shape, root),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if bar is not None:
        bar.close()
    return ImageCache.open(out_dir)


def open_or_build_cache(
    table: pd.DataFrame, image_root: str | Path, out_dir: str | Path, image_size: int, modality: str = "",
    workers: int = 2, progress: bool = True,
) -> tuple[ImageCache, bool]:
    """The cache at `out_dir` if it holds exactly `table`'s images at `image_size`, else a freshly built one.

    Returns (cache, reused).
    """
    out_dir = Path(out_dir)
    if (out_dir / META_FILE).is_file():
        try:
            cache = ImageCache.open(out_dir)
        except (FileNotFoundError, ValueError):
            cache = None
        if cache is not None and cache.meta.get("image_size") == image_size:
            index = table[["image_id", REGION_ID, "path"]].astype(object).reset_index(drop=True)
            if cache.fingerprint == table_fingerprint(index, cache.image_shape, image_root):
                return cache, True
    return build_image_cache(table, image_root, out_dir, image_size, modality, workers, progress), False


def cache_from_arrays(images: np.ndarray, image_ids: Iterable[str], region_ids: Iterable[str], out_dir: str | Path) -> ImageCache:
    """Write an in-memory (n, H, W, 3) uint8 array as a cache (tests, or images that come from elsewhere)."""
    from musecl.storage import atomic_dir

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected (n, H, W, 3) uint8 images, got {images.shape} {images.dtype}")
    index = pd.DataFrame({"image_id": list(image_ids), REGION_ID: list(region_ids)}, dtype=object)
    index["path"] = ""
    if len(index) != len(images):
        raise ValueError(f"{len(images)} images but {len(index)} ids")
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / IMAGES_FILE, images)
        index.to_parquet(tmp / INDEX_FILE, index=False)
        meta = {
            "modality": "arrays",
            "n_images": len(index),
            "height": images.shape[1],
            "width": images.shape[2],
            "fingerprint": table_fingerprint(index, images.shape[1:3]),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return ImageCache.open(out_dir)
