"""Atomic writes: every artifact is written under a temporary name and renamed into place when complete.

An interrupted run therefore never leaves a half-written file (or bundle folder) that looks complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; published files get the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to `path`; on success it replaces `path` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_parquet(df: pd.DataFrame, path: str | Path) -> None:
    """Write a (Geo)DataFrame to parquet atomically, without the pandas index."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_json(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_torch(obj: Any, path: str | Path) -> None:
    """`torch.save(obj)` to `path` atomically, with bytes that depend only on the values in `obj`.

    Why: `torch.save(obj, tmp_path)` names the zip archive's records after the file it writes (`.best.pt.x8f2k.tmp.pt/
    data.pkl`), and `atomic_path` picks a random temporary name, so two saves of the same object differed and DVC saw a
    new checkpoint after every retrain. Given an open file instead of a path, torch names the records `archive/...`
    (the zip entries carry no timestamps). Second, pickle's memo writes an object that occurs twice as a back-reference,
    so the bytes depended on object identity: a history whose rows were read back from a checkpoint (equal keys, but
    distinct string objects) pickled differently from the same history built in memory. The pickler here runs without
    memo (`fast` mode), writing every object by value; tensors sharing storage stay shared (torch stores each storage
    once, by key). Self-referencing containers are not supported, which no checkpoint has.
    """
    import pickle
    import types

    import torch  # lazy: the storage helpers are used by stages that do not need torch

    class ByValuePickler(pickle.Pickler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fast = True  # no memo: equal values give equal bytes, whichever objects hold them

    by_value = types.ModuleType("musecl_pickle_by_value")
    by_value.Pickler = ByValuePickler  # torch.save subclasses `pickle_module.Pickler`
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle, pickle_module=by_value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
