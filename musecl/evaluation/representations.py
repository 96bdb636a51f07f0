"""The representations compared downstream: a registry from a method's name to how its region feature table is built.

Each entry of `evaluation.representations` in params.yaml is one representation:

    Concat: {role: baseline, embeddings: [rs.parquet, sv.parquet, poi_text.parquet], combine: concat, paper_name: Concat}

* ``embeddings``: embedding tables (musecl/embeddings.py format) under `<paths.work>/embeddings/`, combined by
  ``combine``: ``concat`` (side by side) or ``sum`` (element-wise, equal dimensions; the paper's Add-svrv);
* or ``source``: a feature builder registered in :data:`SOURCES` that reads the city bundle (``poi_category_counts``,
  ``latents``), with keyword ``options``;
* ``role``: ``ours`` (the method under test; exactly one), ``baseline`` (competes for "best baseline" in the paper's
  improvement row and the paired tests), ``variant`` (ablations and variants of ours: shown, never "best baseline")
  or ``reference`` (bounds, shown apart, never bold, never "best baseline": floors such as the pixel statistics of
  the images, which a learned encoder must beat, and the latent-variable oracle, the ceiling; only the row named by
  `evaluation.checks.ceiling` is checked as a ceiling, :mod:`musecl.evaluation.checks`);
* a representation whose input table was skipped by its stage (:func:`musecl.embeddings.write_skipped`: the city
  lacks the modality), or a combination with a skipped part, is *not run* (:meth:`RepresentationRegistry.skipped`):
  left out with a warning, its status row "not run: <reason>" (:mod:`musecl.evaluation.skipped`);
* ``paper_name``: the method's row name in the paper's tables (reports/reference/), for the side-by-side table;
* ``stage``: the pipeline stage that writes the inputs, named in the error when a file is missing (a default is
  known for the pipeline's own embedding files, :data:`PRODUCERS`);
* ``estimator``: ``oracle`` fits this representation with the oracle family of :mod:`musecl.oracle` (linear ridge,
  degree-2 ridge on quantile-transformed features, gradient boosting, chosen per indicator by inner CV on the fold's
  fitting rows) in every protocol and regressor column, instead of the column's regressor (the ceiling row).

Adding a trained baseline is therefore one entry, e.g. ``Tile2Vec: {role: baseline, embeddings: [tile2vec.parquet],
paper_name: Tile2vec, stage: "baselines (notebook 0X)"}``; a new kind of feature builder is one function decorated
with :func:`register_source`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID

ROLES = ("ours", "variant", "baseline", "reference")
ESTIMATORS = ("oracle",)
COMBINES = ("concat", "sum")

# The stage that writes each of the pipeline's embedding tables (for "missing input" errors).
PRODUCERS: dict[str, str] = {
    "rs.parquet": "the remote-sensing encoder (notebook 02)",
    "sv.parquet": "the street-view encoder (notebook 03)",
    "poi_text.parquet": "stage `poi_text` (notebooks/04_poi_word2vec.ipynb)",
    "musecl.parquet": "stage `fusion` (notebooks/05_fusion.ipynb)",
}


class RepresentationMissing(FileNotFoundError):
    """An input of a registered representation does not exist (yet)."""


class RepresentationSkipped(RepresentationMissing):
    """A representation that is not run: an input table was skipped by its stage (the city lacks its modality)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"representation '{name}': not run: {reason}")
        self.name, self.reason = name, reason


FeatureBuilder = Callable[..., pd.DataFrame]
SOURCES: dict[str, FeatureBuilder] = {}


def register_source(name: str) -> Callable[[FeatureBuilder], FeatureBuilder]:
    """Register `fn(bundle, **options) -> DataFrame indexed by region_id` as a feature source usable in params.yaml."""

    def wrap(fn: FeatureBuilder) -> FeatureBuilder:
        SOURCES[name] = fn
        return fn

    return wrap


@dataclass(frozen=True)
class RepresentationSpec:
    """One registry entry (see the module docstring)."""

    name: str
    role: str
    embeddings: tuple[str, ...] = ()
    combine: str = "concat"
    source: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    paper_name: str | None = None
    stage: str | None = None
    description: str = ""
    estimator: str | None = None

    KEYS = ("role", "embeddings", "combine", "source", "options", "paper_name", "stage", "description", "estimator")

    def __post_init__(self) -> None:
        where = f"evaluation.representations.{self.name}"
        if self.role not in ROLES:
            raise ValueError(f"{where}.role: expected one of {ROLES}, got {self.role!r}")
        if bool(self.embeddings) == bool(self.source):
            raise ValueError(f"{where}: give exactly one of 'embeddings' (files) or 'source' (a builder in {sorted(SOURCES)})")
        if self.source and self.source not in SOURCES:
            raise ValueError(f"{where}.source: unknown source {self.source!r} (registered: {sorted(SOURCES)})")
        if self.combine not in COMBINES:
            raise ValueError(f"{where}.combine: expected one of {COMBINES}, got {self.combine!r}")
        if self.estimator is not None and self.estimator not in ESTIMATORS:
            raise ValueError(f"{where}.estimator: expected null or one of {ESTIMATORS}, got {self.estimator!r}")

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any]) -> "RepresentationSpec":
        unknown = sorted(set(cfg) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"evaluation.representations.{name}: unknown keys {unknown} (known: {list(cls.KEYS)})")
        if "role" not in cfg:
            raise ValueError(f"evaluation.representations.{name}: missing 'role' (one of {ROLES})")
        return cls(
            name=str(name),
            role=str(cfg["role"]),
            embeddings=tuple(str(f) for f in (cfg.get("embeddings") or ())),
            combine=str(cfg.get("combine", "concat")),
            source=cfg.get("source"),
            options=dict(cfg.get("options") or {}),
            paper_name=cfg.get("paper_name"),
            stage=cfg.get("stage"),
            description=str(cfg.get("description", "")),
            estimator=cfg.get("estimator"),
        )

    def producer(self, file: str) -> str:
        return self.stage or PRODUCERS.get(file, "the stage that writes it (see dvc.yaml)")


class RepresentationRegistry:
    """The configured representations, in table order, and how to load each one's region feature table."""

    def __init__(self, specs: list[RepresentationSpec], embeddings_dir: str | Path, bundle: Any | None = None,
                 seeds_dir: str | Path | None = None) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"evaluation.representations: duplicate names {names}")
        ours = [s.name for s in specs if s.role == "ours"]
        if len(ours) > 1:
            raise ValueError(f"evaluation.representations: exactly one entry may have role 'ours', got {ours}")
        self.specs = {s.name: s for s in specs}
        self.embeddings_dir = Path(embeddings_dir)
        self.bundle = bundle
        self.seeds_dir = Path(seeds_dir) if seeds_dir is not None else None  # <work>/seeds (the `seeds` stage)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], bundle: Any | None = None) -> "RepresentationRegistry":
        """The registry of `params["evaluation"]["representations"]`; embeddings under `<paths.work>/embeddings`."""
        cfg = params.get("evaluation", {}).get("representations")
        if not cfg:
            raise ValueError("params.yaml: evaluation.representations is empty or missing")
        from musecl.config import embeddings_dir

        specs = [RepresentationSpec.from_config(name, entry or {}) for name, entry in cfg.items()]
        return cls(specs, embeddings_dir(params), bundle, Path(params["paths"]["work"]) / "seeds")

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    @property
    def ours(self) -> str | None:
        return next((s.name for s in self.specs.values() if s.role == "ours"), None)

    def with_role(self, *roles: str) -> list[str]:
        return [s.name for s in self.specs.values() if s.role in roles]

    @property
    def roles(self) -> dict[str, str]:
        return {name: s.role for name, s in self.specs.items()}

    @property
    def paper_names(self) -> dict[str, str]:
        return {name: s.paper_name for name, s in self.specs.items() if s.paper_name}

    def skipped(self, name: str) -> str | None:
        """Why `name` is not run (None when it is): an input table its stage skipped (musecl/embeddings.py
        `write_skipped`; a combination names the part), or a bundle source whose table the city does not have."""
        from musecl.embeddings import skipped_reason

        spec = self._spec(name)
        if spec.embeddings:
            reasons = {f: skipped_reason(self.embeddings_dir / f) for f in spec.embeddings}
            reasons = {f: r for f, r in reasons.items() if r is not None}
            if not reasons:
                return None
            if len(spec.embeddings) == 1:
                return next(iter(reasons.values()))
            by_reason: dict[str, list[str]] = {}
            for f, r in reasons.items():
                by_reason.setdefault(r, []).append(f)
            return "; ".join(f"its part {fs[0]} was not run ({r})" if len(fs) == 1 else
                             f"its parts {', '.join(fs)} were not run ({r})" for r, fs in by_reason.items())
        if self.bundle is None:
            return None
        if spec.source == "latents" and not self.bundle.has("latents"):
            return "the city has no latent variables (only synthetic cities have them)"
        if spec.source == "poi_category_counts" and not self.bundle.has("pois"):
            return "the city has no POIs (no POI table in the bundle)"
        return None

    def not_run(self, names: list[str] | None = None) -> dict[str, str]:
        """{name: reason} of every representation (of `names`) that is not run (:meth:`skipped`)."""
        reasons = {n: self.skipped(n) for n in (names or self.names)}
        return {n: r for n, r in reasons.items() if r is not None}

    def missing_inputs(self, name: str) -> list[str]:
        """Why `name` cannot be loaded now (missing files with the stage that makes them); empty if it can."""
        spec = self._spec(name)
        if spec.embeddings:
            # named by file and stage, not by absolute path: the status table is shown in the executed notebook
            return [
                f"{f} (not in the embeddings folder; made by {spec.producer(f)})"
                for f in spec.embeddings
                if not (self.embeddings_dir / f).is_file()
            ]
        if self.bundle is None:
            return [f"a city bundle (source '{spec.source}' reads the bundle)"]
        if spec.source == "latents" and not self.bundle.has("latents"):
            return ["latents.parquet of the city bundle (only synthetic cities have latent variables)"]
        if spec.source == "poi_category_counts" and not self.bundle.has("pois"):
            return ["pois.parquet of the city bundle (the bundle's POI table)"]
        return []

    def status(self) -> pd.DataFrame:
        """One row per registered representation: role, inputs, whether it can be loaded and, if not, what is missing."""
        from musecl.evaluation.skipped import not_run_text

        rows = []
        for name, spec in self.specs.items():
            reason = self.skipped(name)
            missing = [not_run_text(reason)] if reason is not None else self.missing_inputs(name)
            rows.append(
                {
                    "method": name,
                    "role": spec.role,
                    "inputs": f"{spec.combine}({', '.join(spec.embeddings)})" if spec.embeddings else f"bundle:{spec.source}",
                    "available": not missing,
                    "missing": "; ".join(missing),
                    "paper_name": spec.paper_name or "",
                }
            )
        return pd.DataFrame(rows)

    def load(self, name: str) -> pd.DataFrame:
        """The region feature table of `name` (index region_id, float64 columns); RepresentationMissing if not built."""
        spec = self._spec(name)
        reason = self.skipped(name)
        if reason is not None:
            raise RepresentationSkipped(name, reason)
        missing = self.missing_inputs(name)
        if missing:
            raise RepresentationMissing(f"representation '{name}' needs {'; '.join(missing)}")
        if spec.source:
            table = SOURCES[spec.source](self.bundle, **dict(spec.options))
        else:
            table = combine_tables(
                [_read(self.embeddings_dir / f) for f in spec.embeddings], spec.combine, name, spec.embeddings
            )
        return _checked(table, name)

    def load_available(
        self, names: list[str] | None = None, on_missing: str = "skip"
    ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
        """Feature tables of every representation whose inputs exist, and the status table (what was left out, why).

        `on_missing="error"` raises RepresentationMissing listing every representation that cannot be loaded instead.
        A representation that is not run (a skipped input: :meth:`skipped`) is left out either way, with a warning
        naming it and the reason; its status row says "not run: <reason>".
        """
        from musecl.evaluation.skipped import NOT_RUN, warn_not_run

        if on_missing not in ("skip", "error"):
            raise ValueError(f"evaluation.on_missing: expected 'skip' or 'error', got {on_missing!r}")
        status = self.status()
        wanted = names or self.names
        unknown = sorted(set(wanted) - set(self.names))
        if unknown:
            raise KeyError(f"unknown representations {unknown} (registered: {self.names})")
        absent = status[status["method"].isin(wanted) & ~status["available"]]
        not_run = absent["missing"].astype(str).str.startswith(NOT_RUN)
        warn_not_run({m: t[len(NOT_RUN):] for m, t in zip(absent.loc[not_run, "method"], absent.loc[not_run, "missing"])})
        absent = absent[~not_run]
        if on_missing == "error" and len(absent):
            raise RepresentationMissing(
                "; ".join(f"representation '{r.method}' needs {r.missing}" for r in absent.itertuples())
            )
        ok = set(status.loc[status["available"], "method"])
        return {n: self.load(n) for n in wanted if n in ok}, status[status["method"].isin(wanted)].reset_index(drop=True)

    def seed_tables(self, k: int, names: list[str] | None = None) -> dict[str, pd.DataFrame]:
        """The feature tables of training-seed index k (the `seeds` stage's `<work>/seeds/s<k>/embeddings`): every
        representation (of `names`) with at least one input table retrained by that seed; its other inputs (frozen
        backbones, pixel statistics) are the main run's, which no training seed changes. Bundle sources (POI
        counts, latents) have no training seed and are left out."""
        folder = None if self.seeds_dir is None else self.seeds_dir / f"s{int(k)}" / "embeddings"
        if folder is None or not folder.is_dir():
            return {}
        out = {}
        from musecl.embeddings import skipped_reason

        for name in names or self.names:
            spec = self._spec(name)
            if not spec.embeddings or not any((folder / f).is_file() for f in spec.embeddings):
                continue
            paths = [folder / f if (folder / f).is_file() else self.embeddings_dir / f for f in spec.embeddings]
            if self.skipped(name) is not None or any(skipped_reason(p) is not None for p in paths):
                continue  # not run in this city (a skipped input), in the main run or this seed's
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise RepresentationMissing(f"representation '{name}', seed {k}, needs {'; '.join(missing)}")
            out[name] = _checked(combine_tables([_read(p) for p in paths], spec.combine, name, spec.embeddings), name)
        return out

    def _spec(self, name: str) -> RepresentationSpec:
        if name not in self.specs:
            raise KeyError(f"unknown representation '{name}' (registered: {self.names})")
        return self.specs[name]


def _read(path: Path) -> pd.DataFrame:
    from musecl.embeddings import read_embeddings

    return read_embeddings(path)


def combine_tables(tables: list[pd.DataFrame], how: str, name: str, files: tuple[str, ...] = ()) -> pd.DataFrame:
    """Concatenate (side by side) or sum embedding tables on their common regions."""
    labels = list(files) or [f"part {i}" for i in range(len(tables))]
    common = tables[0].index
    for t in tables[1:]:
        common = common.intersection(t.index)
    if len(common) == 0:
        raise ValueError(f"representation '{name}': the tables {labels} share no region id")
    common = common.sort_values()
    parts = [t.loc[common].to_numpy(dtype=np.float64) for t in tables]
    if how == "sum":
        dims = {label: p.shape[1] for label, p in zip(labels, parts)}
        if len(set(dims.values())) != 1:
            raise ValueError(f"representation '{name}': combine 'sum' needs equal dimensions, got {dims}")
        values = np.sum(parts, axis=0)
    else:
        values = np.concatenate(parts, axis=1)
    return pd.DataFrame(values, index=pd.Index(common, name=REGION_ID), columns=[f"f{i:03d}" for i in range(values.shape[1])])


def _checked(table: pd.DataFrame, name: str) -> pd.DataFrame:
    table = table.astype(np.float64)
    table.index = pd.Index(table.index.astype(str), name=REGION_ID)
    if table.index.has_duplicates:
        raise ValueError(f"representation '{name}': duplicate region ids, e.g. {table.index[table.index.duplicated()][:3].tolist()}")
    if not np.isfinite(table.to_numpy()).all():
        raise ValueError(f"representation '{name}': feature table has NaN or infinite values")
    if table.shape[1] == 0:
        raise ValueError(f"representation '{name}': feature table has no columns")
    return table


# ---- bundle-derived feature sources ----------------------------------------------------------------------------------
@register_source("poi_category_counts")
def poi_category_counts(bundle: Any, level: int = 1, log1p: bool = True) -> pd.DataFrame:
    """POIs per region and category (first level of 'level1;level2' by default); log1p of the counts if asked.

    The plain count vector the paper does not report: the simplest use of the POI table that MuseCL's text branch
    also reads. Every region of the bundle gets a row (zeros where it has no POI).
    """
    from musecl.data.regions import assign_points_to_regions

    pois = bundle.read("pois", columns=["lon", "lat", "category"])
    regions = bundle.regions()[REGION_ID].astype(str).to_numpy()
    region = assign_points_to_regions(pois["lon"].to_numpy(), pois["lat"].to_numpy(), regions, bundle.h3_resolution)
    parts = pois["category"].astype(str).str.split(";")
    category = parts.str[: max(int(level), 1)].str.join(";")
    frame = pd.DataFrame({REGION_ID: region, "category": category.to_numpy()})
    frame = frame[frame[REGION_ID].notna()]
    counts = pd.crosstab(frame[REGION_ID], frame["category"]).reindex(index=sorted(regions), fill_value=0)
    counts = counts.reindex(columns=sorted(counts.columns))
    values = counts.to_numpy(dtype=np.float64)
    values = np.log1p(values) if log1p else values
    return pd.DataFrame(values, index=pd.Index(counts.index.astype(str), name=REGION_ID),
                        columns=[f"poi_{c}" for c in counts.columns])


@register_source("latents")
def latent_features(bundle: Any, interactions: bool = True) -> pd.DataFrame:
    """The synthetic city's latent variables (the ceiling: nothing observable knows more), with pairwise products.

    The indicators are log-linear in the latents with interactions (musecl/synthetic/indicators.py), so the products
    let a linear regressor reach the ceiling as the stage-01 oracle does.
    """
    latents = bundle.latents()
    if latents is None:
        raise RepresentationMissing(f"{bundle.root / 'latents.parquet'}: missing (only synthetic cities have latents)")
    x = latents.astype(np.float64)
    if not interactions:
        return x
    cols = list(x.columns)
    extra = {f"{a}*{b}": x[a] * x[b] for i, a in enumerate(cols) for b in cols[i:]}
    return pd.concat([x, pd.DataFrame(extra, index=x.index)], axis=1)
