"""Training throughput of the visual encoders (images/second), with data loading excluded and included.

    python benchmarks/train_throughput.py --backbone both --image-size 64 --batch 32            # CPU default city
    python benchmarks/train_throughput.py --backbone resnet18 --image-size 256 --batch 256      # GPU, paper size
    python benchmarks/train_throughput.py --backbone inception_v3 --image-size 299 --batch 128
    python benchmarks/train_throughput.py --backbone efficientnet_lite0 --weights imagenet --image-size 64 \
        --input-size 128 --frozen-stages 7 --n-images 512        # CPU default: full fine-tuning vs the frozen trunk

One training step = one batch of `--batch` triplets = 3 x batch images through forward, triplet loss, backward and an
Adam step, exactly as in musecl.encoders.train. "excluded": a fixed float batch already on the device. "included":
the trainer's own data path from a uint8 image cache on disk (memory map; resident on the device when it fits, else a
DataLoader with pinned memory), conversion, augmentation. FLOPs per image are counted with torch's FlopCounterMode,
so the achieved TFLOP/s can be compared with the device's peak.

Needs only torch, torchvision, numpy, pandas, pyarrow and Pillow.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

try:
    import musecl  # noqa: F401
except ImportError:  # run from a plain checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musecl.encoders.image_cache import cache_from_arrays
from musecl.encoders.models import ModelSpec, build_encoder
from musecl.encoders.config import TrainConfig
from musecl.encoders.data import ImageSource, epoch_batches
from musecl.encoders.devices import autocast_context, resolve_device
from musecl.encoders.losses import triplet_loss
from musecl.encoders.loop import train_batches


def flops_per_image(model: torch.nn.Module, size: int, device: torch.device, channels_last: bool) -> float:
    """Forward + backward FLOPs of one image (counted on a batch of 2, in fp32)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(2, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_excluded(model, optimizer, config, device, channels_last, batch, size, steps, warmup) -> float:
    x = torch.rand(3 * batch, 3, size, size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        with autocast_context(device, config.precision):
            z = model(x).float()
        loss, _ = triplet_loss(z[:batch], z[batch : 2 * batch], z[2 * batch :], 5.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return 3 * batch * steps / (time.perf_counter() - t0)


def bench_included(model, optimizer, config, device, channels_last, batch, size, steps, warmup, n_images, tmp) -> tuple[float, bool]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_images, size, size, 3), dtype=np.uint8)
    ids = [f"i{i}" for i in range(n_images)]
    cache = cache_from_arrays(images, ids, ids, Path(tmp) / "cache")
    del images
    rows = rng.integers(0, n_images, size=((warmup + steps) * batch, 3))
    source = ImageSource(cache, device, config)
    batches = epoch_batches(len(rows), config, 1)
    generator = torch.Generator().manual_seed(0)
    model.train()
    train_batches(model, source, rows, batches[:warmup], config, device, channels_last, optimizer, generator)
    _sync(device)
    t0 = time.perf_counter()
    train_batches(model, source, rows, batches[warmup : warmup + steps], config, device, channels_last, optimizer, generator)
    _sync(device)
    return 3 * batch * steps / (time.perf_counter() - t0), source.resident


def bench_trunk(spec: ModelSpec, config: TrainConfig, device: torch.device, args, tmp) -> dict:
    """The cheap path: build the frozen trunk of every image and augmentation variant once (images/s through the
    trunk), then train the top on it (images/s of a training step, the trunk lookups included)."""
    from musecl.encoders.trunk import TrunkFeatures

    rng = np.random.default_rng(0)
    n = args.n_images
    images = rng.integers(0, 256, size=(n, args.image_size, args.image_size, 3), dtype=np.uint8)
    ids = [f"i{i}" for i in range(n)]
    cache = cache_from_arrays(images, ids, ids, Path(tmp) / "cache")
    model = build_encoder(spec, seed=0).to(device)
    config = replace(config, model=spec, augment=args.augment)
    t0 = time.perf_counter()
    features = TrunkFeatures(model, ImageSource(cache, device, config), np.arange(n), args.augment, 256, device,
                             config.precision)
    _sync(device)
    build = n * len(features.variants) / (time.perf_counter() - t0)
    rows = rng.integers(0, n, size=((args.warmup + args.steps) * args.batch, 3))
    batches = epoch_batches(len(rows), config, 1)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-4, amsgrad=True)
    generator = torch.Generator().manual_seed(0)
    model.train()
    train_batches(model, features, rows, batches[: args.warmup], config, device, False, optimizer, generator)
    _sync(device)
    t0 = time.perf_counter()
    train_batches(model, features, rows, batches[args.warmup : args.warmup + args.steps], config, device, False,
                  optimizer, generator)
    _sync(device)
    step = 3 * args.batch * args.steps / (time.perf_counter() - t0)
    return {"frozen_stages": spec.frozen_stages, "trunk_images_per_s": round(build, 1),
            "trunk_variants": len(features.variants), "trunk_MB": round(features.nbytes / 2**20, 1),
            "top_train_images_per_s": round(step, 1)}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="both", choices=["resnet18", "inception_v3", "efficientnet_lite0", "both"])
    parser.add_argument("--weights", default="none", choices=["none", "imagenet"])
    parser.add_argument("--input-size", type=int, default=None, help="the encoder resizes its input to this short side")
    parser.add_argument("--frozen-stages", type=int, default=0,
                        help="> 0: also time the cached frozen-trunk path (trunk build, then training on the trunk)")
    parser.add_argument("--augment", default="rot90", help="augmentation of the trunk path (its variants are cached)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32, help="triplets per step (3x images)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--channels-last", default="auto", choices=["auto", "yes", "no"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers when the cache is streamed")
    parser.add_argument("--data-on-device", default="auto", choices=["auto", "yes", "no"])
    parser.add_argument("--n-images", type=int, default=2048, help="images in the synthetic cache (included mode)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    backbones = ["resnet18", "inception_v3"] if args.backbone == "both" else [args.backbone]
    results = []
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}")
    for backbone in backbones:
        spec = ModelSpec(backbone, weights=args.weights, input_size=args.input_size,
                         normalize="half" if backbone.startswith("efficientnet") else "none")
        config = TrainConfig(model=spec, batch_size=args.batch, precision=args.precision, channels_last=args.channels_last,
                             compile=args.compile, num_workers=args.workers, data_on_device=args.data_on_device,
                             device=args.device, progress=False)
        channels_last = config.channels_last == "yes" or (config.channels_last == "auto" and device.type == "cuda")
        model = build_encoder(spec, seed=0)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        model = model.to(device)
        flops = flops_per_image(model, args.image_size, device, channels_last)
        step_model = torch.compile(model) if args.compile else model
        optimizer = torch.optim.Adam(model.parameters(), lr=5e-4, amsgrad=True)
        excluded = bench_excluded(step_model, optimizer, config, device, channels_last, args.batch, args.image_size,
                                  args.steps, args.warmup)
        with tempfile.TemporaryDirectory() as tmp:
            included, resident = bench_included(step_model, optimizer, config, device, channels_last, args.batch,
                                                args.image_size, args.steps, args.warmup, args.n_images, tmp)
        trunk = {}
        if args.frozen_stages:
            with tempfile.TemporaryDirectory() as tmp:
                trunk = bench_trunk(replace(spec, frozen_stages=args.frozen_stages), config, device, args, tmp)
        row = {
            **trunk,
            "backbone": backbone, "image_size": args.image_size, "batch_triplets": args.batch,
            "images_per_step": 3 * args.batch, "device": name,
            "precision": "bf16" if (args.precision == "bf16" or (args.precision == "auto" and device.type == "cuda")) else "fp32",
            "channels_last": channels_last, "compile": args.compile,
            "gflop_per_image_fwd_bwd": round(flops / 1e9, 3),
            "images_per_s_data_excluded": round(excluded, 1),
            "images_per_s_data_included": round(included, 1),
            "data_path": "resident" if resident else f"dataloader({args.workers} workers)",
            "achieved_tflops_excluded": round(excluded * flops / 1e12, 2),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
        del model, step_model, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


if __name__ == "__main__":
    main()
