"""Region embedding tables: the one format every representation (encoders, text, fusion, baselines) is exchanged in.

A table is a parquet file with a string column `region_id` and float32 columns `e000, e001, ...`; in memory it is a
DataFrame indexed by `region_id`. Region order is the table's own; consumers align on the index.

A representation that cannot be computed for a city (its input modality is missing, e.g. POI text in a city without
POIs) is written as a *skipped* table: the same file, no rows and no embedding columns, with the reason in the parquet
metadata (:func:`write_skipped`). Pipelines and DVC find the output they expect; :func:`skipped_reason` tells readers
(the evaluation's "not run: reason" cells) why it is empty, and :func:`read_embeddings` refuses it with that reason.
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


SKIPPED_KEY = b"musecl.skipped"  # parquet key-value metadata of a skipped table: the reason (UTF-8)


class SkippedRepresentation(RuntimeError):
    """An embedding table that its stage skipped; `reason` says why (e.g. 'the city has no POIs')."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: not run: {reason}")
        self.path, self.reason = path, reason


def write_skipped(path: str | Path, reason: str) -> None:
    """Write the skipped-table marker for a representation that was not run, with the reason a table will show."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from musecl.storage import atomic_path

    if not reason.strip():
        raise ValueError("a skipped representation needs a reason")
    schema = pa.schema([pa.field(REGION_ID, pa.string())], metadata={SKIPPED_KEY: reason.encode()})
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist([], schema=schema), tmp)


def skipped_reason(path: str | Path) -> str | None:
    """The reason a table was skipped (:func:`write_skipped`), or None when it is a real table (or absent)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        return None
    meta = pq.read_schema(path).metadata or {}
    return meta[SKIPPED_KEY].decode() if SKIPPED_KEY in meta else None


def read_embeddings(path: str | Path) -> pd.DataFrame:
    """Read an embedding table; errors name the file and what is wrong (a skipped one: SkippedRepresentation)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embedding table {path} not found (run the stage that produces it: `dvc repro`)")
    reason = skipped_reason(path)
    if reason is not None:
        raise SkippedRepresentation(path, reason)
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
