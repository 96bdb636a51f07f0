"""The training-budget curve (stage `sensitivity`, notebooks/06b_sensitivity.ipynb; params.yaml
`sensitivity.budget_curve`): R² of trained encoders against the number of training epochs.

It answers "would more training change the ranking?". Each run in `budget_curve.runs` (MuseCL's `rs` and `sv`
encoders, and baseline runs of `baselines.runs` by name) is trained once up to the largest budget with its own settings
(the main pipeline's triplets, images, optimiser and seed; only `epochs` changes), stopping at every budget point
(`max_epochs_this_run`, resuming from `last.pt`; each run starts afresh), and the encoder the pipeline would keep at that budget (the best
epoch so far by the validation criterion) embeds the regions. Budget 0 is the encoder before any training (the
frozen ImageNet trunk and an untrained head). Every point is scored with ridge on the robust protocol's folds (the
`evaluate` stage's folds), so the curve's points compare with each other and with the floor and ceiling rows of the
main results (pixel statistics, oracle), drawn as lines.

A run whose modality the city lacks, or whose main-run table its stage skipped (musecl/embeddings.py), is not run
(:func:`skipped_runs`, with the reason the notebook states).
"""
from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import pandas as pd

from musecl.methods import City, TripletEncoder

_KEYS = ("epochs", "runs", "references")


def curve_settings(params: dict[str, Any]) -> dict[str, Any]:
    """`sensitivity.budget_curve` checked: sorted distinct epochs starting at 0, known runs."""
    cfg = dict((params.get("sensitivity") or {}).get("budget_curve") or {})
    unknown = sorted(set(cfg) - set(_KEYS))
    if unknown:
        raise ValueError(f"params.yaml: sensitivity.budget_curve has unknown keys {unknown} (known: {list(_KEYS)})")
    epochs = sorted({int(e) for e in cfg.get("epochs") or []})
    if epochs and (epochs[0] < 0 or len(epochs) < 2):
        raise ValueError(f"params.yaml: sensitivity.budget_curve.epochs must hold >= 2 values >= 0, got {epochs}")
    runs = [str(r) for r in cfg.get("runs") or []]
    known = {"rs", "sv", *((params.get("baselines") or {}).get("runs") or {})}
    bad = sorted(set(runs) - known)
    if bad:
        raise ValueError(f"params.yaml: sensitivity.budget_curve.runs {bad} are neither rs/sv nor baselines.runs "
                         f"({sorted(known)})")
    return {"epochs": epochs, "runs": runs, "references": [str(r) for r in cfg.get("references") or []]}


def skipped_runs(params: dict[str, Any], bundle) -> dict[str, str]:
    """{run label: why not} for the curve runs this city cannot train: the city lacks the run's images, or the main
    pipeline skipped the run's embedding table (`<run>.parquet`)."""
    from musecl.config import embeddings_dir
    from musecl.embeddings import skipped_reason
    from musecl.stages import baselines

    out = {}
    for run in curve_settings(params)["runs"]:
        modality = run if run in ("rs", "sv") else baselines.baseline_run(params, run).modality
        reason = (f"the city has no {modality} images" if not bundle.has_modality(modality)
                  else skipped_reason(embeddings_dir(params) / f"{run}.parquet"))
        if reason is not None:
            out[run_label(params, run)] = reason
    return out


def run_encoder(params: dict[str, Any], run: str, bundle, epochs: int) -> TripletEncoder:
    """The encoder of `run` with its own settings and triplets, `epochs` epochs, checkpoints in
    `<paths.models>/sensitivity/budget/<run>`."""
    from musecl.stages import baselines

    city = City(params, bundle, progress=False)
    folder = city.models / "sensitivity" / "budget" / run
    if run in ("rs", "sv"):
        settings = {**params["encoders"][run], "epochs": epochs}
        return TripletEncoder(run, run, settings, folder)
    spec = baselines.baseline_run(params, run)
    if not spec.train:
        raise ValueError(f"params.yaml: sensitivity.budget_curve.runs: baselines.runs.{run} does not train")
    triplets = baselines.run_triplets(params, spec, bundle)
    return TripletEncoder(run, spec.modality, {**spec.encoder, "epochs": epochs}, folder,
                          triplets=(triplets.train, triplets.val))


def run_curve(params: dict[str, Any], bundle, targets: pd.DataFrame, folds, settings,
              progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run at every budget; returns (results rows with columns `run`, `epochs`, `triplets` added, one row per
    run and budget with the kept epoch and the validation loss)."""
    from musecl.encoders import build_encoder
    from musecl.encoders.embed import embed_regions
    from musecl.evaluation import evaluate

    cfg = curve_settings(params)
    city = City(params, bundle, progress=False)
    parts, kept = [], []
    skipped = skipped_runs(params, bundle)
    for run in cfg["runs"]:
        if run_label(params, run) in skipped:
            continue
        method = run_encoder(params, run, bundle, max(cfg["epochs"]))
        # the curve steps one training through its budgets: it starts afresh (a finished or half-finished run's
        # last.pt would otherwise be resumed past the first budgets); a run costs a few minutes at most
        shutil.rmtree(method.checkpoints, ignore_errors=True)
        config = method.config(city)
        per_epoch = int(config.samples_per_epoch or len(method.triplets[0] if method.triplets else
                                                         city.triplets(method.modality, "train")))
        done = 0
        for budget in cfg["epochs"]:
            if budget == 0:
                model, best, val_loss = build_encoder(config.model, seed=config.seed).eval(), 0, float("nan")
            else:
                method.settings["max_epochs_this_run"] = budget - done
                method.fit(city)
                done = budget
                h = method.result.history.set_index("epoch")
                model, best, val_loss = method.model, method.result.best_epoch, float(h.loc[method.result.best_epoch,
                                                                                            "val_loss"])
            table, _ = embed_regions(model, city.image_cache(method.modality), city.region_ids(), params["encoders"])
            res = evaluate({run: table}, targets, folds, settings, progress=False).results
            parts.append(res.assign(run=run_label(params, run), epochs=budget, triplets=budget * per_epoch))
            kept.append({"run": run_label(params, run), "epochs": budget, "triplets": budget * per_epoch, "kept epoch": best,
                         "val loss": val_loss})
            if progress:
                print(f"budget curve: {run_label(params, run)} at {budget} epochs: mean R² "
                      f"{res['r2'].mean():.3f} (kept epoch {best})", flush=True)
    if not parts:
        return (pd.DataFrame(columns=["run", "epochs", "triplets", "indicator", "r2"]),
                pd.DataFrame(columns=["run", "epochs", "triplets", "kept epoch", "val loss"]))
    return pd.concat(parts, ignore_index=True), pd.DataFrame(kept)


def default_budgets(params: dict[str, Any]) -> dict[str, int]:
    """The epochs each curve run trains in the main pipeline (drawn as the dotted line)."""
    from musecl.stages import baselines

    out = {}
    for run in curve_settings(params)["runs"]:
        settings = params["encoders"][run] if run in ("rs", "sv") else baselines.baseline_run(params, run).encoder
        out[run_label(params, run)] = int(settings["epochs"])
    return out


def run_label(params: dict[str, Any], run: str) -> str:
    """The name a curve run has in the results tables: `rs`/`sv` -> RS/SV; a baseline run -> the representation made
    of its table alone, or "<representation> (visual part)" when the representation also has other inputs."""
    if run in ("rs", "sv"):
        return run.upper()
    file = f"{run}.parquet"
    reps = (params.get("evaluation") or {}).get("representations") or {}
    alone = [name for name, r in reps.items() if list((r or {}).get("embeddings") or []) == [file]]
    if alone:
        return alone[0]
    part = [name for name, r in reps.items() if file in ((r or {}).get("embeddings") or [])]
    return f"{part[0]} (visual part)" if part else run


def curve_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean R² over folds: rows (run, epochs), columns indicators."""
    return results.pivot_table(index=["run", "epochs"], columns="indicator", values="r2", aggfunc="mean",
                               sort=False).round(3)


def reference_levels(stored_results: pd.DataFrame, references: list[str], protocol: str, regressor: str) -> pd.DataFrame:
    """Mean R² per indicator of the reference rows (e.g. pixel floors, the oracle) in the main results."""
    part = stored_results[(stored_results["protocol"] == protocol) & (stored_results["regressor"] == regressor)
                          & stored_results["method"].isin(references)]
    return part.groupby(["method", "indicator"], sort=False)["r2"].mean().unstack("indicator")


def plot_curve(results: pd.DataFrame, references: pd.DataFrame, default_epochs: dict[str, int]):
    """One panel per indicator: mean R² (± std over folds as a band) against epochs (symlog axis), one line per run;
    the reference rows as horizontal dashed lines; the main pipeline's budget as a dotted vertical line."""
    import matplotlib.pyplot as plt

    from musecl.evaluation.tables import indicator_label
    from musecl.plots import method_colors


    indicators = list(dict.fromkeys(results["indicator"]))
    runs = list(dict.fromkeys(results["run"]))
    epochs = sorted(set(results["epochs"]))
    colors = method_colors([*runs, *references.index], {r: "reference" for r in references.index})
    ncols = 3
    nrows = int(np.ceil(len(indicators) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.75, 2.1 * nrows + 0.6), sharex=True, squeeze=False)
    stats = results.groupby(["run", "epochs", "indicator"], sort=False)["r2"].agg(["mean", "std"]).reset_index()
    for ax, indicator in zip(axes.flat, indicators):
        for run in runs:
            s = stats[(stats["run"] == run) & (stats["indicator"] == indicator)].sort_values("epochs")
            ax.plot(s["epochs"], s["mean"], marker="o", ms=3, lw=1.4, color=colors[run], label=run)
            ax.fill_between(s["epochs"], s["mean"] - s["std"], s["mean"] + s["std"], color=colors[run], alpha=0.12, lw=0)
        for ref in references.index:
            if indicator in references.columns and np.isfinite(references.loc[ref, indicator]):
                ax.axhline(references.loc[ref, indicator], color=colors[ref], ls="--", lw=1, label=ref)
        for e in sorted(set(default_epochs.values())):
            ax.axvline(e, color="0.5", ls=":", lw=1)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xticks(epochs, [str(e) for e in epochs])
        ax.minorticks_off()
        ax.set_title(indicator_label(indicator), fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, lw=0.5)
    for ax in axes.flat[len(indicators):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("training epochs", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("R² (ridge, K-fold)", fontsize=8)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    fig.suptitle("Does more training change the ranking? (dotted: the pipeline's budget)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    return fig


def curve_summary(results: pd.DataFrame, references: pd.DataFrame, default_epochs: dict[str, int]) -> str:
    """Sentences written from the curve: for each run, mean R² over indicators at budget 0, at the pipeline's budget
    and at the largest, and how it stands against each reference (mean over indicators)."""
    mean = results.groupby(["run", "epochs"], sort=False)["r2"].mean()
    ref_mean = references.mean(axis=1) if len(references) else pd.Series(dtype=float)
    lines = []
    for run in dict.fromkeys(results["run"]):
        r = mean.loc[run]
        last, default = int(r.index.max()), default_epochs.get(run)
        at_default = f", {r.loc[default]:.3f} at the pipeline's {default} epochs" if default in r.index else ""
        refs = "; ".join(f"{'above' if r.loc[last] > v else 'below'} {name} ({v:.3f})" for name, v in ref_mean.items())
        best = int(r.idxmax())
        lines.append(f"- **{run}**: mean R² {r.loc[0] if 0 in r.index else float('nan'):.3f} untrained{at_default}, "
                     f"{r.loc[last]:.3f} after {last} epochs (best {r.max():.3f} at {best}); at {last} epochs "
                     f"{refs or 'no reference rows'}.")
    order = mean.xs(max(mean.index.get_level_values("epochs")), level="epochs").sort_values(ascending=False)
    lines.append(f"- Ranking at the largest budget: {' > '.join(order.index)}.")
    return "\n".join(lines)
