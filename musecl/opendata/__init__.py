"""Build a city bundle from open-data files, for any city, from one city config (docs/real_cities.md).

    from musecl.opendata import build_bundle
    report = build_bundle("configs/my_city.yaml", "data/city", seed=0)
    print(report.summary())

Readers: boundary (polygon file or box), POIs from OpenStreetMap (`.osm.pbf`) and from tables, trips (coordinates or
zone ids), GPS trajectories (T-Drive layout), remote-sensing tiles (GeoTIFF or web-map tiles), street-view images,
and indicators (point events, rasters, polygons, or counts from the bundle itself). Each reports what it kept and
dropped. Heavy libraries (osmium, rasterio, geopandas) are imported by the readers that need them.
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
