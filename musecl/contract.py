"""The names every stage agrees on: the region key, the embedding columns and the image modalities.

This module imports nothing but the standard library, so every other module (including the GPU-side training code,
which must load with torch, numpy and pandas alone) can take its constants from here instead of repeating them.
"""
from __future__ import annotations

REGION_ID = "region_id"  # the key of every region table (bundle, embeddings, indicators)
EMBEDDING_PREFIX = "e"  # embedding tables have float32 columns e000, e001, ...

# The image modalities: key -> (bundle table, readable name). MuseCL's pairs, encoders, baselines and fusion use these.
MODALITIES: tuple[str, ...] = ("rs", "sv")
IMAGE_TABLES: dict[str, str] = {"rs": "remote_sensing", "sv": "street_view"}
MODALITY_NAMES: dict[str, str] = {"rs": "remote sensing", "sv": "street view"}


def check_modality(modality: str, where: str = "modality") -> str:
    """Return `modality` when it is one of :data:`MODALITIES`; otherwise raise a ValueError naming `where`."""
    if modality not in MODALITIES:
        raise ValueError(f"{where} must be one of {list(MODALITIES)}, got {modality!r}")
    return modality
