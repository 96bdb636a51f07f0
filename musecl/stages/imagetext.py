"""The `imagetext` stage (notebooks/04c_image_text.ipynb; params.yaml `imagetext`): UrbanCLIP and UrbanLN trained on
the city's images and captions, their held-out retrieval, UrbanLN's refinement step and the stretched positional
embeddings, and one embedding table per run (`<paths.work>/embeddings/<run>.parquet`) for the evaluation.

Runs of UrbanLN that share a modality and a caption selection share the short-caption pretraining (phase (a)) and
the refinement it scores, and every run of a modality shares the frozen trunk's tokens (computed once per process),
so the ablations cost only their own long-caption phase.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from musecl.methods import City, ImageTextEmbedder, ImageTextRun
from musecl.stages.captions import load_candidates, read_selection, scene_truth

IMAGETEXT_KEYS = ("preset", "config", "val_fraction", "refine", "runs", "selected")
RETRIEVAL_KS = (1, 5, 10)


@dataclass
class RunResult:
    run: ImageTextRun
    method: ImageTextEmbedder
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


def imagetext_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(params.get("imagetext") or {})
    unknown = sorted(set(cfg) - set(IMAGETEXT_KEYS))
    if unknown:
        raise ValueError(f"params.yaml imagetext: unknown setting(s) {unknown}; known: {sorted(IMAGETEXT_KEYS)}")
    if not cfg.get("runs"):
        raise ValueError("params.yaml imagetext.runs is empty")
    return cfg


def runs(params: Mapping[str, Any]) -> list[ImageTextRun]:
    """The selected runs (`imagetext.selected`, default all), in params order."""
    cfg = imagetext_settings(params)
    out = [ImageTextRun.from_config(name, spec or {}) for name, spec in cfg["runs"].items()]
    wanted = cfg.get("selected")
    if wanted:
        unknown = sorted(set(wanted) - {r.name for r in out})
        if unknown:
            raise ValueError(f"params.yaml imagetext.selected: unknown run(s) {unknown}")
        out = [r for r in out if r.name in set(wanted)]
    return out


def run_config(params: Mapping[str, Any], run: ImageTextRun):
    from musecl.imagetext.config import ImageTextConfig

    cfg = imagetext_settings(params)
    return ImageTextConfig.preset(str(cfg.get("preset", "cpu")), run.model,
                                  {**(cfg.get("config") or {}), **dict(run.overrides)})


def run_table(params: Mapping[str, Any]) -> pd.DataFrame:
    """What each run is: model, modality, captions, refinement, stretch, distillation."""
    rows = []
    for run in runs(params):
        config = run_config(params, run)
        ln = run.model == "urbanln"
        rows.append({"run": run.name, "model": run.model, "modality": run.modality,
                     "captions": run.captions if ln else "one captioner's sentences",
                     "refined": run.refine if ln else "-", "stretch": config.stretch if ln else "-",
                     "distill": config.distill if ln else "-", "description": run.description})
    return pd.DataFrame(rows)


def urbanclip_captioner(params: Mapping[str, Any], candidates: pd.DataFrame) -> str:
    """UrbanCLIP's single captioner: `captions.urbanclip_captioner`, or the only captioner a city has (e.g. a real
    city's open-data descriptions or its own caption file)."""
    name = str(params["captions"]["urbanclip_captioner"])
    names = sorted(candidates["captioner"].unique())
    if name not in names and len(names) == 1:
        return names[0]
    if name not in names:
        raise ValueError(f"captions.urbanclip_captioner {name!r} is not among this city's captioners {names}")
    return name


def captions_for(params: Mapping[str, Any], run: ImageTextRun, candidates: pd.DataFrame) -> pd.DataFrame:
    """The captions the run trains on (image_id, caption) for its modality."""
    if run.model == "urbanclip":
        name = urbanclip_captioner(params, candidates)
        table = candidates[(candidates["captioner"] == name) & (candidates["modality"] == run.modality)]
        if table.empty:
            raise ValueError(f"captions.urbanclip_captioner {name!r} has no {run.modality} caption; captioners: "
                             f"{sorted(candidates['captioner'].unique())}")
    else:
        table = read_selection(params, run.captions)
        table = table[table["modality"] == run.modality]
    return table[["image_id", "caption"]].reset_index(drop=True)


def skip_runs(params: Mapping[str, Any], bundle) -> dict[str, str]:
    """The selected runs whose image modality the city lacks: their embedding table and model folder are written as
    skipped with the reason (`musecl.stages.skips`) and announced; {run: reason}."""
    from musecl.data.schema import MODALITY_NAMES, modality_files
    from musecl.stages import skips

    out = {}
    for run in runs(params):
        if not bundle.has_modality(run.modality):
            out[run.name] = f"the city has no {MODALITY_NAMES[run.modality]} ({modality_files(run.modality)} absent)"
            skips.write_skipped_outputs(skipped_paths(params, run.name), out[run.name])
    if out and len(out) == len(runs(params)):  # nothing runs: the stage's report folder and metrics say why too
        reports = Path(params["paths"]["reports"])
        skips.write_skipped_outputs([reports / "04c_image_text", reports / "imagetext.json"], "; ".join(
            f"{name}: {why}" for name, why in out.items()))
    skips.announce(out, "04c_image_text")
    return out


def skipped_paths(params: Mapping[str, Any], name: str) -> list[Path]:
    from musecl.config import embeddings_dir

    return [embeddings_dir(params) / f"{name}.parquet", Path(params["paths"]["models"]) / "imagetext" / name]


def run_all(params: Mapping[str, Any], bundle, progress: bool = False,
            skip: Mapping[str, str] | None = None) -> dict[str, RunResult]:
    """Train every selected run except those of `skip` (`skip_runs`), write its embedding table and model; returns
    the results by run name."""
    cfg = imagetext_settings(params)
    city = City(dict(params), bundle, progress=progress)
    candidates = load_candidates(params, bundle)
    shared: dict[tuple[str, str], Any] = {}  # (modality, captions) -> UrbanLN's short-caption model
    refined: dict[tuple[str, str], pd.DataFrame] = {}  # (modality, captions) -> its refined captions
    results: dict[str, RunResult] = {}
    settings = {"val_fraction": float(cfg.get("val_fraction", 0.2)), "refine": dict(cfg.get("refine") or {})}
    for run in runs(params):
        if run.name in (skip or {}):
            continue
        start = time.perf_counter()
        key = (run.modality, run.captions)
        ln = run.model == "urbanln"
        method = ImageTextEmbedder(run, run_config(params, run), settings, captions_for(params, run, candidates),
                                   pretrained=shared.get(key) if ln else None,
                                   refined=refined.get(key) if ln and run.refine else None)
        method.fit(city)
        if ln:
            shared.setdefault(key, method.pretrained)
            if method.refined is not None:
                refined.setdefault(key, method.refined)
        method.write(method.transform(city), city)
        method.save(city.models / "imagetext" / run.name)
        results[run.name] = RunResult(run, method, time.perf_counter() - start)
        results[run.name].summary = run_summary(method)
        print(f"{run.name}: trained in {results[run.name].seconds:.1f} s", flush=True)
    return results


def run_summary(method: ImageTextEmbedder) -> dict[str, Any]:
    """The selected epoch's validation numbers of a run."""
    history = method.history
    chosen = history[history["selected"]].iloc[-1] if history["selected"].any() else history.iloc[-1]
    out = {"run": method.name, "phase": chosen["phase"], "best_epoch": int(chosen["epoch"]),
           "val_contrastive": float(chosen["val_contrastive"]), "dropped_images": method.dropped_images}
    for direction in ("i2t", "t2i"):
        for k in RETRIEVAL_KS:
            out[f"{direction}_R@{k}"] = float(chosen[f"val_{direction}_R@{k}"])
    return out


def histories(results: Mapping[str, RunResult]) -> dict[str, pd.DataFrame]:
    """Each run's training history, and the shared short-caption phase of UrbanLN where a run trained it."""
    out = {}
    for name, result in results.items():
        if result.method.pretrain_history is not None:
            out[f"{name}: short captions (shared)"] = result.method.pretrain_history
        out[name] = result.method.history
    return out


def summary_table(results: Mapping[str, RunResult]) -> pd.DataFrame:
    rows = [{**r.summary, "seconds": round(r.seconds, 1)} for r in results.values()]
    return pd.DataFrame(rows)


def retrieval_frame(results: Mapping[str, RunResult]) -> pd.DataFrame:
    """Held-out recall@k per run and direction, with the chance level k / (held-out images)."""
    rows = []
    for name, result in results.items():
        n_val = int(result.method.history.attrs["n_val"])  # held-out images of the fit
        for direction, tag in (("image_to_text", "i2t"), ("text_to_image", "t2i")):
            for k in RETRIEVAL_KS:
                rows.append({"run": name, "direction": direction, "k": k, "recall": result.summary[f"{tag}_R@{k}"],
                             "chance": min(1.0, k / max(1, n_val))})
    return pd.DataFrame(rows)


def refinement_quality(params: Mapping[str, Any], bundle, results: Mapping[str, RunResult]) -> pd.DataFrame | None:
    """Hallucination/omission of each modality's consensus captions before and after refinement (synthetic truth)."""
    from musecl.imagetext.quality import hallucination_table

    truth = scene_truth(bundle)
    if truth is None:
        return None
    consensus = read_selection(params, "consensus")
    steps: dict[str, pd.DataFrame] = {}
    for name, result in results.items():
        if result.method.refined is None or result.run.captions != "consensus":
            continue
        modality = result.run.modality
        if f"consensus ({modality})" in steps:
            continue
        steps[f"consensus ({modality})"] = consensus[consensus["modality"] == modality]
        steps[f"refined ({modality})"] = result.method.refined.assign(modality=modality)
    return hallucination_table(steps, truth).reset_index() if steps else None


def removed_examples(results: Mapping[str, RunResult], n: int = 4) -> pd.DataFrame:
    """A few refined captions with the phrases the grounding step removed."""
    for result in results.values():
        refined = result.method.refined
        if refined is not None and len(refined):
            some = refined[refined["n_removed"] > 0].head(n)
            return some[["image_id", "kept_phrases", "removed_phrases"]].assign(run=result.run.name)
    return pd.DataFrame()


def positional_tables(results: Mapping[str, RunResult], run: str | None = None):
    """(before, after): the text positional embedding of an UrbanLN run's short-caption model (77 positions) and of
    its final model (248 after stretching); None when no stretched run exists."""
    for name, result in results.items():
        if result.run.model != "urbanln" or (run and name != run) or result.method.pretrained is None:
            continue
        before = _positional(result.method.pretrained)
        after = _positional(result.method.model)
        if before is not None and after is not None and len(after) > len(before):
            return name, before, after
    return None


def _positional(model) -> np.ndarray | None:
    pe = getattr(model, "positional_embedding", None)
    return None if pe is None else pe.detach().float().cpu().numpy()


def write_report(params: Mapping[str, Any], results: Mapping[str, RunResult]) -> dict[str, Any]:
    """Figures, tables and `<paths.reports>/imagetext.json` (the selected epochs' held-out numbers)."""
    import matplotlib.pyplot as plt

    from musecl.imagetext.plots import retrieval_bars, training_curves
    from musecl.plots import save_figure, write_table
    from musecl.storage import write_json

    out = Path(params["paths"]["reports"]) / "04c_image_text"
    fig = training_curves(histories(results))
    save_figure(fig, out / "training_curves.png")
    plt.close(fig)
    fig = retrieval_bars(retrieval_frame(results), RETRIEVAL_KS)
    save_figure(fig, out / "retrieval.png")
    plt.close(fig)
    summary = summary_table(results).drop(columns=["seconds"])
    write_table(summary, out / "runs")
    metrics = {row["run"]: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "run"}
               for row in summary.to_dict(orient="records")}
    write_json(metrics, Path(params["paths"]["reports"]) / "imagetext.json")
    return metrics


def checks(results: Mapping[str, RunResult], params: Mapping[str, Any]) -> pd.Series:
    from musecl.config import embeddings_dir
    from musecl.embeddings import read_embeddings

    out = {}
    n_regions = None
    for name, result in results.items():
        table = read_embeddings(embeddings_dir(params) / f"{name}.parquet")
        n_regions = n_regions or len(table)
        out[f"{name}: one finite embedding per region"] = bool(len(table) == n_regions and np.isfinite(table.to_numpy()).all())
        out[f"{name}: a selected epoch"] = bool(result.method.history["selected"].any())
    return pd.Series(out)


def findings(summary: pd.DataFrame, quality: pd.DataFrame | None) -> str:
    """'What this shows', written from the numbers just computed."""
    lines = []
    for d in summary.to_dict(orient="records"):
        lines.append(f"- **{d['run']}**: held-out image-to-text R@1 {d['i2t_R@1']:.2f}, R@10 {d['i2t_R@10']:.2f} "
                     f"(best epoch {d['best_epoch']} of phase {d['phase']}).")
    by = summary.set_index("run")
    for ablation, label in (("urbanln_sv_no_ipsi", "stretching"), ("urbanln_sv_no_msd", "self-distillation")):
        if ablation in by.index and "urbanln_sv" in by.index:
            diff = by.at["urbanln_sv", "i2t_R@10"] - by.at[ablation, "i2t_R@10"]
            verb = "raises" if diff > 0 else "does not raise"
            lines.append(f"- On street views, {label} {verb} held-out image-to-text R@10 ({diff:+.2f}, same captions "
                         f"with and without it); whether it helps the indicators is the evaluation's question "
                         f"(notebooks 06-07).")
    if {"urbanln_sv_no_consensus", "urbanln_sv_no_refine"} & set(by.index):
        lines.append("- The consensus and refinement ablations train and retrieve with other captions (random or "
                     "unrefined), so their retrieval numbers are not comparable with UrbanLN+SV's; the evaluation "
                     "compares them on the indicators.")
    if quality is not None:
        rate = dict(zip(quality["step"], quality["hallucination_rate"]))
        for modality in ("rs", "sv"):
            before, after = rate.get(f"consensus ({modality})"), rate.get(f"refined ({modality})")
            if before is not None and after is not None:
                verdict = "lowers" if after < before else "does not lower"
                lines.append(f"- Refinement {verdict} the hallucination rate of the {modality} captions: "
                             f"{before:.1%} -> {after:.1%} of stated facts.")
    return "\n".join(lines)
