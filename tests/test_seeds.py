"""The `seeds` stage's parallel runner: seeds trained side by side in worker processes write what one process writes."""
from __future__ import annotations

import os
import shutil
import types
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT


def test_seeds_in_worker_processes_write_the_tables_of_the_sequential_run(tiny_pipeline, tmp_path):
    from musecl.config import deep_merge, load_params
    from musecl.data import CityBundle
    from musecl.embeddings import read_embeddings
    from musecl.stages import seeds

    tiny_pipeline.run("05c_training_seeds")  # seed 1, trained in the notebook's own process (one extra seed)
    sequential = load_params(ROOT / "params.yaml", tiny_pipeline.overrides)
    assert seeds.settings(sequential)["extra"] == 1
    names = ["rs", "sv", "poi_text"]
    one = seeds.seed_dir(sequential, 1)
    expected = {name: read_embeddings(one / "embeddings" / f"{name}.parquet") for name in names}
    # The workers run in the same work folder, so they load the trunks stage 03 kept on disk as the notebook did (a
    # copied folder would compute them again, with other threads and other last bits); seed 1's folder is put back
    # afterwards and seed 2's removed, so the shared tiny pipeline is left as it was.
    parallel = load_params(ROOT / "params.yaml", deep_merge(tiny_pipeline.overrides, {
        "training_seeds": {"extra": 2, "steps": ["encoders", "poi_text"], "n_jobs": 2}}))
    shutil.copytree(one, tmp_path / "s1")
    try:
        runs = seeds.run_all(parallel, CityBundle(parallel["paths"]["bundle"]), progress=False)
        assert sorted(set(runs["seed"])) == [1, 2]
        scratch = Path(parallel["paths"]["work"]) / seeds.SCRATCH_DIR
        assert not scratch.exists(), "the workers' scratch checkpoints are deleted"
        for name in names:
            got = read_embeddings(seeds.seed_dir(parallel, 1) / "embeddings" / f"{name}.parquet")
            pd.testing.assert_frame_equal(got, expected[name], check_exact=True, obj=f"seed 1 {name}")
            other = read_embeddings(seeds.seed_dir(parallel, 2) / "embeddings" / f"{name}.parquet")
            assert not other.equals(got), f"seed 2 trained {name} with its own seed"
    finally:
        shutil.rmtree(seeds.seed_dir(parallel, 2), ignore_errors=True)
        shutil.rmtree(one)
        shutil.copytree(tmp_path / "s1", one)


@pytest.mark.parametrize("bad", [{"n_jobs": 0}, {"threads_per_job": 0}, {"workers": 2}])
def test_seeds_settings_are_checked(bad):
    from musecl.stages import seeds

    with pytest.raises(ValueError, match="training_seeds"):
        seeds.settings({"training_seeds": {"extra": 2, **bad}})


def test_a_run_ending_after_another_process_removed_dvclives_signal_file_still_ends(tmp_path, monkeypatch):
    """DVCLive's end() checks that .dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED exists, then removes it; a second seed
    worker can remove it in between (it failed CI once). close_live ends the run all the same; other errors still raise."""
    import dvclive.vscode

    from musecl.encoders.tracking import close_live, open_live

    monkeypatch.chdir(tmp_path)  # no repository around the run: DVC_ROOT alone makes DVCLive write its signal file
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 2.0}]
    signal = tmp_path / ".dvc" / "tmp" / "exps" / "run" / "DVCLIVE_STEP_COMPLETED"

    def raced_live():
        live = open_live(str(tmp_path / "live"), history)
        assert signal.exists()  # written by next_step inside a DVC repository
        signal.unlink()  # ... and removed by the other worker's end() after this one checked that it exists
        return live

    # DVCLive's module sees a file system where the signal file still "exists" when it checks (the race's timing)
    checked = types.SimpleNamespace(**{name: getattr(os, name) for name in ("getenv", "getpid", "makedirs", "fsync",
                                                                             "remove")},
                                    path=types.SimpleNamespace(join=os.path.join, exists=lambda path: str(path).endswith(
                                        "DVCLIVE_STEP_COMPLETED") or os.path.exists(path)))
    first, second = raced_live(), raced_live()
    monkeypatch.setattr(dvclive.vscode, "os", checked)
    with pytest.raises(FileNotFoundError):
        first.end()  # the race as DVCLive meets it
    close_live(second)
    assert (tmp_path / "live" / "metrics.json").exists()

    class Broken:
        def end(self):
            raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "live" / "metrics.json"))

    with pytest.raises(FileNotFoundError):
        close_live(Broken())
    close_live(None)
