"""Training throughput of the image-text models (musecl.imagetext) on synthetic inputs of the default city's size:
random trunk tokens (N images x T tokens x C channels) and random captions of realistic length (a ~20-token first
sentence, a ~120-token long caption, 4 sentences per image for UrbanCLIP).

    python benchmarks/imagetext_throughput.py                 # cpu preset: the runs the pipeline makes, timed
    python benchmarks/imagetext_throughput.py --preset paper --rs 512 --sv 512 --epochs 1   # paper sizes (GPU)

Prints one row per run (images, epochs, seconds, training samples/s, seconds per step) and the total. The runs are
those of the pipeline on one city: UrbanCLIP on the RS tiles; UrbanLN on street views (phase a, then phase b with IPSI
+ MSD, without IPSI, without MSD: the ablations share phase a) and on RS tiles (the same four). Token computation
(`image_tokens`, the frozen trunk) is not included: it runs once per modality.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

try:
    import musecl  # noqa: F401
except ImportError:  # a plain checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from musecl.imagetext.config import ImageTextConfig
from musecl.imagetext.train import fit_urbanclip, fit_urbanln, pretrain_urbanln

WORDS = ("building buildings road roads street tree trees park river water car cars vehicle bus tall low mid-rise red "
         "roof roofs green grey white brown many few several dense sparse residential commercial industrial shop "
         "shops house houses apartment tower field farmland bridge railway track parking lot sidewalk pedestrians "
         "block blocks intersection lane lanes canopy plaza square school hospital warehouse factory yard fence "
         "wall facade windows balcony awning sign traffic light pole near along beside behind between with and of "
         "the a an on in at large small wide narrow modern old lined busy quiet open paved").split()


def sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, n)).capitalize() + "."


def captions(n: int, seed: int) -> tuple[list[list[str]], list[str], list[str]]:
    """Per image: 4 sentences of ~18-22 words (UrbanCLIP), the first one (short) and 6 joined (~120 words, long)."""
    rng = np.random.default_rng(seed)
    sents = [[sentence(rng, int(rng.integers(16, 23))) for _ in range(6)] for _ in range(n)]
    return [s[:4] for s in sents], [s[0] for s in sents], [" ".join(s) for s in sents]


def timed(label: str, n_images: int, epochs: int, batch: int, fn, rows: list) -> object:
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    n_train = n_images - n_images // 10
    steps = max(1, n_train // min(batch, n_train)) * max(epochs, 1)
    rows.append((label, n_images, epochs, seconds, n_train * epochs / seconds if epochs else math.nan,
                 seconds / steps if epochs else math.nan))
    print("| {} | {} | {} | {:.1f} | {:.3g} | {:.3g} |".format(*rows[-1]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu", choices=["cpu", "paper"])
    parser.add_argument("--rs", type=int, default=300, help="remote-sensing images (default city: ~300)")
    parser.add_argument("--sv", type=int, default=2400, help="street-view images (default city: ~2,400)")
    parser.add_argument("--tokens", type=int, default=16, help="T: trunk tokens per image (4x4 at 128 px)")
    parser.add_argument("--channels", type=int, default=1280, help="C: trunk channels (1280 head conv, 320 before)")
    parser.add_argument("--epochs", type=int, default=None, help="override every phase's epochs")
    parser.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads during the fits (default: the "
                        "preset's `threads`, cpu: 1)")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows: list[tuple] = []
    print("| run | images | epochs | seconds | train samples/s | s/step |")
    print("|---|---:|---:|---:|---:|---:|", flush=True)
    over = {} if args.epochs is None else {"epochs": args.epochs, "pretrain_epochs": args.epochs}
    if args.threads is not None:
        over["threads"] = args.threads
    if args.batch_size is not None:
        over["batch_size"] = args.batch_size
    clip_cfg = ImageTextConfig.preset(args.preset, "urbanclip", {**over, "device": args.device})
    ln_cfg = ImageTextConfig.preset(args.preset, "urbanln", {**over, "device": args.device})
    for modality, n in (("rs", args.rs), ("sv", args.sv)):
        if n < 20:
            continue
        tokens = torch.randn(n, args.tokens, args.channels).abs()
        sents, short, long_ = captions(n, seed=n)
        val = np.zeros(n, dtype=bool)
        val[::10] = True
        if modality == "rs":
            timed(f"UrbanCLIP {modality}", n, clip_cfg.epochs, clip_cfg.batch_size,
                  lambda: fit_urbanclip(tokens, sents, val, clip_cfg, seed=0), rows)
        queue = min(ln_cfg.queue_size, (int((~val).sum()) - 1) // ln_cfg.batch_size * ln_cfg.batch_size)
        cfg = replace(ln_cfg, queue_size=max(0, queue))
        base, _ = timed(f"UrbanLN {modality} (a) short", n, cfg.pretrain_epochs, cfg.batch_size,
                        lambda: pretrain_urbanln(tokens, short, long_, val, cfg, seed=0), rows)
        for label, variant in (("(b) IPSI + MSD", cfg), ("(b) without IPSI", replace(cfg, stretch=False)),
                               ("(b) without MSD", replace(cfg, distill=False))):
            timed(f"UrbanLN {modality} {label}", n, variant.epochs, variant.batch_size,
                  lambda v=variant: fit_urbanln(tokens, short, long_, val, v, seed=0, pretrained=base), rows)
    threads = ln_cfg.threads or torch.get_num_threads()
    print(f"| total | | | {sum(r[3] for r in rows):.1f} | | |")
    print(f"preset {args.preset}, T={args.tokens}, C={args.channels}, batch {ln_cfg.batch_size}, torch threads {threads}")


if __name__ == "__main__":
    main()
