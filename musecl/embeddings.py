"""Region embedding tables: the one format every representation (encoders, text, fusion, baselines) is exchanged in.

A table is a parquet file with a string column `region_id` and float32 columns `e000, e001, ...`; in memory it is a
DataFrame indexed by `region_id`. Region order is the table's own; consumers align on the index.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from musecl.contract import EMBEDDING_PREFIX as PREFIX
from musecl.contract import REGION_ID
from musecl.storage import write_parquet


def embedding_columns(dim: int) -> list[str]:
    return [f"{PREFIX}{i:03d}" for i in range(dim)]


def to_frame(region_ids: list[str] | np.ndarray | pd.Index, vectors: np.ndarray) -> pd.DataFrame:
    """Wrap an (n_regions, dim) array as an embedding table indexed by region id."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(region_ids):
        raise ValueError(f"expected vectors of shape ({len(region_ids)}, dim), got {vectors.shape}")
    index = pd.Index(np.asarray(region_ids, dtype=object), name=REGION_ID)
    if index.has_duplicates:
        raise ValueError(f"duplicate region ids in embedding table: {index[index.duplicated()][:5].tolist()}")
    return pd.DataFrame(vectors, index=index, columns=embedding_columns(vectors.shape[1]))


def write_embeddings(table: pd.DataFrame, path: str | Path) -> None:
    """Write an embedding table (indexed by region id) atomically."""
    if table.index.name != REGION_ID:
        raise ValueError(f"embedding table must be indexed by '{REGION_ID}', got index '{table.index.name}'")
    expected = embedding_columns(table.shape[1])
    if list(table.columns) != expected:
        raise ValueError(f"embedding columns must be {expected[:3]}..., got {list(table.columns)[:3]}...")
    out = table.astype(np.float32).reset_index()
    out[REGION_ID] = out[REGION_ID].astype(str)
    write_parquet(out, path)


def read_embeddings(path: str | Path) -> pd.DataFrame:
    """Read an embedding table; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embedding table {path} not found (run the stage that produces it: `dvc repro`)")
    table = pd.read_parquet(path)
    if REGION_ID not in table.columns:
        raise ValueError(f"{path}: missing column '{REGION_ID}'")
    table = table.set_index(REGION_ID)
    table.index = table.index.astype(object)
    if list(table.columns) != embedding_columns(table.shape[1]):
        raise ValueError(f"{path}: expected columns {PREFIX}000..{PREFIX}{table.shape[1] - 1:03d}")
    if not np.isfinite(table.to_numpy()).all():
        raise ValueError(f"{path}: embedding table contains NaN or infinite values")
    return table.astype(np.float32)
