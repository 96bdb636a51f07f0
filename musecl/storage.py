"""Atomic writes: every artifact is written under a temporary name and renamed into place when complete.

An interrupted run therefore never leaves a half-written file (or bundle folder) that looks complete. A killed process
(SIGKILL, power loss) cannot remove its temporary file at the time, so the next write of the same path does: before
writing `X`, `atomic_path` removes `.X.XXXXXXXX.tmp<suffix>` files (and `atomic_dir` `.X.XXXXXXXX.partial` folders)
last modified before this process imported the module; temporaries of writes still running in other, newer processes
are left alone. Reading back: `load_torch` names the file and the cause when a torch file cannot be read
(`CorruptFileError`), and `set_aside` renames such a file to `NAME.corrupt-N` (never over an earlier one).
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


PROCESS_STARTED = time.time()  # temporaries last modified before this are left by an earlier (killed) process
TEMP_SUFFIX, PARTIAL_SUFFIX = ".tmp", ".partial"


class CorruptFileError(ValueError):
    """A file that exists but cannot be read back (truncated, overwritten, a record missing): names file and cause."""

    def __init__(self, path: str | Path, cause: str, advice: str = "") -> None:
        self.path, self.cause = Path(path), cause
        super().__init__(f"{path} is corrupt or unreadable ({cause})" + (f": {advice}" if advice else ""))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path, f"{TEMP_SUFFIX}{path.suffix}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{TEMP_SUFFIX}{path.suffix}", dir=path.parent)
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
    remove_stale_temporaries(path, PARTIAL_SUFFIX)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent))
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


def remove_stale_temporaries(path: str | Path, suffix: str) -> list[Path]:
    """Remove the temporaries of `path` that a killed write left: `.NAME.XXXXXXXX<suffix>` (tempfile's naming as used
    by `atomic_path`/`atomic_dir`, e.g. `.best.pt.k3j9x_2a.tmp.pt`; papermill's `.NAME.ipynb.XXXXXXXX.tmp.ipynb` is one)
    last modified before this process started (`PROCESS_STARTED`). Returns the removed paths."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}{re.escape(suffix)}")
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*{glob.escape(suffix)}"):
        try:
            if not pattern.fullmatch(candidate.name) or candidate.lstat().st_mtime >= PROCESS_STARTED:
                continue
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
        except FileNotFoundError:  # another process cleaned it first
            continue
        removed.append(candidate)
    return removed


def set_aside(path: str | Path, label: str = "corrupt") -> Path:
    """Rename `path` to `NAME.<label>-N` beside it, N the first number not taken (an earlier one is never
    overwritten); returns the new path."""
    path = Path(path)
    n = 1
    while (target := path.with_name(f"{path.name}.{label}-{n}")).exists() or target.is_symlink():
        n += 1
    os.rename(path, target)
    return target


def load_torch(path: str | Path, map_location: str = "cpu", weights_only: bool = True) -> Any:
    """`torch.load(path)`, raising `CorruptFileError` (naming the file and the cause) when the file exists but cannot
    be read: truncated, random bytes, a zip archive with a record missing. A missing file stays FileNotFoundError."""
    import torch  # lazy, as in save_torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for unreadable files
        cause = "empty file (0 bytes)" if path.stat().st_size == 0 else _load_failure(exc)
        raise CorruptFileError(path, cause) from exc


def _load_failure(exc: Exception) -> str:
    """The cause of a failed torch.load in one line: the exception type and its first sentence (for the weights-only
    unpickler, its actual complaint rather than the advice to load untrusted code)."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        text = f"not a torch file ({detail[0].strip() if detail else 'unpickling failed'})"
    else:
        text = re.split(r"(?<=[^.])\. |\n", text, maxsplit=1)[0].rstrip(".")
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


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
