"""Splits: sizes, partitions, seeded reproducibility, spatial grouping, and one set of folds for every method."""
from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest

from musecl.data.regions import parent_cells
from musecl.evaluation.splits import Folds, SplitSpec, holdout_split, kfold_splits, make_folds, spatial_kfold_splits

RES = 8


@pytest.fixture(scope="module")
def region_ids() -> np.ndarray:
    centre = h3.latlng_to_cell(39.9, 116.4, RES)
    return np.array(sorted(h3.grid_disk(centre, 9)), dtype=object)  # 271 hexagons


SPECS = [
    SplitSpec("paper", "holdout", repeats=2),
    SplitSpec("kfold", "kfold", repeats=3, k=5),
    SplitSpec("spatial", "spatial", repeats=2, k=4, parent_resolution=RES - 1),
]


def _check_partition(train, val, test, n):
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert len(train) + len(val) + len(test) == n
    assert set(train) | set(val) | set(test) == set(range(n))


def test_holdout_is_the_papers_60_20_20():
    rng = np.random.default_rng(0)
    train, val, test = holdout_split(299, rng)
    # sklearn: test = ceil(0.2 * 299) = 60, then val = ceil(0.25 * 239) = 60
    assert (len(train), len(val), len(test)) == (179, 60, 60)
    _check_partition(train, val, test, 299)


def test_kfold_tests_every_region_once_per_repeat():
    folds = kfold_splits(103, 5, np.random.default_rng(1), val_fraction=0.25)
    tested = np.concatenate([t for _, _, t in folds])
    assert sorted(tested) == list(range(103))
    for train, val, test in folds:
        _check_partition(train, val, test, 103)
        assert len(val) == int(np.ceil(0.25 * (103 - len(test))))


def test_spatial_folds_keep_parent_cells_together(region_ids):
    groups = parent_cells(region_ids, RES - 1)
    folds = spatial_kfold_splits(groups, 4, np.random.default_rng(2))
    tested = np.concatenate([t for _, _, t in folds])
    assert sorted(tested) == list(range(len(region_ids)))
    for train, val, test in folds:
        _check_partition(train, val, test, len(region_ids))
        role = pd.Series("train", index=range(len(region_ids)))
        role[val], role[test] = "val", "test"
        # every parent cell lies wholly in one role
        assert (pd.DataFrame({"g": groups, "r": role}).groupby("g")["r"].nunique() == 1).all()
    sizes = [len(t) for _, _, t in folds]
    assert max(sizes) - min(sizes) <= 7  # balanced to within one parent cell (<= 7 children)


def test_spatial_needs_enough_parent_cells(region_ids):
    few = region_ids[:10]
    with pytest.raises(ValueError, match="parent cells"):
        spatial_kfold_splits(parent_cells(few, RES - 3), 5, np.random.default_rng(0))


def test_folds_are_seeded_and_order_independent(region_ids):
    a = make_folds(region_ids, SPECS, seed=11, region_resolution=RES)
    b = make_folds(region_ids[::-1].copy(), SPECS, seed=11, region_resolution=RES)
    c = make_folds(region_ids, SPECS, seed=12, region_resolution=RES)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert len(a) == 2 + 3 * 5 + 2 * 4
    # a protocol's folds do not depend on which other protocols are configured
    alone = make_folds(region_ids, [SPECS[1]], seed=11, region_resolution=RES)
    for f, g in zip(alone, a.protocol("kfold")):
        assert np.array_equal(f.test, g.test) and np.array_equal(f.val, g.val)
    # repeats differ from each other
    k = a.protocol("kfold")
    assert not np.array_equal(k[0].test, k[5].test)


def test_folds_roundtrip_through_parquet(region_ids, tmp_path):
    folds = make_folds(region_ids, SPECS, seed=5, region_resolution=RES)
    folds.save(tmp_path / "folds.parquet")
    again = Folds.load(tmp_path / "folds.parquet")
    assert again.fingerprint() == folds.fingerprint()
    table = folds.to_frame()
    assert set(table["role"]) == {"train", "val", "test"}
    assert len(table) == len(folds) * len(region_ids)


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="evaluation.protocols.x.split"):
        SplitSpec("x", "loo")
    with pytest.raises(ValueError, match="missing key 'split'"):
        SplitSpec.from_config("y", {"k": 3})
    with pytest.raises(ValueError, match="coarser"):
        make_folds(["8831aa5a5bfffff"], [SplitSpec("s", "spatial", parent_resolution=9)], 0, region_resolution=8)
