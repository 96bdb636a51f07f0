"""What the `evaluate` stage's downstream MLPs cost on this machine, and the floor that puts under the stage's time.

    python benchmarks/evaluation_cost.py [--tables musecl sv_imagenet] [--threads 1]

For each MLP regressor of `params.yaml` (`mlp`, `mlp_std` on the paper protocol, `mlp_urbanclip` on UrbanCLIP's) it
trains the regressor's fits for each given embedding table (under `<paths.work>/embeddings`; by default MuseCL's
128-d vector and the 1280-d street-view ImageNet features, the narrowest and widest inputs of the default run) with
`--threads` torch threads, exactly as the stage does, and prints seconds per model-epoch (one epoch of one of the
stage's small MLPs: its mini-batches, backward passes and Adam steps, and its validation pass). With the stage's last
`results.parquet` (the `epochs` every fit trained) it projects the CPU-seconds of all its MLP fits: the number of
model-epochs times each timed table's cost (most of the default run's representations are 128-384 wide).
Divided by the cores it is a floor of the stage's wall time: early stopping decides the epochs, the paper's network
decides the FLOPs per epoch, and a model-epoch is mostly matrix products (the stacked trainer, docs/evaluation.md).
Needs the default pipeline's outputs (`dvc repro evaluate`).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--tables", nargs="+", default=["musecl", "sv_imagenet"],
                        help="embedding tables (names under <paths.work>/embeddings) to time the MLPs on")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fit (the stage: threads_per_job)")
    args = parser.parse_args()

    import torch

    from musecl.config import embeddings_dir, load_params
    from musecl.data import CityBundle
    from musecl.embeddings import read_embeddings
    from musecl.evaluation import EvaluationSettings, evaluate, make_folds
    from musecl.evaluation.regressors import MLP_REGRESSORS
    from musecl.evaluation.store import evaluation_dir, select_indicators

    params = load_params(args.params)
    bundle = CityBundle(params["paths"]["bundle"])
    settings = EvaluationSettings.from_params(params)
    targets = select_indicators(bundle.indicators(transformed=True), params["evaluation"]["indicators"],
                                source=str(bundle.root)).dropna()
    ids = sorted(targets.index.astype(str))
    folds = make_folds(ids, settings.split_specs, settings.seed, bundle.h3_resolution)
    torch.set_num_threads(args.threads)
    pairs = [(p, r) for p in settings.protocols for r in p.regressors if r in MLP_REGRESSORS]
    rows = []
    for name in args.tables:
        table = read_embeddings(embeddings_dir(params) / f"{name}.parquet")
        for protocol, regressor in pairs:
            narrowed = replace(settings, protocols=(replace(protocol, regressors=(regressor,)),), n_jobs=1,
                               threads_per_job=args.threads)
            start = time.perf_counter()
            res = evaluate({name: table}, targets, folds, narrowed, progress=False).results
            seconds = time.perf_counter() - start
            epochs = int(res["epochs"].sum())
            rows.append({"table": name, "dim": table.shape[1], "protocol": protocol.name, "regressor": regressor,
                         "fits": len(res), "model-epochs": epochs, "seconds": round(seconds, 2),
                         "ms per model-epoch": round(1000 * seconds / epochs, 2)})
    timed = pd.DataFrame(rows)
    print(f"torch threads per fit: {args.threads}\n")
    print(timed.to_markdown(index=False))

    results_file = evaluation_dir(params) / "results.parquet"
    if not Path(results_file).is_file():
        print(f"\n{results_file} is missing: run `dvc repro evaluate` for the projection")
        return
    stored = pd.read_parquet(results_file)
    mlp = stored[stored["regressor"].isin(list(MLP_REGRESSORS)) & (stored["epochs"] > 0)]
    per = mlp.groupby("regressor").agg(fits=("epochs", "size"), model_epochs=("epochs", "sum"))
    for name in args.tables:
        rate = timed[timed["table"] == name].set_index("regressor")["ms per model-epoch"]
        per[f"CPU-s at {name}'s rate"] = (per["model_epochs"] * rate / 1000).round(0)
    print(f"\nThe last evaluation's MLP fits ({results_file}), at each timed table's cost per model-epoch:\n")
    print(per.reset_index().to_markdown(index=False))
    totals = {name: per[f"CPU-s at {name}'s rate"].sum() for name in args.tables}
    low = min(totals.values())
    print("\nall MLP fits: " + ", ".join(f"{v:.0f} CPU-s at {k}'s rate" for k, v in totals.items())
          + f" ({args.threads} thread(s) per fit); with evaluation.n_jobs = {settings.n_jobs} that is at least "
          f"{low / 60 / max(1, settings.n_jobs):.1f} min of the stage's wall time")


if __name__ == "__main__":
    main()
