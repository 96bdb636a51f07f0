"""The `variants` stage (notebooks/05b_fusion_variants.ipynb; params.yaml `baselines.variants`): the attentive fusion
of stage `fusion` (:class:`musecl.methods.FusedRegions`) on other inputs or with other settings: Fusion-svrv (no text
alignment), InfoNCE instead of MSE, and the fusion of the random-positive encoders (MuseCL without POI-based /
mobility-based pairs). Each writes `<paths.work>/embeddings/<name>.parquet` and its attention weights to
`<paths.work>/variants/<name>_attention.parquet`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from musecl.config import deep_merge
from musecl.fusion import FusionResult, attention_summary, fusion_metrics
from musecl.methods import City, FusedRegions
from musecl.stages.baselines import entry, selected

_VARIANT_KEYS = {"rs", "sv", "fusion", "description"}
VARIANT_STAGE = "05b_fusion_variants"


@dataclass(frozen=True)
class FusionVariant:
    name: str
    rs: str  # embedding table names under <work>/embeddings (without .parquet)
    sv: str
    fusion: dict[str, Any]  # the `fusion` section with the variant's overrides merged in
    description: str


def variant_names(params: dict[str, Any]) -> list[str]:
    return selected(params, "variants", "selected_variants")


def fusion_variant(params: dict[str, Any], name: str) -> FusionVariant:
    spec = entry(params, "variants", name, _VARIANT_KEYS)
    return FusionVariant(name, str(spec.get("rs", "rs")), str(spec.get("sv", "sv")),
                         deep_merge(params["fusion"], spec.get("fusion")), str(spec.get("description", "")))


def attention_path(params: dict[str, Any], name: str) -> Path:
    folder = params["paths"].get("variants") or Path(params["paths"]["work"]) / "variants"  # the `seeds` stage moves it
    return Path(folder) / f"{name}_attention.parquet"


def run_variant(params: dict[str, Any], variant: FusionVariant, bundle=None, progress: bool = False):
    """Fuse the variant's inputs with its fusion settings; writes its embedding table and attention weights.
    Returns the FusionResult."""
    from musecl.fusion import write_attention

    city = City(params, bundle, progress=progress)
    method = FusedRegions(variant.name, variant.fusion, rs=variant.rs, sv=variant.sv).fit(city)
    method.write(method.transform(city), city)
    write_attention(method.attention, attention_path(params, variant.name))
    return method.result


def variant_outputs(params: dict[str, Any], name: str) -> list[Path]:
    """What dvc.yaml declares for variant `name`: its embedding table, attention weights and metrics JSON."""
    from musecl.config import embeddings_dir

    return [embeddings_dir(params) / f"{name}.parquet", attention_path(params, name),
            Path(params["paths"]["reports"]) / "variants" / f"{name}.json"]


def skip_variants(params: dict[str, Any]) -> dict[str, str]:
    """The selected variants whose input tables were skipped upstream (a city without a modality): their outputs are
    written as skipped with the reason, and announced; returns {variant: reason}. A variant reads the text table only
    when its loss or output needs it (Fusion-svrv does not: it runs without POIs)."""
    from musecl.config import embeddings_dir
    from musecl.embeddings import skipped_reason
    from musecl.stages import skips

    out = {}
    for name in variant_names(params):
        v = fusion_variant(params, name)
        needs_text = v.fusion.get("loss") != "none" or v.fusion.get("output") != "image"
        inputs = [v.rs, v.sv, *(["poi_text"] if needs_text else [])]
        found = {t: skipped_reason(embeddings_dir(params) / f"{t}.parquet") for t in inputs}
        missing = {t: why for t, why in found.items() if why is not None}
        if missing:
            out[name] = f"needs {', '.join(inputs)}; not run: " + "; ".join(f"{t} ({w})" for t, w in missing.items())
            skips.write_skipped_outputs(variant_outputs(params, name), out[name])
    skips.announce(out, VARIANT_STAGE)
    return out


def run_variants(params: dict[str, Any], bundle=None, progress: bool = False,
                 skip: Mapping[str, str] | None = None) -> tuple[dict, dict[str, FusionResult]]:
    """Every selected variant (`baselines.selected_variants`, or all) except those of `skip` (`skip_variants`): their
    settings and FusionResults."""
    variants = {name: fusion_variant(params, name) for name in variant_names(params) if name not in (skip or {})}
    return variants, {name: run_variant(params, v, bundle, progress) for name, v in variants.items()}


def variant_table(variants: Mapping[str, Any]) -> pd.DataFrame:
    """One row per fusion variant (:class:`FusionVariant`): its input tables, loss, output and description."""
    return pd.DataFrame({name: {"rs": v.rs, "sv": v.sv, "loss": v.fusion["loss"], "output": v.fusion["output"],
                                "description": v.description} for name, v in variants.items()}).T


def write_variant_metrics(results: Mapping[str, FusionResult], folder: str | Path) -> list[Path]:
    """`fusion_metrics` of every variant as `<folder>/<name>.json` (the stage's DVC metrics, reports/variants)."""
    from musecl.storage import write_json

    written = []
    for name, result in results.items():
        path = Path(folder) / f"{name}.json"
        write_json(fusion_metrics(result), path)
        written.append(path)
    return written


def variant_metrics_table(results: Mapping[str, FusionResult]) -> pd.DataFrame:
    """One row per variant: the scalar entries of its `fusion_metrics` (final loss, wall time, region counts)."""
    return pd.DataFrame({name: {k: v for k, v in fusion_metrics(r).items() if not isinstance(v, dict)}
                         for name, r in results.items()}).T


def attention_summaries(results: Mapping[str, FusionResult]) -> pd.DataFrame:
    """`attention_summary` of every variant, stacked (index: variant, weight); empty when every variant was skipped."""
    if not results:
        return pd.DataFrame()
    return pd.concat({name: attention_summary(r.attention) for name, r in results.items()})


def variant_output_checks(results: Mapping[str, FusionResult], embeddings_dir: str | Path) -> pd.DataFrame:
    """One row per variant, booleans that must all be True: its written table `<embeddings_dir>/<name>.parquet` (read
    back, which refuses NaN or infinite values) has a row for every region of its attention table, and the attention
    weights sum to one in every region."""
    from musecl.embeddings import read_embeddings

    rows = {}
    for name, result in results.items():
        saved = read_embeddings(Path(embeddings_dir) / f"{name}.parquet")
        attention = result.attention
        rows[name] = {
            "one row per region": bool(saved.index.equals(attention.index)),
            "attention sums to 1": bool(np.allclose(attention["alpha_rs"] + attention["alpha_sv"], 1.0, atol=1e-6)),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("variant")
