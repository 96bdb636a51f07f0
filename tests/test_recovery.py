"""Recovery from what a crash, a kill or a full disk leaves behind: corrupt checkpoints are named, set aside and
trained again from scratch (same bytes as a clean run), a finished model's corrupt file is a clear error, stale
temporary files are removed by the next write, a failed notebook is kept as `*.failed.ipynb`, and DVC stays offline."""
from __future__ import annotations

import configparser
import hashlib
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

from musecl.config import repo_root
from musecl.encoders import ModelSpec, TrainConfig, cache_from_arrays, load_encoder, train_encoder
from musecl.storage import (
    PROCESS_STARTED,
    CorruptFileError,
    atomic_dir,
    atomic_path,
    load_torch,
    save_torch,
    set_aside,
    write_json,
)

ROOT = repo_root()
N_REGIONS, PER_REGION, SIZE = 8, 2, 32


# ---- corrupt files -------------------------------------------------------------------------------------------------
def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _missing_record(path: Path) -> None:
    """The zip archive without its first tensor record (`archive/data/0`), everything else intact."""
    with zipfile.ZipFile(path) as z:
        records = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in records.items():
            if not name.endswith("/data/0"):
                z.writestr(name, data)


CORRUPTIONS = {"truncated": _truncated, "random bytes": _random_bytes, "missing record": _missing_record}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_load_torch_names_the_file_and_the_cause(tmp_path, kind):
    path = tmp_path / "last.pt"
    save_torch({"w": torch.arange(100.0), "epoch": 3}, path)
    assert load_torch(path)["epoch"] == 3
    CORRUPTIONS[kind](path)
    with pytest.raises(CorruptFileError, match=r"last\.pt is corrupt or unreadable \(\w+") as caught:
        load_torch(path)
    assert caught.value.path == path and "Re-running" not in str(caught.value)
    with pytest.raises(FileNotFoundError):
        load_torch(tmp_path / "absent.pt")


def test_set_aside_never_overwrites(tmp_path):
    path = tmp_path / "best.pt"
    for content in (b"one", b"two"):
        path.write_bytes(content)
        set_aside(path)
    assert not path.exists()
    assert (tmp_path / "best.pt.corrupt-1").read_bytes() == b"one"
    assert (tmp_path / "best.pt.corrupt-2").read_bytes() == b"two"


# ---- encoders: restart from scratch, same bytes --------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N_REGIONS * PER_REGION, SIZE, SIZE, 3), dtype=np.uint8)
    regions = [f"r{r}" for r in range(N_REGIONS) for _ in range(PER_REGION)]
    ids = [f"r{r}-{k}" for r in range(N_REGIONS) for k in range(PER_REGION)]
    cache = cache_from_arrays(images, ids, regions, tmp_path_factory.mktemp("toy") / "cache")

    def triplets(n: int, seed: int) -> pd.DataFrame:
        g = np.random.default_rng(seed)
        a, p, q = g.integers(0, len(ids), (3, n))
        return pd.DataFrame({"anchor_image": [ids[i] for i in a], "positive_image": [ids[i] for i in p],
                             "negative_image": [ids[i] for i in q]})

    config = TrainConfig(model=ModelSpec("resnet18", embedding_dim=8), epochs=2, batch_size=8, augment="none",
                         seed=3, progress=False, samples_per_epoch=16, val_samples=8)
    clean = tmp_path_factory.mktemp("clean")
    train_encoder(cache, triplets(32, 1), triplets(16, 2), config, clean)
    return cache, triplets(32, 1), triplets(16, 2), config, clean


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_checkpoints(folder: Path, clean: Path) -> None:
    for name in ("best.pt", "last.pt"):
        assert _sha(folder / name) == _sha(clean / name), name


def test_corrupt_last_pt_is_set_aside_and_training_restarts(toy, tmp_path, capsys):
    cache, train, val, config, clean = toy
    out = tmp_path / "ckpt"
    out.mkdir()
    for n, kind in ((1, "truncated"), (2, "random bytes")):  # the second goes to corrupt-2; the first stays as it was
        (out / "last.pt").write_bytes((clean / "last.pt").read_bytes())
        CORRUPTIONS[kind](out / "last.pt")
        corrupt = (out / "last.pt").read_bytes()
        result = train_encoder(cache, train, val, config, out)
        err = capsys.readouterr().err
        assert f"{out / 'last.pt'} is corrupt or unreadable (" in err
        assert f"renamed to last.pt.corrupt-{n}; training restarts from scratch" in err
        assert result.resumed_from_epoch == 0 and (out / f"last.pt.corrupt-{n}").read_bytes() == corrupt
        _same_checkpoints(out, clean)  # the restart writes exactly what a clean run writes
    assert (out / "last.pt.corrupt-1").read_bytes() != (out / "last.pt.corrupt-2").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "last.pt.corrupt-1", "last.pt.corrupt-2"]


@pytest.mark.parametrize("kind", ["missing record", "missing"])
def test_corrupt_or_missing_best_pt_beside_a_good_last_pt_restarts(toy, tmp_path, capsys, kind):
    from dataclasses import replace

    cache, train, val, config, clean = toy
    out = tmp_path / "ckpt"
    train_encoder(cache, train, val, replace(config, max_epochs_this_run=1), out)  # interrupted after epoch 1
    if kind == "missing":
        (out / "best.pt").unlink()
    else:
        CORRUPTIONS[kind](out / "best.pt")
    result = train_encoder(cache, train, val, config, out)
    err = capsys.readouterr().err
    assert str(out / "best.pt") in err and "training restarts from scratch" in err
    if kind != "missing":
        assert "renamed to best.pt.corrupt-1" in err and (out / "best.pt.corrupt-1").is_file()
    assert result.resumed_from_epoch == 0
    _same_checkpoints(out, clean)


def test_load_encoder_of_a_corrupt_best_pt_says_what_to_do(toy, tmp_path):
    *_, clean = toy
    path = tmp_path / "best.pt"
    path.write_bytes((clean / "best.pt").read_bytes())
    assert load_encoder(path).spec.embedding_dim == 8
    _truncated(path)
    with pytest.raises(CorruptFileError, match=r"best\.pt is corrupt or unreadable \(RuntimeError: .*\): delete it "
                                               r".* rerun the stage that trained it"):
        load_encoder(path)
    assert path.is_file()  # a finished model is not moved by a reader


# ---- image-text models ----------------------------------------------------------------------------------------------
def test_corrupt_imagetext_last_pt_restarts_with_the_same_model(tmp_path, capsys):
    from musecl.imagetext.config import ImageTextConfig
    from musecl.imagetext.models import model_state
    from musecl.imagetext.train import fit_urbanclip

    tiny = ImageTextConfig(width=16, layers=1, heads=2, text_width=16, text_layers=1, text_heads=2, decoder_layers=1,
                           embed_dim=8, caption_queries=3, context_length=24, epochs=2, pretrain_epochs=1,
                           batch_size=8, queue_size=16, ipsi_keep=4, ipsi_ratio=2, threads=1)
    rng = np.random.default_rng(0)
    tokens = torch.from_numpy(rng.normal(size=(20, 4, 12)).astype(np.float32))
    words = "road tree park river roof shop water field".split()
    sentences = [[" ".join(rng.choice(words, 5)) + "." for _ in range(2)] for _ in range(20)]
    val = np.arange(20) % 5 == 0
    clean, _ = fit_urbanclip(tokens, sentences, val, tiny, seed=1, checkpoint_dir=tmp_path / "clean")
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "last.pt").write_bytes((tmp_path / "clean" / "last.pt").read_bytes())
    _missing_record(out / "last.pt")
    again, history = fit_urbanclip(tokens, sentences, val, tiny, seed=1, checkpoint_dir=out)
    err = capsys.readouterr().err
    assert f"{out / 'last.pt'} is corrupt or unreadable (" in err
    assert "renamed to last.pt.corrupt-1; training restarts from scratch" in err
    assert list(history["epoch"]) == [0, 1, 2]
    save_torch(model_state(clean), tmp_path / "a.pt")
    save_torch(model_state(again), tmp_path / "b.pt")
    assert _sha(tmp_path / "a.pt") == _sha(tmp_path / "b.pt")
    assert _sha(out / "last.pt") == _sha(tmp_path / "clean" / "last.pt")


# ---- stale temporary files ------------------------------------------------------------------------------------------
def _stale(path: Path, seconds_before_start: float = 60.0) -> Path:
    """Make `path` look left by an earlier process (last modified before this one started)."""
    when = PROCESS_STARTED - seconds_before_start
    os.utime(path, (when, when))
    return path


def test_next_write_removes_stale_temporaries_only(tmp_path):
    target = tmp_path / "metrics.json"
    stale = tmp_path / ".metrics.json.k3j9x_2a.tmp.json"  # left by a killed write
    stale.write_text("{half")
    _stale(stale)
    fresh = tmp_path / ".metrics.json.a1b2c3d4.tmp.json"  # a write running now in another process
    fresh.write_text("{")
    others = [tmp_path / ".metrics.json.notes", tmp_path / ".other.json.k3j9x_2a.tmp.json",
              tmp_path / "metrics.json.k3j9x_2a.tmp.json"]
    for p in others:
        p.write_text("keep")
        _stale(p)
    write_json({"a": 1}, target)
    assert not stale.exists() and fresh.exists() and all(p.exists() for p in others)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    # papermill's executed-notebook temporary, and a bundle folder's partial copy
    notebook = tmp_path / "02_contrastive_pairs.ipynb"
    nb_tmp = tmp_path / ".02_contrastive_pairs.ipynb.zx81_qpo.tmp.ipynb"
    nb_tmp.write_text("{}")
    _stale(nb_tmp)
    with atomic_path(notebook) as tmp:
        tmp.write_text("{}")
    assert not nb_tmp.exists() and notebook.is_file()
    partial = tmp_path / ".city.abcdefgh.partial"
    (partial / "images").mkdir(parents=True)
    _stale(partial)
    with atomic_dir(tmp_path / "city") as folder:
        (folder / "regions.parquet").write_text("x")
    assert not partial.exists() and (tmp_path / "city" / "regions.parquet").is_file()


def test_a_save_killed_midway_leaves_nothing_after_the_next_save(tmp_path):
    """A process killed (SIGKILL) inside `save_torch` leaves its temporary file; the next process's save removes it."""
    target = tmp_path / "last.pt"
    killed = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from musecl.storage import atomic_path\n"
         f"with atomic_path({str(target)!r}) as tmp:\n"
         "    tmp.write_bytes(b'half a checkpoint'); print(tmp, flush=True); time.sleep(60)\n"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    left = Path(killed.stdout.readline().strip())
    killed.kill()
    killed.wait()
    assert left.is_file() and not target.exists()
    time.sleep(0.05)  # the next process starts after the kill
    done = subprocess.run([sys.executable, "-c", "import torch; from musecl.storage import save_torch\n"
                           f"save_torch({{'w': torch.zeros(3)}}, {str(target)!r})"], cwd=ROOT)
    assert done.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


# ---- a failed notebook is kept --------------------------------------------------------------------------------------
def _notebook(path: Path, body: str) -> Path:
    params = new_code_cell('params_file = "params.yaml"\noverrides = {}', metadata={"tags": ["parameters"]})
    nb = new_notebook(cells=[params, new_code_cell("print('first cell ran')"), new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_failed_notebook_is_kept_beside_the_output_and_removed_by_the_next_success(tmp_path, capsys):
    from musecl.notebooks import run_notebook

    output = tmp_path / "reports" / "stage.ipynb"
    failing = _notebook(tmp_path / "failing.ipynb", "raise ValueError('checks cell: every similarity is 1.0')")
    with pytest.raises(Exception, match="every similarity is 1.0"):
        run_notebook(failing, output=output, progress=False)
    failed = tmp_path / "reports" / "stage.failed.ipynb"
    assert not output.exists() and failed.is_file()
    assert f"is kept in {failed}" in capsys.readouterr().err
    nb = nbformat.read(failed, as_version=4)
    texts = [o.get("text", "") + o.get("evalue", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any("first cell ran" in t for t in texts) and any("every similarity is 1.0" in t for t in texts)
    assert nb.metadata.papermill.output_path.endswith("stage.failed.ipynb")
    assert sorted(p.name for p in output.parent.iterdir()) == ["stage.failed.ipynb"]  # no temporary left
    working = _notebook(tmp_path / "working.ipynb", "print('fine')")
    run_notebook(working, output=output, progress=False)
    assert output.is_file() and not failed.exists()


# ---- DVC stays offline ----------------------------------------------------------------------------------------------
def test_dvc_analytics_and_update_check_are_off():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    assert config.getboolean("core", "analytics") is False
    assert config.getboolean("core", "check_update") is False
    assert config.get("plots", "html_template") == "../reports/dvc_plots_template.html"
    from dvc.config import Config

    read = Config(dvc_dir=str(ROOT / ".dvc"), validate=True)
    assert read["core"]["analytics"] is False and read["core"]["check_update"] is False
    assert "DVC_NO_ANALYTICS=1" in (ROOT / "Makefile").read_text()
