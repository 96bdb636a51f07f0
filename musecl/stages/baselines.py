"""The `baselines` stage (notebooks/03b_baseline_encoders.ipynb; params.yaml `baselines.runs`): image encoders built
from the MuseCL stages' own parts.

Each run is written as a region embedding table under `<paths.work>/embeddings/<name>.parquet`, where the evaluation
stage's representation registry picks it up. A run with `train: true` is a :class:`musecl.methods.TripletEncoder`
trained with the *same* triplet builder (`musecl.pairs.triplets_from_spec`) and the *same* trainer as MuseCL's
encoders, under another pair rule and/or loss: Tile2Vec, PG-SimCLR, Urban2Vec's visual step, and the random-positive
ablations. Its settings are its modality's MuseCL settings (`pairs.modalities.<m>`, `encoders.<m>`) with the run's
`pairs` / `encoder` overrides merged in, so a baseline differs from MuseCL's encoder only where params.yaml says so
(same images, budget, optimiser, seed). A run with `train: false` is a :class:`musecl.methods.BackboneFeatures`: the
backbone's pooled features and no contrastive training (the paper's "ResNet-18" and "Inception v3" rows), with
ImageNet weights when the torchvision file is in the local hub cache (`weights: auto`), else the untrained network;
the run's metrics file says which. A run with `kind: pixel_stats` is a :class:`musecl.methods.PixelStats`: colour
histograms, channel means and spreads and edge density of the cached images, averaged per region, nothing learnt (the
`Pixel stats RS` / `SV` reference rows, the floor a learned encoder must beat); its `features` key holds the feature
settings (:class:`musecl.encoders.pixel_stats.PixelStatsConfig`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musecl.config import deep_merge, embeddings_dir
from musecl.contract import MODALITIES
from musecl.methods import BackboneFeatures, City, PixelStats, RegionEmbedder, TripletEncoder

_RUN_KEYS = {"modality", "kind", "train", "pairs", "encoder", "features", "description"}
RUN_STAGE = "03b_baseline_encoders"
# the method kinds a run may be (`kind`; absent: triplet_encoder when `train` is true, else backbone_features), and the
# file its fit leaves under models/baselines/<run>/
RUN_KINDS = {"triplet_encoder": "best.pt", "backbone_features": "features.pt", "pixel_stats": "pixel_stats.json"}


@dataclass(frozen=True)
class BaselineRun:
    """One baseline encoder: its modality's MuseCL settings with the run's overrides merged in."""

    name: str
    modality: str
    train: bool
    pairs: dict[str, Any]
    encoder: dict[str, Any]
    description: str
    kind: str = "triplet_encoder"  # RUN_KINDS: triplet_encoder (train: true), backbone_features, pixel_stats
    features: dict[str, Any] | None = None  # pixel_stats runs: the feature settings (bins, edge_thresholds)


def section(params: dict[str, Any], key: str) -> dict[str, Any]:
    """`baselines.<key>` (runs or variants) as a mapping; an error names the params.yaml key."""
    value = params.get("baselines", {}).get(key)
    if not isinstance(value, dict):
        raise KeyError(f"params.yaml: baselines.{key} is missing or not a mapping")
    return value


def selected(params: dict[str, Any], key: str, selected_key: str) -> list[str]:
    """`baselines.<selected_key>` (the DVC stage sets one name per stage) checked against `baselines.<key>`, or all."""
    entries = section(params, key)
    names = params["baselines"].get(selected_key) or list(entries)
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise KeyError(f"params.yaml: baselines.{selected_key} names {unknown}, which baselines.{key} does not define "
                       f"({key}: {sorted(entries)})")
    return list(names)


def entry(params: dict[str, Any], key: str, name: str, known: set[str]) -> dict[str, Any]:
    """`baselines.<key>.<name>` as a dict; an unknown name or key is an error naming the params.yaml key."""
    entries = section(params, key)
    if name not in entries:
        raise KeyError(f"params.yaml: baselines.{key} has no entry {name!r} ({key}: {sorted(entries)})")
    spec = dict(entries[name] or {})
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"params.yaml: baselines.{key}.{name} has unknown key(s) {unknown}; known: {sorted(known)}")
    return spec


def run_names(params: dict[str, Any]) -> list[str]:
    """The runs to do now: `baselines.selected` (the DVC stage sets one per stage) or every run."""
    return selected(params, "runs", "selected")


def baseline_run(params: dict[str, Any], name: str) -> BaselineRun:
    """The resolved settings of run `name`; errors name the params.yaml key that is wrong."""
    spec = entry(params, "runs", name, _RUN_KEYS)
    modality = spec.get("modality")
    if modality not in MODALITIES:
        raise ValueError(f"params.yaml: baselines.runs.{name}.modality must be one of {MODALITIES}, got {modality!r}")
    kind = str(spec.get("kind") or ("triplet_encoder" if spec.get("train", True) else "backbone_features"))
    if kind not in RUN_KINDS:
        raise ValueError(f"params.yaml: baselines.runs.{name}.kind must be one of {sorted(RUN_KINDS)}, got {kind!r}")
    if "train" in spec and bool(spec["train"]) != (kind == "triplet_encoder"):
        raise ValueError(f"params.yaml: baselines.runs.{name}: train: {spec['train']} contradicts kind: {kind} "
                         "(only triplet_encoder runs train; leave `train` out)")
    if spec.get("features") is not None and kind != "pixel_stats":
        raise ValueError(f"params.yaml: baselines.runs.{name}.features applies to kind: pixel_stats only (kind: {kind})")
    base_encoder = params["encoders"][modality]
    encoder = deep_merge(base_encoder, spec.get("encoder"))
    if encoder["image_size"] != base_encoder["image_size"]:
        raise ValueError(
            f"params.yaml: baselines.runs.{name}.encoder.image_size ({encoder['image_size']}) differs from "
            f"encoders.{modality}.image_size ({base_encoder['image_size']}): baselines share the `encoders` stage's "
            "image cache, so they train on the same images"
        )
    return BaselineRun(
        name=name,
        modality=modality,
        train=kind == "triplet_encoder",
        pairs=deep_merge(params["pairs"]["modalities"][modality], spec.get("pairs")),
        encoder=encoder,
        description=str(spec.get("description", "")),
        kind=kind,
        features=dict(spec.get("features") or {}) if kind == "pixel_stats" else None,
    )


def run_paths(params: dict[str, Any], name: str, modality: str) -> dict[str, Path]:
    work, models, reports = (Path(params["paths"][k]) for k in ("work", "models", "reports"))
    return {
        "cache": work / "image_cache" / modality,  # the `encoders` stage's cache
        "checkpoints": models / "baselines" / name,
        "embeddings": embeddings_dir(params) / f"{name}.parquet",
        "reports": reports / RUN_STAGE / name,
        "metrics": reports / "baselines" / f"{name}.json",
    }


def run_triplets(params: dict[str, Any], run: BaselineRun, bundle):
    """The run's train/val triplets: the `pairs` stage's builder with the run's rule, on the run's own seeded stream."""
    from musecl.encoders.image_cache import image_table
    from musecl.pairs import modality_rng, region_indicator_tables, triplets_from_spec

    tables = region_indicator_tables(bundle, params["pairs"])
    return triplets_from_spec(image_table(bundle, run.modality), tables, run.pairs, params["pairs"],
                              modality_rng(int(params["seed"]), run.name), f"baselines.runs.{run.name}.pairs")


def skip_reason(params: dict[str, Any], run: BaselineRun, bundle) -> str | None:
    """Why run `run` cannot be run on this city, or None: its image modality is missing; its positive rule needs a
    similarity source the city lacks (PG-SimCLR without POIs; its definition is that rule, so no fallback); or its
    neighbour rule finds too few regions with a neighbour that has images (a scattered city)."""
    from musecl.data.schema import MODALITY_NAMES, modality_files
    from musecl.pairs import neighbour_candidates
    from musecl.pairs.stage import SOURCE_FILES, bundle_images

    if not bundle.has_modality(run.modality):
        return f"the city has no {MODALITY_NAMES[run.modality]} ({modality_files(run.modality)} absent)"
    if not run.train:
        return None
    rule, source = str(run.pairs.get("rule", "similarity")), run.pairs.get("indicator", "poi")
    if "similarity" in rule and not bundle.has_modality(source):
        return f"its positive rule '{rule}' needs {source} similarity and the city has no {source} data " \
               f"({SOURCE_FILES[source]} absent)"
    if "neighbours" in rule:
        images = bundle_images(bundle, run.modality)
        regions = pd.Index(images.attrs["regions"])
        with_images = regions.isin(images["region_id"].astype(object))
        ring = int(run.pairs.get("neighbour_ring", 1))
        near = neighbour_candidates(regions.to_numpy(), ring, candidates=with_images)
        anchors = int((with_images & ((near >= 0).sum(axis=1) > 0)).sum())
        if anchors < 3:
            return (f"its positive rule '{rule}' needs regions whose H3 neighbours (within {ring} steps) have images; "
                    f"only {anchors} of {int(with_images.sum())} regions with images have one (a scattered city)")
    return None


def skip_runs(params: dict[str, Any], names: list[str], bundle) -> dict[str, str]:
    """The runs of `names` this city cannot run (`skip_reason`): their declared outputs are written as skipped with
    the reason (embedding table, checkpoint and report folders, metrics JSON) and announced; {run: reason}."""
    from musecl.stages import skips

    out = {}
    for name in names:
        run = baseline_run(params, name)
        reason = skip_reason(params, run, bundle)
        if reason is not None:
            out[name] = reason
            skips.write_skipped_outputs(skipped_paths(params, run), reason)
    skips.announce(out, RUN_STAGE)
    return out


def skipped_paths(params: dict[str, Any], run: BaselineRun) -> list[Path]:
    paths = run_paths(params, run.name, run.modality)
    return [paths[k] for k in ("embeddings", "checkpoints", "reports", "metrics")]


def saved_file(params: dict[str, Any], run: BaselineRun) -> Path:
    """The file the run's method leaves under models/baselines/<run>/ (best.pt, features.pt or pixel_stats.json)."""
    return run_paths(params, run.name, run.modality)["checkpoints"] / RUN_KINDS[run.kind]


def run_method(params: dict[str, Any], run: BaselineRun, triplets=None) -> RegionEmbedder:
    """The run as a method: a TripletEncoder on `triplets` (a TripletSet) when it trains, else BackboneFeatures or
    PixelStats (`kind`)."""
    if run.kind == "pixel_stats":
        return PixelStats(run.name, run.modality, run.features)
    if not run.train:
        return BackboneFeatures(run.name, run.modality, run.encoder)
    paths = run_paths(params, run.name, run.modality)
    return TripletEncoder(run.name, run.modality, run.encoder, paths["checkpoints"],
                          triplets=(triplets.train, triplets.val), log_dir=paths["reports"] / "dvclive")


def run_table(params: dict[str, Any], names: list[str] | None = None) -> pd.DataFrame:
    """What each run is: modality, positive rule, negatives, loss, backbone, budget; one row per run."""
    rows = {}
    for name in names or list(section(params, "runs")):
        run = baseline_run(params, name)
        e, p = run.encoder, run.pairs
        loss = e.get("loss", {})
        pixels = run.kind == "pixel_stats"
        rows[name] = {
            "modality": run.modality,
            "kind": run.kind,
            "trained": run.train,
            "positives": _positives(p) if run.train else "-",
            "negatives": (f">= {p['negative_min_ring']} H3 steps away" if p.get("negative_min_ring") else "any other region") if run.train else "-",
            "loss": (f"{loss.get('kind')} m={loss.get('margin')}" + (f" +{loss.get('norm_penalty')}|z|" if loss.get("norm_penalty") else "")
                     if loss.get("kind", "triplet") == "triplet" else f"ntxent tau={loss.get('temperature')}") if run.train else "-",
            "backbone": _pixel_features(run) if pixels else e["backbone"],
            "weights": "-" if pixels else e.get("weights"),
            "augment": e.get("augment") if run.train else "-",
            "epochs x triplets": f"{e.get('epochs')} x {e.get('samples_per_epoch') or 'all'}" if run.train else "-",
            "description": run.description,
        }
    return pd.DataFrame(rows).T


def _pixel_features(run: BaselineRun) -> str:
    from musecl.encoders.pixel_stats import PixelStatsConfig

    config = PixelStatsConfig.from_dict(run.features, f"baselines.runs.{run.name}.features")
    return f"none: {config.dim} pixel statistics"


def _positives(p: dict[str, Any]) -> str:
    rule = str(p.get("rule", "similarity"))
    parts = []
    if "similarity" in rule:
        parts.append(f"top-{p.get('top_k', 1)} by {p.get('indicator', 'poi')} similarity")
    if "neighbours" in rule:
        parts.append(f"H3 neighbours within {p.get('neighbour_ring', 1)}")
    return " or ".join(parts) or "random region"


def run_metrics(run: BaselineRun, result=None, weights: str | None = None, region_accuracy: float | None = None,
                input_px: list[int] | None = None) -> dict[str, Any]:
    """The metrics file of one run (reports/baselines/<name>.json)."""
    out: dict[str, Any] = {"modality": run.modality, "kind": run.kind, "trained": run.train}
    if run.kind != "pixel_stats":
        out["backbone"] = run.encoder["backbone"]
    if input_px is not None:
        out["input_px"] = input_px
    if weights is not None:
        out["weights"] = weights
    if result is not None:
        h = result.history.set_index("epoch")
        out.update({
            "val_accuracy_untrained": round(float(h.loc[0, "val_accuracy"]), 4),
            "val_accuracy_best": round(float(h.loc[result.best_epoch, "val_accuracy"]), 4),
            "best_epoch": int(result.best_epoch),
            "epochs_run": int(h.index.max()),
            "training_seconds": round(float(h.loc[h.index > 0, "seconds"].sum()), 2),
        })
    if region_accuracy is not None:
        out["val_accuracy_regions"] = round(float(region_accuracy), 4)
    return out


# ---- one run, end to end (what the notebook calls) ------------------------------------------------------------------
@dataclass
class RunOutcome:
    run: BaselineRun
    table: pd.DataFrame  # region embeddings
    counts: pd.Series  # images per region
    weights: str | None  # the backbone weights actually used: none | imagenet (None: pixel statistics, no network)
    result: Any = None  # TrainResult (trained runs)
    triplets: Any = None  # TripletSet (trained runs)
    region_accuracy: float | None = None  # validation triplet accuracy of the region embeddings
    input_px: list[int] | None = None  # image size the backbone saw


def execute_run(params: dict[str, Any], name: str, bundle, progress: bool = True) -> RunOutcome:
    """Triplets -> training (or backbone features, or pixel statistics) -> region embeddings -> metrics file, for run
    `name`."""
    from musecl.stages.encoders import region_triplet_accuracy
    from musecl.storage import write_json

    run = baseline_run(params, name)
    paths = run_paths(params, run.name, run.modality)
    city = City(params, bundle, progress=progress)
    city.image_cache(run.modality)  # fail early, naming the `encoders` stage, when its cache is missing
    triplets = run_triplets(params, run, bundle) if run.train else None
    method = run_method(params, run, triplets)
    method.fit(city)
    extra: dict[str, Any] = {}
    if run.train:
        result, weights = method.result, str(run.encoder.get("weights", "none"))
        px = [int(v) for v in city.image_cache(run.modality).image_shape]
    elif run.kind == "pixel_stats":
        method.save(paths["checkpoints"])
        result, weights, px = None, None, list(method.image_shape)
        extra = {"features": len(method.feature_names), "images": method.n_images}
    else:
        method.save(paths["checkpoints"])
        result, weights, px = None, method.weights, method.input_size(city)
    table = method.transform(city)
    method.write(table, city)
    accuracy = region_triplet_accuracy(table, triplets.val) if triplets is not None else None
    write_json({**run_metrics(run, result, weights, accuracy, px), **extra}, paths["metrics"])
    return RunOutcome(run, table, method.counts, weights, result, triplets, accuracy, px)


def outcome_table(outcomes: dict[str, RunOutcome]) -> pd.DataFrame:
    """One row per run: weights, dimension, validation accuracy (untrained, best epoch, region level), seconds."""
    rows = {}
    for name, o in outcomes.items():
        m = run_metrics(o.run, o.result, o.weights, o.region_accuracy)
        rows[name] = {
            "modality": o.run.modality,
            "weights": ("none (pixel statistics)" if o.run.kind == "pixel_stats" else "ImageNet" if o.weights == "imagenet"
                        else "untrained (random init)" if not o.run.train else "random init"),
            "input px": "x".join(map(str, o.input_px or [])),
            "dimension": o.table.shape[1],
            "regions": len(o.table),
            "regions without images": int((o.counts == 0).sum()),
            "val accuracy untrained": m.get("val_accuracy_untrained", np.nan),
            "val accuracy best epoch": m.get("val_accuracy_best", np.nan),
            "val accuracy regions": m.get("val_accuracy_regions", np.nan),
            "training seconds": m.get("training_seconds", 0.0),
        }
    return pd.DataFrame(rows).T


def agreement_table(bundle, outcomes: dict[str, RunOutcome]):
    """Share of validation triplets whose positive shares each indicator with the anchor better than the negative,
    per trained run (columns: runs); None when no run trained."""
    from musecl.pairs import indicator_agreement

    indicators = bundle.indicators(transformed=True)
    agreement = {name: indicator_agreement(indicators, o.triplets.val) for name, o in outcomes.items()
                 if o.triplets is not None}
    return pd.concat(agreement, axis=1).round(3) if agreement else None
