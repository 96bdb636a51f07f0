"""Captions for the images of a real city: a user's caption file from any captioner, a built-in region description
from the city's own open data, and an optional local image-to-text model.

* :func:`read_caption_file`: CSV, Parquet or JSON (lines) with `caption`, `image_id` or `path` (matched to the
  bundle's image tables), and optionally `captioner` (default: the file's stem) and `modality`.
* :func:`describe_regions`: captioner ``"open_data"``. Every image gets a description of **its region**, written from
  the bundle's POIs (count, and the shares of the first-level categories) and any region attributes you pass (e.g.
  land-use shares from your own source). It is a region description, not an image description: all images of a region
  get the same text. The indicators (the regression targets) and the synthetic latents are never used: a caption that
  states a target would leak it into the image-text model that is later evaluated on it. The POI count is the
  `poi_count` indicator when a bundle carries that one; MuseCL's POI text has the same overlap (docs/method.md §1.13),
  and `include_poi_count=False` leaves it out.
* :func:`caption_with_local_model`: a Hugging Face image-to-text model through `transformers`, only when that package
  is installed and the weights are already in a local folder (nothing is downloaded).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from musecl.contract import IMAGE_TABLES, REGION_ID
from musecl.data import CityBundle
from musecl.data.regions import assign_points_to_regions
from musecl.data.schema import REMOTE_SENSING_DIR, STREET_VIEW_DIR
from musecl.opendata.report import BuildError, ReaderReport

OPEN_DATA_CAPTIONER = "open_data"
IMAGE_DIRS = {"rs": REMOTE_SENSING_DIR, "sv": STREET_VIEW_DIR}
EMPTY_CAPTION = "empty caption"
DUPLICATE_CAPTION = "duplicate row"
UNMATCHED = "no matching image"


class CaptionModelUnavailable(RuntimeError):
    """The optional local captioning model cannot run: `transformers` or the model's files are missing."""


def image_tables(bundle: CityBundle | str | Path | Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The bundle's images as one table: modality, image_id, path (and region_id, lon, lat where the table has them)."""
    if isinstance(bundle, Mapping):
        tables = dict(bundle)
    else:
        city = bundle if isinstance(bundle, CityBundle) else CityBundle(Path(bundle))
        tables = {m: city.read(IMAGE_TABLES[m]) for m in IMAGE_TABLES if city.has(IMAGE_TABLES[m])}
    frames = []
    for modality, table in tables.items():
        missing = [c for c in ("image_id", "path") if c not in table.columns]
        if missing:
            raise BuildError(f"image table '{modality}' lacks column(s) {missing}")
        frames.append(table.assign(modality=modality, image_id=table["image_id"].astype(str)))
    if not frames:
        raise BuildError("no image tables to match captions to (remote_sensing.parquet / street_view.parquet)")
    return pd.concat(frames, ignore_index=True)


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True, dtype=False)
        if suffix == ".json":
            try:
                return pd.read_json(path, dtype=False)
            except ValueError:
                return pd.read_json(path, lines=True, dtype=False)
    except Exception as err:  # the readers raise many kinds
        raise BuildError(f"{path}: cannot read the caption file ({err})") from err
    raise BuildError(f"{path}: unknown caption file type '{suffix}' (use .csv, .tsv, .parquet, .json or .jsonl)")


def _normalise(paths: pd.Series) -> pd.Series:
    return (paths.astype(str).str.strip().str.replace("\\", "/", regex=False)
            .str.replace(r"^(\./)+", "", regex=True))


def _path_lookup(images: pd.DataFrame) -> pd.Series:
    """Key -> row of `images` for every bundle-relative path and every path relative to its modality folder; -1 for a
    key shared by several images (ambiguous)."""
    full = _normalise(images["path"])
    relative = full.copy()
    for modality, folder in IMAGE_DIRS.items():
        here = (images["modality"] == modality).to_numpy()
        relative[here] = full[here].str.replace(f"^{folder}/", "", regex=True)
    keys = pd.concat([pd.Series(np.arange(len(images)), index=full.to_numpy()),
                      pd.Series(np.arange(len(images)), index=relative.to_numpy())])
    span = keys.groupby(level=0).agg(["min", "max"])
    return pd.Series(np.where(span["min"] == span["max"], span["min"], -1), index=span.index)


def _match_paths(paths: pd.Series, images: pd.DataFrame) -> np.ndarray:
    """Row of `images` for each path (-1 none, -2 ambiguous): the longest trailing part of the path that is a bundle
    path or a path inside a modality folder, so absolute paths and paths under another root match too."""
    lookup = _path_lookup(images)
    parts = _normalise(paths).str.strip("/").str.split("/")
    depth = parts.str.len().to_numpy()
    out = np.full(len(paths), -1, dtype=np.int64)
    for k in range(int(depth.max()) if len(depth) else 0, 0, -1):
        todo = (out == -1) & (depth >= k)
        if not todo.any():
            continue
        found = parts[todo].str[-k:].str.join("/").map(lookup)
        hit = found.notna().to_numpy()
        rows = np.flatnonzero(todo)[hit]
        out[rows] = np.where(found[hit].to_numpy() == -1, -2, found[hit].to_numpy()).astype(np.int64)
    return out


def _match_ids(table: pd.DataFrame, images: pd.DataFrame) -> np.ndarray:
    keys = ["modality", "image_id"] if "modality" in table.columns else ["image_id"]
    index = images[keys].reset_index(drop=True).assign(_row=np.arange(len(images)))
    count = index.groupby(keys)["_row"].transform("size")
    index.loc[count > 1, "_row"] = -2  # the same id in both image tables: the file must say which modality
    index = index.drop_duplicates(keys)
    wanted = table[keys].astype(str).reset_index(drop=True)
    merged = wanted.merge(index[[*keys, "_row"]], on=keys, how="left")
    return merged["_row"].fillna(-1).to_numpy(dtype=np.int64)


def read_caption_file(path: str | Path, bundle_image_tables: CityBundle | str | Path | Mapping[str, pd.DataFrame],
                      unknown: str = "error", report: ReaderReport | None = None) -> pd.DataFrame:
    """Captions from any captioner, matched to the bundle's images.

    The file has `caption`, and `image_id` or `path` (bundle-relative, relative to `images/<modality>/`, or any path
    ending in one of those); optionally `captioner` (default: the file's stem) and `modality`. Rows with an empty
    caption and exact duplicate rows are dropped and counted; rows matching no image raise an error naming them
    (`unknown="drop"` drops and counts them instead). Returns (image_id, modality, captioner, caption); the counts
    (rows read, kept, dropped by reason) go to `report` when given and to the table's ``attrs["report"]`` as a dict.
    """
    path = Path(path)
    if unknown not in ("error", "drop"):
        raise ValueError(f"unknown must be 'error' or 'drop', got {unknown!r}")
    if not path.is_file():
        raise BuildError(f"{path}: caption file not found")
    table = _read_table(path).reset_index(drop=True)
    report = report if report is not None else ReaderReport("captions", str(path))
    report.read = len(table)
    if "caption" not in table.columns or not ({"image_id", "path"} & set(table.columns)):
        raise BuildError(f"{path}: a caption file needs the column 'caption' and one of 'image_id' or 'path'; "
                         f"it has {list(table.columns)}")
    images = image_tables(bundle_image_tables)
    if "modality" in table.columns:
        bad = ~table["modality"].astype(str).isin(list(IMAGE_TABLES))
        if bad.any():
            raise BuildError(f"{path}: column 'modality' must be one of {list(IMAGE_TABLES)}; rows "
                             f"{np.flatnonzero(bad.to_numpy())[:5].tolist()} hold "
                             f"{table['modality'][bad].head(3).tolist()}")
    by_id = "image_id" in table.columns
    rows = _match_ids(table, images) if by_id else _match_paths(table["path"], images)
    column = "image_id" if by_id else "path"
    caption = table["caption"].fillna("").astype(str).str.strip()
    empty = (caption == "").to_numpy()
    for code, what in ((-2, "matches several images (add a 'modality' column or a longer path)"),
                       (-1, "matches no image of the bundle")):
        bad = (rows == code) & ~empty
        if bad.any() and (code == -2 or unknown == "error"):
            raise BuildError(f"{path}: column '{column}' {what} at {int(bad.sum())} row(s), e.g. rows "
                             f"{np.flatnonzero(bad)[:5].tolist()}: {table[column][bad].head(5).tolist()}")
    report.drop(EMPTY_CAPTION, int(empty.sum()))
    report.drop(UNMATCHED, int(((rows < 0) & ~empty).sum()))
    keep = ~empty & (rows >= 0)
    captioner = (table["captioner"].astype(str) if "captioner" in table.columns
                 else pd.Series(path.stem, index=table.index))
    out = pd.DataFrame({
        "image_id": images["image_id"].to_numpy()[rows[keep]],
        "modality": images["modality"].to_numpy()[rows[keep]],
        "captioner": captioner[keep].to_numpy(),
        "caption": caption[keep].to_numpy(),
    })
    duplicate = out.duplicated()
    report.drop(DUPLICATE_CAPTION, int(duplicate.sum()))
    out = out[~duplicate.to_numpy()].reset_index(drop=True)
    clash = out.duplicated(["modality", "image_id", "captioner"], keep=False)
    if clash.any():
        first = out[clash].head(2)
        raise BuildError(f"{path}: captioner {first['captioner'].iloc[0]!r} has {int(clash.sum())} different captions "
                         f"for the same image(s), e.g. {first['image_id'].iloc[0]!r}; give each caption source its own "
                         "'captioner' name")
    report.kept = len(out)
    out.attrs["report"] = report.to_dict()
    return out


def _share_words(shares: pd.DataFrame, top: int) -> pd.Series:
    """'food (35%), shopping (20%) and transport (12%)' per region, from a regions x categories share table."""
    long = shares.stack().rename("share").reset_index()
    long.columns = [REGION_ID, "category", "share"]
    long = long[long["share"] > 0].sort_values([REGION_ID, "share", "category"], ascending=[True, False, True])
    long = long.groupby(REGION_ID, sort=False).head(top)
    percent = (100 * long["share"]).round().astype(int).astype(str)
    long["text"] = long["category"].str.replace("_", " ") + " (" + percent + "%)"

    def join(items: list[str]) -> str:
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

    return long.groupby(REGION_ID, sort=False)["text"].agg(lambda t: join(list(t)))


def region_descriptions(bundle: CityBundle, top_categories: int = 3, include_poi_count: bool = True,
                        region_attributes: pd.DataFrame | None = None) -> pd.Series:
    """One description per region (index region_id): POI count and how it ranks in the city, the main first-level POI
    categories with their shares, and `region_attributes` (index region_id, one column per attribute) if given."""
    regions = pd.Index(bundle.read("regions", columns=[REGION_ID])[REGION_ID].astype(str), name=REGION_ID)
    pois = bundle.pois()
    where = assign_points_to_regions(pois["lon"].to_numpy(float), pois["lat"].to_numpy(float), regions,
                                     bundle.h3_resolution)
    inside = pd.notna(where)
    level1 = pois["category"].astype(str).str.split(";").str[0].str.strip().to_numpy()[inside]
    counts = pd.crosstab(pd.Series(where[inside], name=REGION_ID), pd.Series(level1, name="category"))
    counts = counts.reindex(regions, fill_value=0)
    total = counts.sum(axis=1)
    text = pd.Series("", index=regions)
    if include_poi_count:
        rank = total.rank(method="average").to_numpy()  # 1..n, ties at their mean rank
        tercile = np.clip(np.floor((rank - 1) * 3 / len(total)).astype(int), 0, 2)
        amount = np.array(["few for this city", "a moderate number for this city", "many for this city"])[tercile]
        text += ("The region has " + total.astype(str) + " points of interest (" + amount + "). ")
    shares = counts.div(total.where(total > 0, 1), axis=0)
    words = _share_words(shares, top_categories).reindex(regions)
    text += np.where(words.notna(), "Its points of interest are mostly " + words.fillna("") + ".",
                     "No points of interest are recorded in the region.")
    if region_attributes is not None:
        attrs = region_attributes.copy()
        attrs.index = attrs.index.astype(str)
        for column in attrs.columns:
            values = attrs[column].reindex(regions)
            shown = values.map(lambda v: f"{v:.3g}" if isinstance(v, (int, float, np.number)) else str(v))
            label = str(column).replace("_", " ").capitalize()
            text += np.where(values.notna(), " " + label + ": " + shown + ".", "")
    return text.str.strip()


def describe_regions(bundle: CityBundle | str | Path, top_categories: int = 3, include_poi_count: bool = True,
                     region_attributes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Captioner "open_data": one caption per image (image_id, modality, region_id, captioner, caption), the
    description of the image's region from :func:`region_descriptions`. Street views are placed in regions by their
    camera position; one outside every region gets no caption."""
    city = bundle if isinstance(bundle, CityBundle) else CityBundle(Path(bundle))
    text = region_descriptions(city, top_categories, include_poi_count, region_attributes)
    frames = []
    rs = city.remote_sensing()
    frames.append(pd.DataFrame({"image_id": rs["image_id"].astype(str), "modality": "rs",
                                REGION_ID: rs[REGION_ID].astype(str)}))
    sv = city.street_view()
    sv_region = assign_points_to_regions(sv["lon"].to_numpy(float), sv["lat"].to_numpy(float), text.index,
                                         city.h3_resolution)
    frames.append(pd.DataFrame({"image_id": sv["image_id"].astype(str), "modality": "sv", REGION_ID: sv_region}))
    out = pd.concat(frames, ignore_index=True)
    out = out[out[REGION_ID].notna() & out[REGION_ID].isin(text.index)].reset_index(drop=True)
    out["captioner"] = OPEN_DATA_CAPTIONER
    out["caption"] = text.reindex(out[REGION_ID]).to_numpy()
    return out


def caption_with_local_model(image_paths: Sequence[str | Path], model_dir: str | Path, batch_size: int = 8,
                             max_new_tokens: int = 60) -> pd.DataFrame:
    """Captions from a local Hugging Face image-to-text model (e.g. a BLIP or GIT captioning checkpoint saved with
    `save_pretrained`): (path, captioner = the folder's name, caption). Greedy decoding; nothing is downloaded."""
    model_dir = Path(model_dir)
    problems = []
    if importlib.util.find_spec("transformers") is None:
        problems.append("the package 'transformers' is not installed (it is not a musecl dependency): "
                        "`pip install transformers` in this environment")
    if not (model_dir / "config.json").is_file():
        problems.append(f"no model at {model_dir} (no config.json): save an image-to-text model there on a machine "
                        "with internet access, e.g. `transformers.pipeline('image-to-text', model=NAME)"
                        f".save_pretrained('{model_dir}')`, and copy the folder here")
    if problems:
        raise CaptionModelUnavailable("local captioning model unavailable: " + "; ".join(problems)
                                      + ". Alternatives: read_caption_file (captions from any captioner) or "
                                      "describe_regions (captions from the city's open data).")
    from PIL import Image
    from transformers import pipeline

    from musecl.data.images import to_rgb8

    captioner = pipeline("image-to-text", model=str(model_dir))
    captions: list[str] = []
    paths = [Path(p) for p in image_paths]
    for start in range(0, len(paths), batch_size):
        images = []
        for p in paths[start:start + batch_size]:
            with Image.open(p) as img:
                images.append(to_rgb8(img))
        results = captioner(images, generate_kwargs={"max_new_tokens": max_new_tokens})
        captions += [str(r[0]["generated_text"]).strip() if isinstance(r, list) else str(r["generated_text"]).strip()
                     for r in results]
    return pd.DataFrame({"path": [str(p) for p in paths], "captioner": model_dir.name, "caption": captions})
