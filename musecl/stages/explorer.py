"""The `explorer` stage (params.yaml `explorer`; `python -m musecl.stages.explorer`): one self-contained interactive
HTML page of the city (regions coloured by an indicator, an out-of-fold prediction, its residual or an embedding
cluster; a click shows the region's remote-sensing tile, street views, top POI categories and its most similar regions
by a chosen representation) and the region embeddings as a GeoPackage for GIS.

This module gathers what the page shows (:func:`explorer_data`, from the bundle, the embedding tables through the
evaluation's :class:`~musecl.evaluation.RepresentationRegistry` and the stored evaluation's predictions); the page
itself is drawn by :mod:`musecl.stages.explorer_page`.
"""
from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from musecl.config import section
from musecl.data.schema import REGION_ID

PAGE_FILE = "index.html"
GIS_FILE = "embeddings.gpkg"
_KEYS = {"representations", "k_similar", "clusters", "standardize", "predictions", "thumbnail_px", "street_views",
         "jpeg_quality", "top_pois", "basemap", "seed"}


@dataclass(frozen=True)
class ExplorerSettings:
    """params.yaml `explorer` (documented there and in docs/explorer.md)."""

    representations: tuple[str, ...] | None = None  # None = every evaluated representation whose inputs exist
    k_similar: int = 10
    clusters: int = 8
    standardize: bool = True
    predictions: Mapping[str, str] = field(default_factory=lambda: {"protocol": "kfold", "regressor": "ridge"})
    thumbnail_px: int = 64
    street_views: int = 3
    jpeg_quality: int = 70
    top_pois: int = 5
    basemap: str | None = "OpenStreetMap.Mapnik"
    seed: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "ExplorerSettings":
        cfg = dict(section(params, "explorer")) if "explorer" in params else {}
        unknown = sorted(set(cfg) - _KEYS)
        if unknown:
            raise KeyError(f"params.yaml explorer: unknown keys {unknown} (known: {sorted(_KEYS)})")
        reps = cfg.pop("representations", None)
        settings = cls(representations=tuple(reps) if reps else None, **cfg)
        for key in ("k_similar", "clusters", "thumbnail_px", "jpeg_quality"):
            if int(getattr(settings, key)) < 1:
                raise ValueError(f"params.yaml explorer.{key}: must be >= 1, got {getattr(settings, key)}")
        if set(settings.predictions) != {"protocol", "regressor"}:
            raise KeyError(f"params.yaml explorer.predictions: expected keys protocol and regressor, got "
                           f"{sorted(settings.predictions)}")
        return settings


@dataclass
class ExplorerData:
    """Everything the page shows, one row per region in `regions` order (region_id sorted)."""

    city: str
    regions: Any  # GeoDataFrame: region_id, geometry (lon/lat)
    indicators: pd.DataFrame  # index region_id, transformed as city.json says
    features: dict[str, pd.DataFrame]  # representation -> region feature table (index region_id)
    predictions: pd.DataFrame | None  # method, indicator, region_id, y_pred, y_true (out-of-fold, mean over repeats)
    thumbnails: dict[str, dict[str, Any]]  # region_id -> {"rs": data URI | None, "sv": [data URI, ...]}
    top_pois: dict[str, list[tuple[str, int]]]  # region_id -> [(category, count), ...]
    settings: ExplorerSettings
    roles: dict[str, str] = field(default_factory=dict)  # representation -> role (ours, baseline, ...)
    clusters: dict[str, np.ndarray] = field(default_factory=dict)  # representation -> cluster per region (-1: none)
    not_run: dict[str, str] = field(default_factory=dict)  # representation -> why it was not run (skipped input)

    @property
    def region_ids(self) -> list[str]:
        return self.regions[REGION_ID].tolist()


def unit_rows(table: pd.DataFrame, standardize: bool) -> np.ndarray:
    """Rows as unit vectors for cosine similarity; columns z-scored first when `standardize` (so that a shared offset
    or one wide column does not decide every similarity; constant columns are dropped)."""
    x = table.to_numpy(np.float64)
    if standardize:
        std = x.std(axis=0)
        keep = std > 1e-12
        x = (x[:, keep] - x[:, keep].mean(axis=0)) / std[keep]
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def most_similar(table: pd.DataFrame, region_ids: list[str], k: int, standardize: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most cosine-similar other regions of every region of `region_ids`: (indices into `region_ids`, -1
    where there are fewer or the region has no row; similarities), both (n, k)."""
    pos = pd.Index(region_ids).get_indexer(table.index)
    if (pos < 0).any():
        table, pos = table[pos >= 0], pos[pos >= 0]
    unit = unit_rows(table, standardize)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    k_eff = min(k, len(table) - 1)
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k_eff]
    idx = np.full((len(region_ids), k), -1, dtype=np.int64)
    val = np.full((len(region_ids), k), np.nan)
    idx[pos, :k_eff] = pos[order]
    val[pos, :k_eff] = np.take_along_axis(sim, order, axis=1)
    return idx, val


def clusters(table: pd.DataFrame, region_ids: list[str], n_clusters: int, seed: int, standardize: bool = True
             ) -> np.ndarray:
    """k-means clusters (numbered by size, largest 0) of the unit rows of a representation; -1 where a region has no
    row. Clusters of unit vectors group regions by the same cosine geometry the similar-region list uses."""
    from sklearn.cluster import KMeans

    pos = pd.Index(region_ids).get_indexer(table.index)
    table, pos = table[pos >= 0], pos[pos >= 0]
    out = np.full(len(region_ids), -1, dtype=np.int64)
    n = min(n_clusters, len(table))
    if n < 1:
        return out
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # 300 points: threads only contend (and the labels do not depend on them)
        labels = KMeans(n_clusters=n, random_state=seed, n_init=10).fit_predict(unit_rows(table, standardize))
    by_size = np.argsort(-np.bincount(labels, minlength=n), kind="stable")
    out[pos] = np.argsort(by_size, kind="stable")[labels]
    return out


def oof_predictions(predictions: pd.DataFrame, protocol: str, regressor: str) -> pd.DataFrame:
    """Out-of-fold predictions of the stored evaluation for one protocol and regressor (the main training seed),
    averaged over its repeats:
    one row per (method, indicator, region_id) with y_pred and y_true."""
    need = {"method", "indicator", "regressor", "protocol", REGION_ID, "y_true", "y_pred"}
    missing = sorted(need - set(predictions.columns))
    if missing:
        raise KeyError(f"evaluation predictions: missing columns {missing}")
    rows = predictions[(predictions["protocol"] == protocol) & (predictions["regressor"] == regressor)]
    if "seed" in rows.columns:
        rows = rows[rows["seed"] == 0]  # the main run's models (the embeddings the page compares); seeds 1.. are extra
    if rows.empty:
        have = sorted(set(zip(predictions["protocol"], predictions["regressor"])))
        raise ValueError(f"params.yaml explorer.predictions: no stored predictions for protocol {protocol!r} and "
                         f"regressor {regressor!r} (stored: {have})")
    return rows.groupby(["method", "indicator", REGION_ID], sort=True, observed=True)[["y_pred", "y_true"]].mean().reset_index()


def thumbnail(path: Path, px: int, quality: int) -> str:
    """An image as a JPEG data URI whose longer side is `px` (the page carries its images inside itself)."""
    from PIL import Image

    from musecl.data.images import to_rgb8

    with Image.open(path) as img:
        img = to_rgb8(img)
        img.thumbnail((px, px), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality), optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def region_thumbnails(bundle: Any, region_ids: list[str], settings: ExplorerSettings) -> dict[str, dict[str, Any]]:
    """Per region: its first remote-sensing tile and its first `street_views` street views (image_id order)."""
    out: dict[str, dict[str, Any]] = {r: {"rs": None, "sv": []} for r in region_ids}
    px, q = settings.thumbnail_px, settings.jpeg_quality
    if bundle.has("remote_sensing"):  # a city may lack a modality (musecl/data/schema.py MODALITIES)
        rs = bundle.remote_sensing().sort_values("image_id").drop_duplicates(REGION_ID)
        for rid, rel in zip(rs[REGION_ID], rs["path"]):
            if rid in out:
                out[rid]["rs"] = thumbnail(bundle.root / rel, px, q)
    if not bundle.has("street_view"):
        return out
    sv = bundle.street_view().dropna(subset=[REGION_ID]).sort_values("image_id")
    sv = sv.groupby(REGION_ID, sort=False).head(settings.street_views)
    for rid, rel in zip(sv[REGION_ID], sv["path"]):
        if rid in out:
            out[rid]["sv"].append(thumbnail(bundle.root / rel, px, q))
    return out


def region_top_pois(bundle: Any, region_ids: list[str], top: int) -> dict[str, list[tuple[str, int]]]:
    """The `top` most frequent POI categories (`level1;level2`) of every region, with their counts (none for any
    region in a city without POIs)."""
    from musecl.data.regions import assign_points_to_regions

    if not bundle.has("pois"):
        return {r: [] for r in region_ids}

    pois = bundle.pois()
    rid = assign_points_to_regions(pois["lon"].to_numpy(), pois["lat"].to_numpy(), pd.Index(region_ids),
                                   bundle.h3_resolution)
    counts = (pd.DataFrame({REGION_ID: rid, "category": pois["category"].astype(str)}).dropna()
              .value_counts().rename("n").reset_index()
              .sort_values([REGION_ID, "n", "category"], ascending=[True, False, True]))
    counts = counts.groupby(REGION_ID, sort=False).head(top)
    out: dict[str, list[tuple[str, int]]] = {r: [] for r in region_ids}
    for r, cat, n in zip(counts[REGION_ID], counts["category"], counts["n"]):
        out[r].append((cat, int(n)))
    return out


def explorer_data(params: Mapping[str, Any], bundle: Any | None = None) -> ExplorerData:
    """Gather the page's data from the pipeline's outputs: the bundle (`paths.bundle`), the representations of
    `evaluation.representations` that exist (or `explorer.representations`), and the stored evaluation's predictions
    (`<paths.work>/evaluation`, stage `evaluate`)."""
    from musecl.data import CityBundle
    from musecl.evaluation import RepresentationRegistry
    from musecl.evaluation.store import evaluation_dir, load_evaluation

    settings = ExplorerSettings.from_params(params)
    bundle = bundle or CityBundle(params["paths"]["bundle"])
    registry = RepresentationRegistry.from_params(params, bundle)
    wanted = list(settings.representations) if settings.representations else None
    features, status = registry.load_available(wanted)
    if not features:
        raise FileNotFoundError(f"explorer: no representation can be loaded; missing inputs:\n{status.to_string()}")
    stored = load_evaluation(evaluation_dir(params))
    pred = settings.predictions
    predictions = oof_predictions(stored.predictions, pred["protocol"], pred["regressor"])
    data = assemble(bundle, features, predictions, settings, roles=registry.roles)
    data.not_run = registry.not_run(wanted)
    return data


def assemble(bundle: Any, features: dict[str, pd.DataFrame], predictions: pd.DataFrame | None,
             settings: ExplorerSettings, roles: Mapping[str, str] | None = None) -> ExplorerData:
    """The page's data from a bundle, feature tables (index region_id) and out-of-fold predictions (or None)."""
    regions = bundle.regions()[[REGION_ID, "geometry"]].sort_values(REGION_ID).reset_index(drop=True)
    ids = regions[REGION_ID].tolist()
    for name, table in features.items():
        if not len(pd.Index(ids).intersection(table.index)):
            raise ValueError(f"explorer: representation {name!r} has no row for any region of the bundle "
                             f"(index {table.index.name!r}, e.g. {list(table.index[:3])})")
    return ExplorerData(
        city=bundle.name, regions=regions, indicators=bundle.indicators(transformed=True).reindex(ids),
        features=features, predictions=predictions, thumbnails=region_thumbnails(bundle, ids, settings),
        top_pois=region_top_pois(bundle, ids, settings.top_pois), settings=settings,
        roles={name: (roles or {}).get(name, "") for name in features},
        clusters={name: clusters(table, ids, settings.clusters, settings.seed, settings.standardize)
                  for name, table in features.items()},
    )


def layer_name(name: str) -> str:
    """A GIS-safe layer name for a representation: lower case, runs of other characters as one `_`."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "representation"


def write_gis(data: ExplorerData, path: str | Path) -> Path:
    """A GeoPackage: layer `regions` (hexagons, indicators, each representation's cluster) and one layer per
    representation (hexagons with its feature columns), all EPSG:4326. Timestamps are fixed, so the same data gives
    the same bytes."""
    import geopandas as gpd
    import pyogrio

    from musecl.storage import atomic_path

    base = gpd.GeoDataFrame(data.regions, geometry="geometry", crs="EPSG:4326")
    regions = base.join(data.indicators.reset_index(drop=True))
    for name in data.features:
        regions[f"cluster_{layer_name(name)}"] = data.clusters[name]
    names = [layer_name(n) for n in data.features]
    if len(set(names + ["regions"])) != len(names) + 1:
        raise ValueError(f"explorer: representations {list(data.features)} give clashing GIS layer names {names}")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2000-01-01T00:00:00.000Z"})
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.unlink()  # the GPKG driver creates the file itself
        regions.to_file(tmp, layer="regions", driver="GPKG")
        for name, layer in zip(data.features, names):
            table = data.features[name].astype(np.float32)
            table.columns = [str(c) for c in table.columns]
            gdf = base.merge(table, left_on=REGION_ID, right_index=True, how="inner")
            gdf.to_file(tmp, layer=layer, driver="GPKG")
    return path


def build_explorer(params: Mapping[str, Any], out_dir: str | Path | None = None) -> dict[str, Path]:
    """The stage: gather the data, write `<out_dir>/index.html` and `<out_dir>/embeddings.gpkg` (default
    `<paths.reports>/explorer`); returns the written paths."""
    from musecl.stages.explorer_page import write_page

    out = Path(out_dir) if out_dir is not None else Path(params["paths"]["reports"]) / "explorer"
    data = explorer_data(params)
    return {"page": write_page(data, out / PAGE_FILE), "gis": write_gis(data, out / GIS_FILE)}


def main(argv: list[str] | None = None) -> None:
    import argparse

    from musecl.config import load_params

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=None, help="output folder (default <paths.reports>/explorer)")
    args = parser.parse_args(argv)
    for kind, path in build_explorer(load_params(args.params), args.out).items():
        print(f"{kind}: {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
