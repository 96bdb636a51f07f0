"""Throughput of the frozen EfficientNet-Lite0 trunk on this machine: the layouts and batch sizes the CPU path could use.

The encoders' cached trunk (musecl/encoders/trunk.py), the ImageNet-feature baselines (musecl/encoders/embed.py) and the
image-text towers' tokens (musecl/imagetext/towers.py) all run a frozen ImageNet network over every cached image. This
script times that pass for the default sizes (64 px tiles and 96 px street views resized to 128 px) in the contiguous
NCHW layout and in channels_last, at several batch sizes, and prints images/s and the largest difference from the
contiguous batch-256 output. It chose `trunk.CPU_TRUNK_CHUNK`.

    python benchmarks/trunk_throughput.py [--images 512] [--stages 7] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=512, help="images per measurement")
    ap.add_argument("--stages", type=int, default=7, help="frozen stages (the encoders' default: 7 of 9)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from musecl.encoders.models import ModelSpec, build_encoder
    from musecl.encoders.trunk import channels_last_modules

    spec = ModelSpec("efficientnet_lite0", weights="imagenet", normalize="half", input_size=128,
                     frozen_stages=args.stages)
    model = build_encoder(spec, seed=0).eval()
    print(f"EfficientNet-Lite0, first {args.stages} stages at 128 px, {torch.get_num_threads()} torch threads, "
          f"{args.images} images per row")
    print(f"{'source px':>9} {'layout':>14} {'batch':>5} {'images/s':>9} {'max |diff|':>11}")
    for px in (64, 96):
        x = torch.rand(args.images, 3, px, px, generator=torch.Generator().manual_seed(0))
        reference = None
        for layout in ("contiguous", "channels_last"):
            xs = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
            modules = model.frozen_modules() if layout == "channels_last" else []
            for batch in (256, 64, 32, 16, 8):
                with torch.inference_mode(), channels_last_modules(modules):
                    model.trunk(xs[:batch])  # warm-up
                    start = time.perf_counter()
                    out = torch.cat([model.trunk(xs[i : i + batch]) for i in range(0, len(xs), batch)])
                    seconds = time.perf_counter() - start
                if reference is None:
                    reference = out
                diff = float((out - reference).abs().max())
                print(f"{px:>9} {layout:>14} {batch:>5} {len(xs) / seconds:>9.0f} {diff:>11.1e}", flush=True)


if __name__ == "__main__":
    main()
