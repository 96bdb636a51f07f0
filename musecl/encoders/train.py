"""The one encoder trainer: MuseCL's triplet training, reused by the baselines (Tile2Vec, Urban2Vec, PG-SimCLR).

    result = train_encoder(cache, train_triplets, val_triplets, TrainConfig(...), out_dir)

* Data: an `ImageCache` (decoded uint8 images) and tables of image ids per sample: columns anchor_image,
  positive_image[, negative_image] (what `musecl.pairs.build_triplets` writes), or integer cache rows in columns
  anchor, positive[, negative]. Each pair rule (MuseCL similarity, H3 neighbours, random) is just another table.
* Losses (`LossSpec`): `triplet` = mean(max(0, d(a,p) - d(a,n) + margin)) on Euclidean distances of raw embeddings
  (MuseCL, Urban2Vec; margin 5), plus `norm_penalty` * (|a| + |p| + |n|) (Tile2Vec: margin 10, 0.01); `ntxent` = SimCLR's
  NT-Xent over the batch (in-batch negatives, `temperature`), on a projection head when `ModelSpec.projection_dim` > 0.
* Optimiser as the authors': Adam(amsgrad) lr 5e-4, StepLR(10 epochs, 0.7); validation triplet accuracy
  (#[d(a,p) < d(a,n)] / #) each epoch; the best epoch's weights are kept (by val accuracy or val loss).
* Robust and reproducible: every epoch ends with an atomic checkpoint (`last.pt`), and a new call with the same inputs
  resumes from it; all randomness (initialisation, sample order, augmentation) derives from `config.seed` and the
  epoch number, so an interrupted-and-resumed run ends with the same weights as an uninterrupted one.
* Fast: images stay uint8 until they are on the device; on CUDA bf16 autocast, channels_last, pinned memory,
  non-blocking copies and, when the cache fits, the whole cache resident in GPU memory. Anchor, positive and negative
  go through the network as one batch.
* Multi-process: under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (NCCL on GPUs, gloo
  on CPU); each process takes every world_size-th batch. `python -m musecl.encoders.train --help`.

This module is the command-line entry and the trainer's public face; the code lives in its parts: `config` (LossSpec,
TrainConfig, TrainResult), `data` (tables -> cache rows, batch order, images on the device), `augment`, `losses`,
`devices` (device, AMP, DDP), `validation` (BatchNorm recalibration, eval embeddings), `checkpoints` (best.pt/last.pt,
byte-reproducible, no timings inside), `tracking` (DVCLive, progress bar) and `loop` (`train_encoder`). Only torch,
numpy and pandas are needed; tqdm and dvclive are used when installed.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from musecl.encoders.augment import augment
from musecl.encoders.checkpoints import BEST, CHECKPOINT_FORMAT, LAST, load_encoder
from musecl.encoders.config import LossSpec, TrainConfig, TrainResult
from musecl.encoders.data import ROLES, ImageSource, epoch_batches, sample_rows, to_input
from musecl.encoders.devices import autocast_context, resolve_device
from musecl.encoders.image_cache import ImageCache
from musecl.encoders.loop import train_batches, train_encoder
from musecl.encoders.losses import ntxent_loss, triplet_loss, validation_metrics
from musecl.encoders.validation import embed_rows, recalibrate_batchnorm, recalibrate_on_cache

__all__ = [
    "BEST",
    "CHECKPOINT_FORMAT",
    "LAST",
    "ROLES",
    "ImageSource",
    "LossSpec",
    "TrainConfig",
    "TrainResult",
    "augment",
    "autocast_context",
    "embed_rows",
    "epoch_batches",
    "load_encoder",
    "main",
    "ntxent_loss",
    "recalibrate_batchnorm",
    "recalibrate_on_cache",
    "resolve_device",
    "sample_rows",
    "to_input",
    "train_batches",
    "train_encoder",
    "triplet_loss",
    "validation_metrics",
]


# ---- command line (works under torchrun) -------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Train a visual encoder on pair/triplet tables of an image cache. "
        "Multi-GPU: torchrun --nproc_per_node=N -m musecl.encoders.train ...",
    )
    parser.add_argument("--cache", required=True, help="image cache folder (musecl.encoders.image_cache)")
    parser.add_argument("--train", required=True, help="training pairs/triplets (parquet)")
    parser.add_argument("--val", default=None, help="validation pairs/triplets (parquet)")
    parser.add_argument("--config", default=None, help="trainer settings as JSON (TrainConfig fields; nested model/loss)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override one setting, e.g. --set epochs=3 --set model.backbone='\"resnet18\"'")
    parser.add_argument("--out", required=True, help="checkpoint folder")
    args = parser.parse_args(argv)
    settings: dict[str, Any] = json.loads(Path(args.config).read_text()) if args.config else {}
    for item in args.set:
        key, _, value = item.partition("=")
        target = settings
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = json.loads(value)
    config = TrainConfig.from_dict(settings)
    cache = ImageCache.open(args.cache)
    train = pd.read_parquet(args.train)
    val = pd.read_parquet(args.val) if args.val else None
    result = train_encoder(cache, train, val, config, args.out)
    if int(os.environ.get("RANK", "0")) == 0:
        last = result.history.iloc[-1]
        print(json.dumps({"best_epoch": result.best_epoch, "best_metric": result.best_metric,
                          "final_val_accuracy": float(last["val_accuracy"]), "world_size": result.world_size,
                          "checkpoint": str(result.best_path)}))


if __name__ == "__main__":
    main()
