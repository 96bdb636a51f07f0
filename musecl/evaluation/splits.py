"""Train / validation / test splits, generated once per city and seed and shared by every representation.

Three kinds of split (`SplitSpec.kind`):

* ``holdout``: the paper's protocol. `mlp_pytorch.py` calls `train_test_split(test_size=0.2)` and then
  `train_test_split(test_size=0.25)` on the rest: 60 % train, 20 % validation (early stopping), 20 % test. `repeats`
  draws that many independent splits (the paper used one).
* ``kfold``: repeated K-fold. Each region is tested exactly once per repeat; `val_fraction` of the remaining regions is
  held out for the MLP's early stopping (ridge regression fits on train + validation and tunes itself by inner CV).
* ``spatial``: K-fold over H3 parent cells, so every region's parent cell (and with it its close neighbours) lies wholly
  in train, validation or test; neighbouring hexagons share most of their imagery context and would otherwise leak.

Every split is drawn from `numpy.random.default_rng(SeedSequence([seed, crc32(protocol), repeat]))`, so it depends
only on the seed, the protocol's name and settings and the region list, never on which methods are evaluated.
"""
from __future__ import annotations

import hashlib
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID
from musecl.storage import write_parquet

SPLIT_KINDS = ("holdout", "kfold", "spatial")
ROLES = ("train", "val", "test")
FOLD_COLUMNS = ["protocol", "repeat", "fold", REGION_ID, "role"]


def stable_key(*parts: Any) -> int:
    """A 32-bit integer from strings/ints that is the same in every process (Python's hash() is salted)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode())


def protocol_rng(seed: int, protocol: str, repeat: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), stable_key(protocol), int(repeat)]))


@dataclass(frozen=True)
class SplitSpec:
    """How one protocol splits the regions (see the module docstring)."""

    name: str
    kind: str
    repeats: int = 1
    k: int = 5
    test_fraction: float = 0.2
    val_fraction: float = 0.25
    parent_resolution: int | None = None  # spatial: H3 resolution of the groups; None = one coarser than the regions

    KEYS = ("split", "repeats", "k", "test_fraction", "val_fraction", "parent_resolution")

    def __post_init__(self) -> None:
        where = f"evaluation.protocols.{self.name}"
        if self.kind not in SPLIT_KINDS:
            raise ValueError(f"{where}.split: expected one of {SPLIT_KINDS}, got {self.kind!r}")
        if self.repeats < 1:
            raise ValueError(f"{where}.repeats: expected >= 1, got {self.repeats}")
        if self.kind != "holdout" and self.k < 2:
            raise ValueError(f"{where}.k: expected >= 2 folds, got {self.k}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"{where}.test_fraction: expected in (0, 1), got {self.test_fraction}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"{where}.val_fraction: expected in (0, 1), got {self.val_fraction}")

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any]) -> "SplitSpec":
        """Build from a params.yaml protocol entry; keys other than the split's own are ignored here."""
        if "split" not in cfg:
            raise ValueError(f"evaluation.protocols.{name}: missing key 'split' (one of {SPLIT_KINDS})")
        kwargs = {key: cfg[key] for key in cls.KEYS[1:] if key in cfg and cfg[key] is not None}
        return cls(name=name, kind=str(cfg["split"]), **kwargs)


@dataclass(frozen=True)
class Fold:
    """One train/validation/test partition; indices are positions into `Folds.region_ids`."""

    protocol: str
    repeat: int
    fold: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def fit(self) -> np.ndarray:
        """Train and validation together: what a regressor without early stopping (ridge) fits on."""
        return np.sort(np.concatenate([self.train, self.val]))


@dataclass
class Folds:
    """Every fold of every protocol over one region list, in a fixed order."""

    region_ids: np.ndarray
    folds: list[Fold] = field(default_factory=list)

    def __iter__(self) -> Iterator[Fold]:
        return iter(self.folds)

    def __len__(self) -> int:
        return len(self.folds)

    def protocol(self, name: str) -> list[Fold]:
        out = [f for f in self.folds if f.protocol == name]
        if not out:
            raise KeyError(f"no folds for protocol '{name}' (have {sorted({f.protocol for f in self.folds})})")
        return out

    @property
    def protocols(self) -> list[str]:
        return list(dict.fromkeys(f.protocol for f in self.folds))

    def to_frame(self) -> pd.DataFrame:
        """Long table: protocol, repeat, fold, region_id, role (one row per region and fold)."""
        parts = []
        for f in self.folds:
            for role in ROLES:
                idx = getattr(f, role)
                parts.append(
                    pd.DataFrame(
                        {
                            "protocol": f.protocol,
                            "repeat": np.int32(f.repeat),
                            "fold": np.int32(f.fold),
                            REGION_ID: self.region_ids[idx],
                            "role": role,
                        }
                    )
                )
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=FOLD_COLUMNS)
        return table.astype({"protocol": str, REGION_ID: str, "role": str})

    @classmethod
    def from_frame(cls, table: pd.DataFrame, source: str = "folds table") -> "Folds":
        missing = [c for c in FOLD_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(f"{source}: missing columns {missing} (expected {FOLD_COLUMNS})")
        bad_roles = sorted(set(table["role"].astype(str)) - set(ROLES))
        if bad_roles:
            raise ValueError(f"{source}: column 'role' has unknown values {bad_roles} (expected {ROLES})")
        region_ids = np.array(sorted(table[REGION_ID].astype(str).unique()), dtype=object)
        position = pd.Series(np.arange(region_ids.size), index=region_ids)
        folds = []
        keys = table[["protocol", "repeat", "fold"]].drop_duplicates()
        for protocol, repeat, fold in keys.itertuples(index=False):
            part = table[(table["protocol"] == protocol) & (table["repeat"] == repeat) & (table["fold"] == fold)]
            idx = {role: np.sort(position[part.loc[part["role"] == role, REGION_ID].astype(str)].to_numpy())
                   for role in ROLES}
            folds.append(Fold(str(protocol), int(repeat), int(fold), idx["train"], idx["val"], idx["test"]))
        return cls(region_ids, folds)

    def fingerprint(self) -> str:
        """A short hash of every assignment: equal fingerprints mean identical folds."""
        digest = hashlib.sha256()
        digest.update("\n".join(map(str, self.region_ids)).encode())
        for f in self.folds:
            digest.update(f"{f.protocol}|{f.repeat}|{f.fold}".encode())
            for role in ROLES:
                digest.update(np.ascontiguousarray(getattr(f, role), dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        write_parquet(self.to_frame(), path)

    @classmethod
    def load(cls, path: str | Path) -> "Folds":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"folds table {path} not found (written by notebook 06_evaluation)")
        return cls.from_frame(pd.read_parquet(path), source=str(path))


# ---- the three split kinds -----------------------------------------------------------------------------------------
def holdout_split(
    n: int, rng: np.random.Generator, test_fraction: float = 0.2, val_fraction: float = 0.25
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's split: `test_fraction` of all regions for test, then `val_fraction` of the rest for validation.

    Sizes are rounded up like sklearn's `train_test_split` (test = ceil(0.2 n), val = ceil(0.25 (n - test))).
    """
    n_test = math.ceil(test_fraction * n)
    n_val = math.ceil(val_fraction * (n - n_test))
    if n - n_test - n_val < 1:
        raise ValueError(f"holdout split of {n} regions leaves no training region")
    order = rng.permutation(n)
    test, rest = order[:n_test], order[n_test:]
    val, train = rest[:n_val], rest[n_val:]
    return np.sort(train), np.sort(val), np.sort(test)


def kfold_splits(
    n: int, k: int, rng: np.random.Generator, val_fraction: float = 0.25
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One repeat of K-fold: K (train, val, test) triples whose test parts partition range(n)."""
    if n < k:
        raise ValueError(f"{k}-fold cross-validation needs at least {k} regions, got {n}")
    parts = np.array_split(rng.permutation(n), k)
    out = []
    for i in range(k):
        test = parts[i]
        rest = rng.permutation(np.concatenate([parts[j] for j in range(k) if j != i]))
        n_val = max(1, math.ceil(val_fraction * rest.size))
        out.append((np.sort(rest[n_val:]), np.sort(rest[:n_val]), np.sort(test)))
    return out


def spatial_kfold_splits(
    groups: np.ndarray, k: int, rng: np.random.Generator, val_fraction: float = 0.25
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """K-fold over groups (H3 parent cells): all regions of a group fall in the same part of every fold.

    Groups are visited in random order and each goes to the fold that holds the fewest regions so far, which keeps
    the folds balanced to within one group. Validation is likewise a random set of whole groups from the rest.
    """
    groups = np.asarray(groups)
    uniq, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if uniq.size < k:
        raise ValueError(
            f"spatial {k}-fold needs at least {k} parent cells, the regions fall in {uniq.size}; "
            "use a finer evaluation parent_resolution (closer to the regions' own resolution) or fewer folds"
        )
    fold_of_group = np.empty(uniq.size, dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for g in rng.permutation(uniq.size):
        smallest = np.flatnonzero(load == load.min())
        target = smallest[rng.integers(smallest.size)]
        fold_of_group[g] = target
        load[target] += sizes[g]
    fold_of_region = fold_of_group[inverse]
    out = []
    for i in range(k):
        test = np.flatnonzero(fold_of_region == i)
        rest_groups = rng.permutation(np.flatnonzero(fold_of_group != i))
        cumulative = np.cumsum(sizes[rest_groups])
        target = val_fraction * cumulative[-1]
        n_val_groups = int(np.argmin(np.abs(cumulative - target))) + 1
        n_val_groups = min(max(n_val_groups, 1), rest_groups.size - 1)
        is_val_group = np.zeros(uniq.size, dtype=bool)
        is_val_group[rest_groups[:n_val_groups]] = True
        val = np.flatnonzero(is_val_group[inverse] & (fold_of_region != i))
        train = np.flatnonzero(~is_val_group[inverse] & (fold_of_region != i))
        out.append((train, val, test))
    return out


def make_folds(
    region_ids: np.ndarray | list[str] | pd.Index,
    specs: list[SplitSpec],
    seed: int,
    region_resolution: int | None = None,
) -> Folds:
    """Every fold of every protocol for `region_ids` (sorted first, so the input order does not matter)."""
    ids = np.array(sorted(map(str, region_ids)), dtype=object)
    if len(set(ids)) != ids.size:
        raise ValueError("region ids passed to make_folds are not unique")
    folds: list[Fold] = []
    for spec in specs:
        groups = None
        if spec.kind == "spatial":
            from musecl.data.regions import parent_cells  # h3 only when a spatial protocol is asked for

            parent = spec.parent_resolution
            if parent is None:
                if region_resolution is None:
                    raise ValueError(f"protocol '{spec.name}': parent_resolution is null and the region resolution is unknown")
                parent = region_resolution - 1
            if region_resolution is not None and parent >= region_resolution:
                raise ValueError(
                    f"protocol '{spec.name}': parent_resolution {parent} must be coarser than the regions' "
                    f"resolution {region_resolution}"
                )
            groups = parent_cells(ids, parent)
        for repeat in range(spec.repeats):
            rng = protocol_rng(seed, spec.name, repeat)
            if spec.kind == "holdout":
                triples = [holdout_split(ids.size, rng, spec.test_fraction, spec.val_fraction)]
            elif spec.kind == "kfold":
                triples = kfold_splits(ids.size, spec.k, rng, spec.val_fraction)
            else:
                triples = spatial_kfold_splits(groups, spec.k, rng, spec.val_fraction)
            for i, (train, val, test) in enumerate(triples):
                folds.append(Fold(spec.name, repeat, i, train, val, test))
    return Folds(ids, folds)
