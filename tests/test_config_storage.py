"""params loading, deep merge, and atomic writes."""
from pathlib import Path

import pandas as pd
import pytest

from musecl.config import deep_merge, load_params, section
from musecl.storage import atomic_dir, atomic_path, write_parquet


def test_deep_merge_merges_nested_and_replaces_leaves():
    base = {"a": {"b": 1, "c": {"d": 2}}, "e": [1, 2]}
    merged = deep_merge(base, {"a": {"c": {"d": 3}}, "e": [9]})
    assert merged == {"a": {"b": 1, "c": {"d": 3}}, "e": [9]}
    assert base["a"]["c"]["d"] == 2  # the input is not modified


def test_load_params_resolves_paths_and_applies_overrides(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text("seed: 1\npaths:\n  bundle: data/city\ndata:\n  source: synthetic\n")
    params = load_params(params_file, {"data": {"source": "folder"}})
    assert params["data"]["source"] == "folder"
    assert Path(params["paths"]["bundle"]) == (tmp_path / "data/city").resolve()


def test_load_params_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        load_params(bad)
    with pytest.raises(KeyError, match="no section 'pairs'"):
        section({"data": {}}, "pairs")


def test_repository_params_file_has_the_stage_sections():
    params = load_params()
    assert {"seed", "paths", "data"} <= set(params)


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_whole_folder_only_on_success(tmp_path):
    target = tmp_path / "bundle"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "b.txt").write_text("second, interrupted")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_write_parquet_round_trip(tmp_path):
    df = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    write_parquet(df, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), df, check_dtype=False)


def test_atomic_outputs_get_normal_permissions(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("y")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
