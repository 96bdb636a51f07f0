"""Build a city bundle from open-data files, for any city, from one city config (docs/real_cities.md).

    from musecl.opendata import build_bundle
    report = build_bundle("configs/my_city.yaml", "data/city", seed=0)
    print(report.summary())

Readers: boundary (polygon file or box), POIs from OpenStreetMap (`.osm.pbf`) and from tables, trips (coordinates or
zone ids), GPS trajectories (T-Drive layout), remote-sensing tiles (GeoTIFF, web-map tiles, or a table of pre-cut
tiles per region), street-view images, and indicators (point events, values at another grid's points, rasters,
polygons, or counts from the bundle itself). Every point or geometry reader takes a `crs` (any pyproj CRS, GCJ-02,
BD-09; :mod:`musecl.opendata.crs`). Each reports what it kept and dropped. Heavy libraries (osmium, rasterio, geopandas) are imported by the readers that need them.
"""
from musecl.opendata.build import build_bundle
from musecl.opendata.config import CityConfig, ConfigError, city_config_from_dict, load_city_config
from musecl.opendata.example import example_inputs
from musecl.opendata.report import BuildError, BuildReport, ReaderReport

__all__ = [
    "BuildError",
    "BuildReport",
    "CityConfig",
    "ConfigError",
    "ReaderReport",
    "build_bundle",
    "city_config_from_dict",
    "example_inputs",
    "load_city_config",
]
