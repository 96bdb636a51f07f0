"""H3 regions: point assignment agrees with point-in-polygon on the hexagons; the boundary rule keeps centre cells."""
from __future__ import annotations

import h3
import numpy as np
import pytest
import shapely

from musecl.data.regions import (
    assign_points_to_regions,
    cell_polygons,
    latlng_to_cells,
    regions_frame,
    regions_from_boundary,
)

# (lat, lon, resolution): Beijing at the paper's two hexagon sizes, New York, the southern hemisphere, far north.
PLACES = [(39.90, 116.40, 8), (31.23, 121.47, 7), (40.75, -73.98, 8), (-33.87, 151.21, 9), (64.14, -21.94, 8)]


def shapely_assignment(lon: np.ndarray, lat: np.ndarray, regions) -> np.ndarray:
    """The region whose hexagon (planar lon/lat polygon) contains each point, or None."""
    tree = shapely.STRtree(regions.geometry.to_numpy())
    point_idx, region_idx = tree.query(shapely.points(lon, lat), predicate="within")
    out = np.full(len(lon), None, dtype=object)
    out[point_idx] = regions["region_id"].to_numpy()[region_idx]
    return out


@pytest.mark.parametrize("lat0,lon0,res", PLACES)
def test_assignment_agrees_with_point_in_polygon(lat0, lon0, res):
    rng = np.random.default_rng(res * 1000 + int(abs(lat0)))
    regions = regions_frame(sorted(h3.grid_disk(h3.latlng_to_cell(lat0, lon0, res), 2)))
    minx, miny, maxx, maxy = shapely.total_bounds(regions.geometry.to_numpy())
    pad = 0.2 * (maxx - minx)
    # Random points over (and beyond) the 19 hexagons...
    lon = rng.uniform(minx - pad, maxx + pad, 4000)
    lat = rng.uniform(miny - pad, maxy + pad, 4000)
    # ...and points 1e-6 degrees (~0.1 m) either side of every hexagon edge. (Closer than ~1e-7 degrees the answers
    # may differ: H3 edges are great-circle arcs, the shapely hexagon's are straight lines in lon/lat.)
    near = []
    for ring in regions.geometry:
        xy = shapely.get_coordinates(ring)
        for a, b in zip(xy[:-1], xy[1:]):
            t = rng.uniform(0.02, 0.98, 12)[:, None]
            normal = np.array([a[1] - b[1], b[0] - a[0]]) / np.hypot(*(b - a))
            for side in (-1.0, 1.0):
                near.append(a + t * (b - a) + side * 1e-6 * normal)
    near = np.concatenate(near)
    lon, lat = np.concatenate([lon, near[:, 0]]), np.concatenate([lat, near[:, 1]])

    got = assign_points_to_regions(lon, lat, regions["region_id"], res)
    expected = shapely_assignment(lon, lat, regions)
    assert (got == expected).all(), f"{int((got != expected).sum())} of {len(lon)} points disagree"
    outside = np.array([e is None for e in expected])
    assert 500 < outside.sum() < len(lon) - 500  # both cases are exercised
    assert all(g is None for g in got[outside])


def test_assignment_to_a_subset_of_regions_gives_none_elsewhere():
    cells = sorted(h3.grid_disk(h3.latlng_to_cell(39.9, 116.4, 8), 1))
    centres = np.array([h3.cell_to_latlng(c) for c in cells])
    got = assign_points_to_regions(centres[:, 1], centres[:, 0], cells[:3], 8)
    assert list(got[:3]) == cells[:3] and all(g is None for g in got[3:])
    assert list(latlng_to_cells(centres[:, 0], centres[:, 1], 8)) == [h3.str_to_int(c) for c in cells]


@pytest.mark.parametrize("res", [7, 8])
def test_regions_from_boundary_keeps_exactly_the_cells_whose_centre_is_inside(res):
    # An irregular star-shaped boundary around Beijing.
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    radius = 0.06 * (1 + 0.35 * np.sin(5 * angles) + 0.1 * np.cos(3 * angles))
    boundary = shapely.Polygon(np.c_[116.4 + 1.3 * radius * np.cos(angles), 39.9 + radius * np.sin(angles)])
    regions = regions_from_boundary(boundary, res)

    candidates = sorted(h3.grid_disk(h3.latlng_to_cell(39.9, 116.4, res), 30 if res == 8 else 12))
    centres = np.array([h3.cell_to_latlng(c) for c in candidates])
    inside = shapely.contains_xy(boundary, centres[:, 1], centres[:, 0])
    assert set(regions["region_id"]) == set(np.array(candidates)[inside])
    assert 20 < len(regions) < len(candidates)
    # Some kept hexagons stick out of the boundary and some cut ones are dropped: the rule is the centre, not overlap.
    hexagons = regions.geometry.to_numpy()
    assert (~shapely.within(hexagons, boundary)).any()
    dropped = np.array(candidates)[~inside]
    assert shapely.intersects(cell_polygons(dropped), boundary).any()
    # The table: sorted ids, centre lon/lat, hexagon geometry, WGS84.
    assert list(regions["region_id"]) == sorted(regions["region_id"])
    assert regions.crs.to_epsg() == 4326
    assert np.allclose(shapely.get_x(shapely.centroid(hexagons)), regions["lon"], atol=1e-5)


@pytest.mark.parametrize(
    "lat,lon,row,what",
    [
        ([39.9, 39.9, 39.9, np.nan, 39.9], [116.4] * 5, 3, "lat=nan"),
        ([39.9, 39.9, 95.0, 39.9], [116.4] * 4, 2, "lat=95.0"),
        ([39.9, 39.9], [116.4, -181.0], 1, "lon=-181.0"),
        ([39.9, 39.9], [np.inf, 116.4], 0, "lon=inf"),
    ],
)
def test_bad_coordinates_raise_with_the_row(lat, lon, row, what):
    with pytest.raises(ValueError, match=rf"first at row {row}: .*{what}.*expected -90<=lat<=90"):
        assign_points_to_regions(np.array(lon), np.array(lat), [h3.latlng_to_cell(39.9, 116.4, 8)], 8)


def test_regions_from_boundary_needs_a_cell_centre():
    tiny = shapely.Point(116.4, 39.9).buffer(1e-4)
    with pytest.raises(ValueError, match="no H3 cell centre at resolution 7"):
        regions_from_boundary(tiny, 7)
