"""Reading a city bundle (see `docs/data_format.md`). Validation lives in :mod:`musecl.data.validate`."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from PIL import Image

from musecl.data import schema
from musecl.data.images import to_rgb8
from musecl.data.schema import REGION_ID


class BundleError(ValueError):
    """A city bundle is missing something or holds something other than the format expects."""


@dataclass(frozen=True)
class CityBundle:
    """A city bundle folder. Tables are read lazily; every reader names the file it read when something is wrong."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if not self.root.is_dir():
            raise BundleError(f"city bundle folder {self.root} does not exist")

    # ---- metadata ----------------------------------------------------------------------------------------------
    @cached_property
    def meta(self) -> dict[str, Any]:
        path = self.root / schema.CITY_FILE
        if not path.is_file():
            raise BundleError(f"{path}: missing (every bundle needs {schema.CITY_FILE} with name and h3_resolution)")
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise BundleError(f"{path}: not valid JSON ({err})") from err
        for key in ("name", "h3_resolution"):
            if key not in meta:
                raise BundleError(f"{path}: missing key '{key}'")
        return meta

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def h3_resolution(self) -> int:
        return int(self.meta["h3_resolution"])

    def path(self, file: str) -> Path:
        return self.root / file

    def has(self, table: str) -> bool:
        return self.path(schema.TABLES[table].file).is_file()

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this city has, in the order rs, sv, poi, mobility (`schema.MODALITIES`): a modality is
        present when one of its tables is (mobility: trips.parquet and/or trajectories.parquet)."""
        return tuple(m for m, tables in schema.MODALITIES.items() if any(self.has(t) for t in tables))

    def has_modality(self, modality: str) -> bool:
        if modality not in schema.MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; expected one of {list(schema.MODALITIES)}")
        return modality in self.modalities

    def missing_modalities(self) -> tuple[str, ...]:
        return tuple(m for m in schema.MODALITIES if m not in self.modalities)

    def require_modality(self, modality: str, needed_by: str = "") -> None:
        """Raise a BundleError naming the modality and its file(s) when the city lacks `modality`."""
        if not self.has_modality(modality):
            who = f" ({needed_by} needs it)" if needed_by else ""
            raise BundleError(f"{self.root}: the city has no {schema.MODALITY_NAMES[modality]} (modality "
                              f"'{modality}': {schema.modality_files(modality)} absent){who}; the city's modalities "
                              f"are {list(self.modalities)}")

    # ---- tables ------------------------------------------------------------------------------------------------
    def read(self, table: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Read one of the bundle's tables (`schema.TABLES` keys) as a DataFrame."""
        spec = schema.TABLES[table]
        path = self.path(spec.file)
        if not path.is_file():
            modality = next((m for m, tables in schema.MODALITIES.items() if table in tables), None)
            if modality is not None and modality != "mobility":
                self.require_modality(modality, needed_by=f"reading the {table} table")
            raise BundleError(f"{path}: missing ({table} table; columns {spec.required_columns})")
        try:
            return pd.read_parquet(path, columns=columns)
        except Exception as err:  # pyarrow raises many kinds
            raise BundleError(f"{path}: cannot read as parquet ({err})") from err

    def regions(self) -> gpd.GeoDataFrame:
        path = self.path(schema.REGIONS_FILE)
        if not path.is_file():
            raise BundleError(f"{path}: missing (regions table)")
        try:
            return gpd.read_parquet(path)
        except Exception as err:
            raise BundleError(f"{path}: cannot read as GeoParquet ({err})") from err

    def boundary(self) -> gpd.GeoDataFrame:
        path = self.path(schema.BOUNDARY_FILE)
        if not path.is_file():
            raise BundleError(f"{path}: missing (city boundary polygon)")
        try:
            return gpd.read_file(path)
        except Exception as err:
            raise BundleError(f"{path}: cannot read as GeoJSON ({err})") from err

    def pois(self) -> pd.DataFrame:
        return self.read("pois")

    def trips(self) -> pd.DataFrame | None:
        return self.read("trips") if self.has("trips") else None

    def trajectories(self) -> pd.DataFrame | None:
        return self.read("trajectories") if self.has("trajectories") else None

    def remote_sensing(self) -> pd.DataFrame:
        return self.read("remote_sensing")

    def street_view(self) -> pd.DataFrame:
        return self.read("street_view")

    def latents(self) -> pd.DataFrame | None:
        return self.read("latents").set_index(REGION_ID) if self.has("latents") else None

    def captions(self) -> pd.DataFrame | None:
        """The image captions (`captions.parquet`: image_id, modality, captioner, caption, ...), None without them."""
        return self.read("captions") if self.has("captions") else None

    def scene_facts(self) -> pd.DataFrame | None:
        """The true facts of every image of a synthetic city (`scene_facts.parquet`), None without them."""
        return self.read("scene_facts") if self.has("scene_facts") else None

    def indicators(self, transformed: bool = True) -> pd.DataFrame:
        """Indicators per region (index `region_id`), with city.json's transforms applied when `transformed`."""
        table = self.read("indicators").set_index(REGION_ID)
        if not transformed:
            return table
        return apply_transforms(table, self.indicator_transforms(), source=str(self.path(schema.INDICATORS_FILE)))

    def indicator_transforms(self) -> dict[str, str]:
        specs = self.meta.get("indicators", {})
        return {name: str(spec.get("transform", "identity")) for name, spec in specs.items()}

    def image(self, relative_path: str) -> np.ndarray:
        """An image of the bundle as an RGB uint8 array (H, W, 3); high-depth images scaled, not clipped (`to_rgb8`)."""
        path = self.root / relative_path
        try:
            with Image.open(path) as img:
                return np.asarray(to_rgb8(img))
        except FileNotFoundError as err:
            raise BundleError(f"{path}: image file missing") from err
        except Exception as err:
            raise BundleError(f"{path}: cannot decode image ({err})") from err


def apply_transforms(table: pd.DataFrame, transforms: dict[str, str], source: str = "indicators") -> pd.DataFrame:
    """Apply per-column transforms ('identity' or 'log1p', as the paper log-transforms its targets)."""
    out = table.astype(np.float64).copy()
    for column, transform in transforms.items():
        if column not in out.columns:
            continue
        if transform == "log1p":
            if (out[column] < 0).any():
                row = out.index[np.flatnonzero(out[column].to_numpy() < 0)[0]]
                raise BundleError(f"{source}: column '{column}' has negative value at region {row}; log1p needs >= 0")
            out[column] = np.log1p(out[column])
        elif transform != "identity":
            raise BundleError(f"{source}: unknown transform '{transform}' for '{column}' (expected {schema.TRANSFORMS})")
    return out
