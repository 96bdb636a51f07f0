"""The `seeds` stage (notebooks/05c_training_seeds.ipynb): every trained representation trained again with other seeds.

The main pipeline trains each representation once, with the training seed `t` (:func:`musecl.config.training_seed`).
This stage trains all of them again with `t + k` for k = 1 .. `training_seeds.extra`, on the same city, pairs, image
caches and captions, so that the evaluation can report mean ± std over training seeds × folds and pair its tests over
both. The frozen image trunks (:mod:`musecl.encoders.trunk`) are computed once and kept on disk, so an extra seed
costs the training, not the trunk. With `n_jobs` > 1 the seeds train side by side, one process per seed with
`threads_per_job` torch threads each (the image-text runs too: their `threads` is null in both presets). Every
seed trains with `threads_per_job` threads (null: this process's torch threads) whether it runs in its own process or
in this one, so the tables do not depend on `n_jobs`. The default runs the seeds one after the other in this process:
on the 2-core development machine two seed processes with one thread each took 10.4 min instead of about 15, but
each held up to 2.9 GB (5.6 GB in all, against the pipeline's 4 GB goal; README, "Two commands").

What runs for each seed, in the pipeline's order: MuseCL's RS and SV encoders, Word2Vec on the POI text, every baseline
run that trains (`baselines.runs` with training; frozen backbones and pixel statistics have no training seed), MuseCL's
fusion, every fusion variant, and every image-text run (UrbanCLIP, UrbanLN and its ablations). Outputs of seed k:
  <paths.work>/seeds/s<k>/embeddings/<name>.parquet   the embedding tables (same names as the main run's)
  <paths.work>/seeds/s<k>/variants/                  the fusion variants' attention weights
Checkpoints and the runs' reports (curves, metrics files with timings) go to a scratch folder
(<paths.work>/seeds_scratch) that an interrupted run resumes from and a finished run deletes: the embeddings are what
the evaluation needs, keeping 30 extra checkpoints would triple the DVC cache, and timings in the stage's output would
make it differ on every run (and re-run the evaluation) although every table is the same.
"""
from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from musecl.config import training_seed

SEEDS_DIR, SCRATCH_DIR = "seeds", "seeds_scratch"
STEPS = ("encoders", "poi_text", "baselines", "fusion", "variants", "imagetext")
_KEYS = ("extra", "steps", "protocols", "n_jobs", "threads_per_job")


def settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """`training_seeds` with its defaults; unknown keys and steps are refused."""
    cfg = dict(params.get("training_seeds") or {})
    unknown = sorted(set(cfg) - set(_KEYS))
    if unknown:
        raise ValueError(f"params.yaml: training_seeds has unknown keys {unknown} (known: {list(_KEYS)})")
    threads = cfg.get("threads_per_job")
    out = {"extra": int(cfg.get("extra", 0)), "steps": list(cfg.get("steps") or STEPS),
           "protocols": list(cfg.get("protocols") or ["kfold"]), "n_jobs": int(cfg.get("n_jobs", 1)),
           "threads_per_job": None if threads is None else int(threads)}
    bad = sorted(set(out["steps"]) - set(STEPS))
    if bad:
        raise ValueError(f"params.yaml: training_seeds.steps has unknown steps {bad} (known: {list(STEPS)})")
    if out["extra"] < 0:
        raise ValueError(f"params.yaml: training_seeds.extra must be >= 0, got {out['extra']}")
    if out["n_jobs"] < 1:
        raise ValueError(f"params.yaml: training_seeds.n_jobs must be >= 1, got {out['n_jobs']}")
    if out["threads_per_job"] is not None and out["threads_per_job"] < 1:
        raise ValueError(f"params.yaml: training_seeds.threads_per_job must be >= 1 or null, got {threads!r}")
    return out


def extra_seeds(params: Mapping[str, Any]) -> list[int]:
    """The seed indices k of the extra runs (1 .. extra); empty when the stage is off."""
    return list(range(1, settings(params)["extra"] + 1))


def seed_dir(params: Mapping[str, Any], k: int) -> Path:
    return Path(params["paths"]["work"]) / SEEDS_DIR / f"s{k}"


def seed_params(params: Mapping[str, Any], k: int) -> dict[str, Any]:
    """The params of seed index k: training seed + k, embeddings and variants' attention under `seed_dir`, checkpoints
    and reports in the scratch folder; every input (bundle, pairs, image caches, captions) stays the main run's."""
    out = copy.deepcopy(dict(params))
    out["encoders"] = {**out["encoders"], "seed": training_seed(params) + k}
    root = seed_dir(params, k)
    scratch = Path(params["paths"]["work"]) / SCRATCH_DIR / f"s{k}"
    out["paths"] = {**out["paths"], "embeddings": str(root / "embeddings"), "variants": str(root / "variants"),
                    "reports": str(scratch / "reports"), "models": str(scratch / "models")}
    return out


def run_seed(params: Mapping[str, Any], k: int, bundle, progress: bool = False) -> pd.DataFrame:
    """Train every selected step's representations with seed index k; one row per run (step, run, seconds)."""
    from musecl.methods import City, FusedRegions, PoiText
    from musecl.stages import baselines, encoders, imagetext, variants

    p = seed_params(params, k)
    steps = settings(params)["steps"]
    rows = []

    def timed(step: str, name: str, fn) -> None:
        start = time.perf_counter()
        fn()
        rows.append({"seed": k, "training seed": p["encoders"]["seed"], "step": step, "run": name,
                     "seconds": round(time.perf_counter() - start, 1)})
        if progress:
            print(f"seed {k}: {step} {name} in {rows[-1]['seconds']:.1f} s", flush=True)

    from musecl.config import embeddings_dir
    from musecl.embeddings import skipped_reason

    def skipped(step: str, name: str) -> bool:
        """The main run skipped this representation (the city lacks its modality): no extra seed either."""
        reason = skipped_reason(embeddings_dir(params) / f"{name}.parquet")
        if reason is not None:
            print(f"seed {k}: {step} {name} not run: {reason}", flush=True)
        return reason is not None

    city = City(p, bundle, progress=False)
    if "encoders" in steps:
        for m in ("rs", "sv"):
            if not skipped("encoders", m):
                timed("encoders", m, lambda m=m: encoders.embed_encoders(city, encoders.train_encoders(city, [m])))
    if "poi_text" in steps and not skipped("poi_text", "poi_text"):
        def text() -> None:
            method = PoiText.from_params(p).fit(city)
            method.write(method.fitted.regions.table, city)
        timed("poi_text", "poi_text", text)
    if "baselines" in steps:
        for name in baselines.run_names(p):
            if baselines.baseline_run(p, name).train and not skipped("baselines", name):
                timed("baselines", name, lambda name=name: baselines.execute_run(p, name, bundle, progress=False))
    if "fusion" in steps and not skipped("fusion", "musecl"):
        def fuse() -> None:
            method = FusedRegions("musecl", p["fusion"], rs="rs", sv="sv", text="poi_text").fit(city)
            method.write(method.transform(city), city)
        timed("fusion", "musecl", fuse)
    if "variants" in steps:
        for name in (n for n in variants.variant_names(p) if not skipped("variants", n)):
            timed("variants", name, lambda name=name: variants.run_variant(p, variants.fusion_variant(p, name), bundle))
    if "imagetext" in steps and p.get("imagetext", {}).get("runs"):
        skip = {r.name: "main run skipped" for r in imagetext.runs(p) if skipped("imagetext", r.name)}
        timed("imagetext", "all runs", lambda: imagetext.run_all(p, bundle, progress=False, skip=skip))
    return pd.DataFrame(rows)


def run_all(params: Mapping[str, Any], bundle, progress: bool = True) -> pd.DataFrame:
    """Every extra seed, `n_jobs` of them at a time in their own processes (one: in this one); each seed's scratch
    checkpoints are deleted once its runs are done. One row per run, in seed order."""
    import torch

    cfg = settings(params)
    ks = extra_seeds(params)
    jobs = min(cfg["n_jobs"], len(ks))
    threads = cfg["threads_per_job"] or torch.get_num_threads()  # null: this process's, in the workers too
    if jobs <= 1:
        tables = [_seed_job(params, k, bundle, progress, threads) for k in ks]
    else:
        from joblib import Parallel, delayed

        if progress:
            print(f"{len(ks)} seeds side by side in {jobs} processes; each prints its runs as they finish", flush=True)
        tables = Parallel(n_jobs=jobs)(delayed(_seed_job)(params, k, bundle, progress, threads) for k in ks)
    shutil.rmtree(Path(params["paths"]["work"]) / SCRATCH_DIR, ignore_errors=True)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=["seed", "training seed", "step", "run", "seconds"])


def _seed_job(params: Mapping[str, Any], k: int, bundle, progress: bool, threads: int) -> pd.DataFrame:
    """Seed k's runs with `threads` torch threads, then its scratch folder deleted (its embeddings are written: its
    checkpoints go)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        table = run_seed(params, k, bundle, progress)
    finally:
        torch.set_num_threads(before)
    shutil.rmtree(Path(params["paths"]["work"]) / SCRATCH_DIR / f"s{k}", ignore_errors=True)
    return table


def written_tables(params: Mapping[str, Any]) -> pd.DataFrame:
    """The embedding tables each extra seed wrote (rows: table name; columns: seed index; values: regions)."""
    from musecl.embeddings import read_embeddings

    out = {}
    for k in extra_seeds(params):
        folder = seed_dir(params, k) / "embeddings"
        out[f"s{k}"] = {f.stem: len(read_embeddings(f)) for f in sorted(folder.glob("*.parquet"))
                        if not f.stem.endswith("_attention")}
    return pd.DataFrame(out)
