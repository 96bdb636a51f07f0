"""The training entry point under torchrun: 2 processes, gloo backend, CPU; same result shape as one process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import torch

from musecl.config import repo_root
from musecl.encoders import ImageCache, cache_from_arrays, embed_images, load_encoder


def toy_data(tmp_path):
    rng = np.random.default_rng(0)
    n = 24
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    ids = [f"i{i}" for i in range(n)]
    cache_from_arrays(images, ids, [f"r{i // 2}" for i in range(n)], tmp_path / "cache")
    for name, count, seed in (("train", 32, 1), ("val", 16, 2)):
        rows = np.random.default_rng(seed).integers(0, n, size=(count, 3))
        pd.DataFrame({f"{r}_image": [ids[i] for i in rows[:, k]] for k, r in enumerate(("anchor", "positive", "negative"))}
                     ).to_parquet(tmp_path / f"{name}.parquet")


def launch(prefix: list[str], tmp_path, out: str) -> dict:
    cmd = [*prefix, "-m", "musecl.encoders.train", "--cache", str(tmp_path / "cache"),
           "--train", str(tmp_path / "train.parquet"), "--val", str(tmp_path / "val.parquet"), "--out", str(tmp_path / out),
           "--set", 'model={"backbone": "resnet18", "embedding_dim": 16}', "--set", "epochs=2", "--set", "batch_size=8",
           "--set", 'device="cpu"', "--set", "progress=false", "--set", f"seed={5}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=repo_root(), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_torchrun_two_processes_gloo(tmp_path):
    toy_data(tmp_path)
    single = launch([sys.executable], tmp_path, "single")
    ddp = launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"], tmp_path, "ddp")
    assert single["world_size"] == 1 and ddp["world_size"] == 2
    cache = ImageCache.open(tmp_path / "cache")
    a = embed_images(load_encoder(tmp_path / "single" / "best.pt"), cache, device="cpu")
    b = embed_images(load_encoder(tmp_path / "ddp" / "best.pt"), cache, device="cpu")
    assert a.shape == b.shape == (len(cache), 16)
    state = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert [row["epoch"] for row in state["history"]] == [0, 1, 2]
    assert 0.0 <= ddp["final_val_accuracy"] <= 1.0
