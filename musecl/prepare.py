"""Stage `prepare`: put a validated city bundle at `paths.bundle`, from the synthetic generator, a folder or a build."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from musecl.data import CityBundle

SOURCES = ("synthetic", "folder", "build")


@dataclass
class PrepareResult:
    bundle: CityBundle
    source: str
    seconds: float
    validation: Any  # musecl.data.validate.ValidationReport
    details: dict[str, Any] = field(default_factory=dict)


def prepare_bundle(params: Mapping[str, Any], progress: bool = True) -> PrepareResult:
    """Produce the city bundle described by params `data` at `paths.bundle` and validate it.

    synthetic: generate the embedded city from a size preset; folder: validate a user's bundle and copy it in;
    build: build a bundle from open-data files named by a city config (musecl.opendata), then validate it.
    """
    from musecl.data.validate import import_bundle, validate_bundle

    data = params["data"]
    out = Path(params["paths"]["bundle"])
    seed = int(params["seed"])
    source = data.get("source")
    bad_rows = (data.get("validation") or {}).get("bad_rows", "error")
    start = time.perf_counter()
    details: dict[str, Any] = {}
    if source == "synthetic":
        from musecl.synthetic import generate_city
        from musecl.synthetic.presets import preset

        synthetic = data.get("synthetic") or {}
        config = preset(synthetic.get("preset", "default"), **(synthetic.get("overrides") or {}))
        details = generate_city(config, out, seed=seed, progress=progress, modalities=synthetic.get("modalities"))
        report = validate_bundle(out, bad_rows="error", progress=progress)
    elif source == "folder":
        folder = data.get("folder")
        if not folder:
            raise ValueError("params.yaml data.source is 'folder' but data.folder is empty: give the bundle's path")
        report = import_bundle(folder, out, bad_rows=bad_rows, progress=progress)
    elif source == "build":
        from musecl.opendata import build_bundle

        config_path = data.get("build_config")
        if not config_path:
            raise ValueError("params.yaml data.source is 'build' but data.build_config is empty: give a city config")
        details = {"build": build_bundle(config_path, out, seed=seed, progress=progress)}
        report = validate_bundle(out, bad_rows="error", progress=progress)
    else:
        raise ValueError(f"params.yaml data.source is {source!r}; expected one of {SOURCES}")
    return PrepareResult(CityBundle(out), source, time.perf_counter() - start, report, details)


def dataset_statistics(bundle: CityBundle) -> pd.DataFrame:
    """The paper's dataset-statistics table for this bundle: regions, street-view and remote-sensing images, POIs."""
    def rows(table: str, column: str) -> int:  # 0 for a modality the city does not have
        return len(bundle.read(table, columns=[column])) if bundle.has(table) else 0

    return pd.DataFrame(
        {
            "regions": [len(bundle.regions())],
            "street_view_images": [rows("street_view", "image_id")],
            "remote_sensing_images": [rows("remote_sensing", "image_id")],
            "poi_records": [rows("pois", "poi_id")],
        },
        index=pd.Index([bundle.name], name="city"),
    )


def modality_table(bundle: CityBundle) -> pd.DataFrame:
    """Which of the four modalities the city has, their files, and what the later stages do without a missing one
    (docs/data_format.md, "Modalities")."""
    from musecl.data import schema

    without = {"rs": "RS encoder, RS baselines and image-text on tiles skipped; MuseCL fusion skipped",
               "sv": "SV encoder, SV baselines and image-text on street view skipped; MuseCL fusion skipped",
               "poi": "RS positives from geographic neighbours; POI text (04) and MuseCL fusion skipped",
               "mobility": "SV positives from geographic neighbours"}
    return pd.DataFrame(
        [{"modality": m, "what": schema.MODALITY_NAMES[m], "files": schema.modality_files(m),
          "present": m in bundle.modalities, "without it": "" if m in bundle.modalities else without[m]}
         for m in schema.MODALITIES]).set_index("modality")


def statistics_beside_paper(ours: pd.DataFrame, paper_csv: str | Path) -> pd.DataFrame:
    """Our dataset statistics stacked under the paper's (MuseCL Table: Beijing, Shanghai, New York)."""
    paper = pd.read_csv(paper_csv).set_index("city")
    paper.index = [f"{c} (paper)" for c in paper.index]
    ours = ours.copy()
    ours.index = [f"{c} (this run)" for c in ours.index]
    return pd.concat([paper, ours[paper.columns]]).rename_axis("city")


def bundle_inventory(bundle: CityBundle) -> pd.DataFrame:
    """Files of the bundle with their sizes (image folders summarised as one row each)."""
    rows = []
    for path in sorted(bundle.root.iterdir()):
        if path.is_file():
            rows.append({"item": path.name, "files": 1, "MB": path.stat().st_size / 1e6})
    for folder in sorted(p for p in bundle.root.rglob("*") if p.is_dir() and any(f.is_file() for f in p.iterdir())):
        files = [f for f in folder.iterdir() if f.is_file()]
        rows.append({"item": f"{folder.relative_to(bundle.root)}/", "files": len(files),
                     "MB": sum(f.stat().st_size for f in files) / 1e6})
    return pd.DataFrame(rows).set_index("item")


def oracle_metrics(bundle: CityBundle, folds: int, repeats: int, seed: int, inner_folds: int = 3) -> pd.DataFrame | None:
    """The latent-variable oracle's R² per indicator (None for a real city, which has no latents)."""
    from musecl.oracle import oracle_r2

    latents = bundle.latents()
    if latents is None:
        return None
    return oracle_r2(latents, bundle.indicators(transformed=True), folds=folds, repeats=repeats, seed=seed,
                     inner_folds=inner_folds)


def write_oracle_metrics(oracle: pd.DataFrame | None, path: str | Path) -> dict[str, Any]:
    """Write the oracle ceiling as DVC metrics JSON: {"oracle_r2": {indicator: mean}} (empty for real cities)."""
    from musecl.storage import write_json

    metrics: dict[str, Any] = {"available": oracle is not None}
    if oracle is not None:
        metrics["oracle_r2"] = {name: round(float(v), 4) for name, v in oracle["r2_mean"].items()}
        metrics["oracle_r2_std"] = {name: round(float(v), 4) for name, v in oracle["r2_std"].items()}
        metrics["oracle_r2_min_fold"] = {name: round(float(v), 4) for name, v in oracle["r2_min"].items()}
        metrics["linear_r2"] = {name: round(float(v), 4) for name, v in oracle["linear_r2_mean"].items()}
    write_json(metrics, path)
    return metrics
