"""City bundles: the on-disk format, reading, region assignment and validation."""
from musecl.data.bundle import BundleError, CityBundle
from musecl.data.regions import assign_points_to_regions, latlng_to_cells, regions_from_boundary
from musecl.data.schema import REGION_ID, WGS84_CRS

__all__ = [
    "BundleError",
    "CityBundle",
    "REGION_ID",
    "WGS84_CRS",
    "assign_points_to_regions",
    "latlng_to_cells",
    "regions_from_boundary",
]
