"""POIs from an OpenStreetMap extract (`.osm.pbf`, e.g. a Geofabrik or BBBike download), read with pyosmium.

Nodes, closed ways and multipolygon relations carrying one of the taxonomy's keys (amenity, shop, ...) become POIs:
nodes at their location, areas at their centroid, open ways (and closed ways cut by the extract's edge) at the mean of
their node locations. The category comes from the editable table `osm_poi_taxonomy.csv`; the name and the descriptive
tags are kept as the POI's text. Filtering by key happens inside libosmium, so Python only sees candidate POIs.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from musecl.opendata.config import OsmPoisConfig
from musecl.opendata.points import RegionAssigner, valid_coordinates
from musecl.opendata.report import OUTSIDE, BuildError, ReaderReport

IGNORE = "ignore"
NOT_A_POI = "not a POI (taxonomy: ignore)"
UNMAPPED = "no taxonomy match"
NO_GEOMETRY = "no geometry"
# Tag keys that say nothing about what a place is; left out of the POI text. 'prefix:*' drops a whole namespace.
DEFAULT_TEXT_EXCLUDE = (
    "addr:*", "contact:*", "phone", "fax", "email", "website", "url", "opening_hours", "source", "source:*", "ref",
    "ref:*", "wikidata", "wikipedia", "*:wikidata", "*:wikipedia", "check_date", "check_date:*", "fixme", "FIXME",
    "note", "image", "mapillary", "survey:date", "created_by", "building:*", "roof:*", "height", "level", "layer",
    "start_date", "payment:*", "opening_hours:*", "not:*", "name:*", "alt_name:*", "old_name", "int_name",
    "official_name:*", "short_name:*", "operator:*", "brand:*", "network:*", "description:*", "level:ref",
)


@dataclass(frozen=True)
class OsmTaxonomy:
    """The OSM-tag-to-category table: exact (key, value) rows, per-key '*' rows, and the key priority order."""

    keys: tuple[str, ...]
    exact: dict[tuple[str, str], tuple[str, str]]
    wildcard: dict[str, tuple[str, str]]

    @classmethod
    def from_csv(cls, path: str | Path) -> "OsmTaxonomy":
        path = Path(path)
        try:
            table = pd.read_csv(path, comment="#", dtype="str", keep_default_na=False, skipinitialspace=True)
        except Exception as err:
            raise BuildError(f"{path}: cannot read the OSM POI taxonomy as CSV ({err})") from err
        expected = ["key", "value", "level1", "level2"]
        if list(table.columns) != expected:
            raise BuildError(f"{path}: expected the columns {expected}, got {list(table.columns)}")
        exact: dict[tuple[str, str], tuple[str, str]] = {}
        wildcard: dict[str, tuple[str, str]] = {}
        for row_no, row in enumerate(table.itertuples(index=False), start=2):
            key, value, l1, l2 = (str(v).strip() for v in row)
            if not key or not value or not l1 or not l2:
                raise BuildError(f"{path}: data row {row_no - 1} ({','.join(row)}) has an empty field")
            if ";" in l1 or ";" in l2:
                raise BuildError(f"{path}: data row {row_no - 1}: levels may not contain ';' (the level separator)")
            target = wildcard if value == "*" else exact
            slot = key if value == "*" else (key, value)
            if slot in target:
                raise BuildError(f"{path}: {key}={value} appears twice")
            target[slot] = (l1, l2)
        keys = tuple(dict.fromkeys(table["key"].str.strip()))
        if not keys:
            raise BuildError(f"{path}: the taxonomy has no rows")
        return cls(keys, exact, wildcard)

    def categorise(self, tags: dict[str, str]) -> tuple[str | None, str]:
        """('level1;level2', '') for a POI; (None, reason) otherwise, reason being 'ignore' or 'unmapped:key=value'."""
        ignored = unmapped = None
        for key in self.keys:
            value = tags.get(key)
            if value is None:
                continue
            # Multi-valued tags ('nightclub;restaurant'): the first value with a row decides.
            values = [v.strip() for v in value.split(";")] if ";" in value else [value]
            value = next((v for v in values if (key, v) in self.exact), values[0])
            level = self.exact.get((key, value)) or self.wildcard.get(key)
            if level is None:
                unmapped = unmapped or f"{key}={value}"
                continue
            if level[0] == IGNORE:
                ignored = True
                continue
            l2 = level[1].replace("{value}", _clean_level(value))
            return f"{level[0]};{l2}", ""
        if ignored:
            return None, IGNORE
        return None, f"unmapped:{unmapped}"


def _clean_level(value: str) -> str:
    return value.strip().replace(";", ",").replace(" ", "_").lower() or "unknown"


def _text_excluded(key: str, patterns: tuple[str, ...]) -> bool:
    for p in patterns:
        if p == key or (p.endswith(":*") and key.startswith(p[:-1])) or (p.startswith("*:") and key.endswith(p[1:])):
            return True
    return False


def poi_text(tags: dict[str, str], exclude: tuple[str, ...]) -> str:
    """The POI's tags as 'key=value; ...' (name first), leaving out contact/address/bookkeeping tags."""
    parts = [f"name={tags['name']}"] if tags.get("name") else []
    parts += [f"{k}={v}" for k, v in sorted(tags.items()) if k != "name" and not _text_excluded(k, exclude)]
    return "; ".join(p.replace(";", ",") for p in parts)


def read_osm_pois(
    config: OsmPoisConfig, assigner: RegionAssigner, progress: bool = True
) -> tuple[pd.DataFrame, ReaderReport]:
    """POIs of the extract inside the city's regions: poi_id ('n123', 'w45', 'r6'), lon, lat, category, name, text."""
    import osmium
    import shapely
    from tqdm import tqdm

    taxonomy = OsmTaxonomy.from_csv(config.taxonomy)
    exclude = DEFAULT_TEXT_EXCLUDE + tuple(config.text_exclude)
    report = ReaderReport("pois (OpenStreetMap)", str(config.file))
    candidates: dict[str, tuple[float, float, dict[str, str]]] = {}
    wkb = osmium.geom.WKBFactory()
    key_filter = osmium.filter.KeyFilter(*taxonomy.keys)
    try:
        processor = (osmium.FileProcessor(str(config.file)).with_locations(config.location_index)
                     .with_areas(osmium.filter.KeyFilter(*taxonomy.keys)).with_filter(key_filter))
        for obj in tqdm(processor, desc="OSM objects", unit=" objects", disable=not progress):
            kind = obj.type_str()
            if kind == "n":
                loc = obj.location
                point = (loc.lon, loc.lat) if loc.valid() else (np.nan, np.nan)
                candidates[f"n{obj.id}"] = (*point, dict(obj.tags))
            elif kind == "w":
                # Fallback position for open ways and for closed ways the area builder cannot close (cut by the
                # extract's edge); a successfully built area replaces it below.
                locs = [(n.lon, n.lat) for n in obj.nodes if n.location.valid()]
                point = tuple(np.mean(locs, axis=0)) if locs else (np.nan, np.nan)
                candidates[f"w{obj.id}"] = (*point, dict(obj.tags))
            elif kind == "a":
                poi_id = f"{'w' if obj.from_way() else 'r'}{obj.orig_id()}"
                try:
                    centre = shapely.centroid(shapely.from_wkb(wkb.create_multipolygon(obj)))
                    candidates[poi_id] = (centre.x, centre.y, dict(obj.tags))
                except Exception:  # an area osmium could not assemble (broken multipolygon): keep any fallback
                    candidates.setdefault(poi_id, (np.nan, np.nan, dict(obj.tags)))
            # plain relations ('r') matter only once assembled into areas
    except RuntimeError as err:
        raise BuildError(f"{config.file}: cannot read as an OSM file ({err})") from err
    report.read = len(candidates)
    ids = list(candidates)
    lon = np.array([candidates[i][0] for i in ids], dtype=np.float64)
    lat = np.array([candidates[i][1] for i in ids], dtype=np.float64)
    tags = [candidates[i][2] for i in ids]
    categories, reasons = zip(*(taxonomy.categorise(t) for t in tags)) if ids else ((), ())
    category = np.array(categories, dtype=object)
    is_poi = np.array([c is not None for c in categories], dtype=bool)
    report.drop(NOT_A_POI, sum(r == IGNORE for r in reasons))
    unmapped = Counter(r.split(":", 1)[1] for r in reasons if r.startswith("unmapped:"))
    if config.unmapped == "other":
        for i in np.flatnonzero(~is_poi):
            if reasons[i].startswith("unmapped:"):
                category[i] = "other;" + _clean_level(reasons[i].split(":", 1)[1].replace("=", "_"))
                is_poi[i] = True
    else:
        report.drop(UNMAPPED, sum(unmapped.values()))
    if unmapped:
        top = ", ".join(f"{tag} ({n})" for tag, n in unmapped.most_common(10))
        verb = "kept as 'other'" if config.unmapped == "other" else "dropped"
        report.note(f"most frequent tags without a taxonomy row ({verb}): {top}")
    valid = valid_coordinates(lon, lat)
    report.drop(NO_GEOMETRY, int((is_poi & ~valid).sum()))
    region = assigner.assign_valid(lon, lat, is_poi & valid)
    keep = region >= 0
    report.drop(OUTSIDE, int((is_poi & valid & ~keep).sum()))
    report.kept = int(keep.sum())
    report.check_outside_share()
    idx = np.flatnonzero(keep)
    frame = pd.DataFrame({
        "poi_id": np.array(ids, dtype=object)[idx],
        "lon": lon[idx],
        "lat": lat[idx],
        "category": category[idx],
        "name": [tags[i].get("name", "") for i in idx],
        "text": [poi_text(tags[i], exclude) for i in idx],
    })
    return frame, report

