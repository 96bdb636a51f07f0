"""No quiet losses (issue 13, item 4): bundles broken the way real data breaks, built from the tiny synthetic city.

Each test corrupts a copy of the tiny city (seed 7) one way and checks the message a user sees: emptied tables with
``--drop``, high-depth images, symbolic links (outside the bundle, loops), a broken city.json that must not produce
errors in other files, upper-case H3 ids, and the command line on a closed pipe.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from musecl.data import schema
from musecl.data.images import conversion_note, decode_rgb8, to_rgb8
from musecl.data.validate import import_bundle, main, validate_bundle
from musecl.encoders.image_cache import ImageCache, build_image_cache

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def city(tiny_bundle, tmp_path) -> Path:
    """A fresh copy of the tiny synthetic city to break."""
    return Path(shutil.copytree(tiny_bundle.root, tmp_path / "city"))


def run(root: Path, drop: bool = False):
    return validate_bundle(root, bad_rows="drop" if drop else "error", progress=False, raise_on_error=False)


def one(messages: list[str], *fragments: str) -> str:
    """The one message holding every fragment (the test fails listing all messages otherwise)."""
    hits = [m for m in messages if all(f in m for f in fragments)]
    assert len(hits) == 1, f"expected one message with {fragments}, got:\n" + "\n".join(messages)
    return hits[0]


# 1. --drop never empties a table ------------------------------------------------------------------------------------

def test_drop_refuses_to_empty_trips_that_all_lie_outside_the_city(city):
    trips = pd.read_parquet(city / schema.TRIPS_FILE)
    trips[["origin_lon", "dest_lon"]] += 2.0  # every trip ~170 km east of the city
    trips.to_parquet(city / schema.TRIPS_FILE, index=False)
    report = run(city, drop=True)
    assert not report.ok
    message = one(report.errors, f"{schema.TRIPS_FILE}: --drop would drop all {len(trips)} rows")
    assert "outside the city" in message and "km from the city's centre" in message
    assert "another datum or coordinate system" in message
    assert main([str(city), "--drop", "--no-images"]) == 1


def test_drop_refuses_to_empty_pois_in_projected_metres(city):
    pois = pd.read_parquet(city / schema.POIS_FILE)
    metres = gpd.GeoSeries(gpd.points_from_xy(pois["lon"], pois["lat"]), crs="EPSG:4326").to_crs("EPSG:3857")
    pois["lon"], pois["lat"] = metres.x.to_numpy(), metres.y.to_numpy()
    pois.to_parquet(city / schema.POIS_FILE, index=False)
    report = run(city, drop=True)
    message = one(report.errors, f"{schema.POIS_FILE}: --drop would drop all {len(pois)} rows")
    assert f"({len(pois)} out-of-range coordinates)" in message and "leaving the city without POIs" in message
    assert "are they in projected metres rather than WGS84 lon/lat?" in message


def test_drop_warns_when_most_rows_of_a_table_go(city):
    trips = pd.read_parquet(city / schema.TRIPS_FILE)
    far = np.arange(len(trips)) % 4 != 0  # three trips in four leave the city
    trips.loc[far, "origin_lon"] += 2.0
    trips.to_parquet(city / schema.TRIPS_FILE, index=False)
    report = run(city, drop=True)
    assert report.ok, report.summary()
    one(report.warnings, f"{schema.TRIPS_FILE}: --drop drops {int(far.sum())} of {len(trips)} rows (75%")


# 2. high-depth images are scaled, not clipped -----------------------------------------------------------------------

def gradient16() -> np.ndarray:
    """A 16x16 16-bit gradient: value k * 257 (the 16-bit version of the 8-bit value k) at the k-th pixel."""
    return (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)


def png_rgb16(values: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), from an (H, W, 3) uint16 array."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    h, w, _ = values.shape
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_16bit_grey_png_decodes_to_the_expected_8bit_values(tmp_path):
    Image.fromarray(gradient16()).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I")  # Pillow reads it as a 16-bit integer image
        assert conversion_note(img) == "16-bit grey (mode I;16) scaled to 8 bits (value >> 8)"
    rgb = decode_rgb8(tmp_path / "g16.png")
    expected = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    np.testing.assert_array_equal(rgb[..., 2], expected)
    (tmp_path / "rgb16.png").write_bytes(png_rgb16(np.stack([gradient16()] * 3, axis=-1)))
    np.testing.assert_array_equal(decode_rgb8(tmp_path / "rgb16.png")[..., 1], expected)


def test_other_modes_convert_to_8bit_rgb():
    expected = np.arange(256, dtype=np.uint8).reshape(16, 16)
    as_int = Image.fromarray(gradient16().astype(np.int32), mode="I")
    np.testing.assert_array_equal(np.asarray(to_rgb8(as_int))[..., 0], expected)
    as_float = Image.fromarray(expected.astype(np.float32) / 255, mode="F")
    np.testing.assert_array_equal(np.asarray(to_rgb8(as_float))[..., 1], expected)
    with pytest.raises(ValueError, match=r"mode F.*expected values in \[0, 1\]"):
        to_rgb8(Image.fromarray(expected.astype(np.float32), mode="F"))
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert conversion_note(rgba) == "transparency (RGBA) dropped, colours kept"
    assert np.asarray(to_rgb8(rgba))[0, 0].tolist() == [10, 20, 30]
    palette = Image.new("RGB", (4, 4), (200, 100, 50)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert conversion_note(palette) is None and np.asarray(to_rgb8(palette))[0, 0].tolist() == [200, 100, 50]


def test_image_cache_scales_16bit_images(tmp_path):
    Image.fromarray(gradient16()).save(tmp_path / "g16.png")
    table = pd.DataFrame({"image_id": ["a"], "region_id": ["r0"], "path": ["g16.png"]})
    cache = build_image_cache(table, tmp_path, tmp_path / "cache", image_size=16, progress=False, workers=1)
    cache = ImageCache.open(tmp_path / "cache")
    np.testing.assert_array_equal(np.asarray(cache.images[0, ..., 0]), np.arange(256, dtype=np.uint8).reshape(16, 16))


def test_validator_reports_converted_and_unusable_high_depth_images(city):
    rs = pd.read_parquet(city / schema.REMOTE_SENSING_FILE)
    size = Image.open(city / rs["path"].iloc[0]).size
    grey = (np.linspace(0, 65535, size[0] * size[1]).astype(np.uint16)).reshape(size[1], size[0])
    Image.fromarray(grey).save(city / rs["path"].iloc[0])
    Image.new("RGBA", size, (1, 2, 3, 4)).save(city / rs["path"].iloc[1])
    report = run(city)
    assert report.ok, report.summary()
    message = one(report.warnings, f"{schema.REMOTE_SENSING_FILE}: column 'path': 2 image(s) are not 8-bit RGB")
    assert "1 16-bit grey (mode I;16) scaled to 8 bits (value >> 8)" in message
    assert "1 transparency (RGBA) dropped, colours kept" in message
    Image.fromarray(np.full((size[1], size[0]), 7.5, dtype=np.float32), mode="F").save(
        city / "images" / "float.tiff")
    os.replace(city / "images" / "float.tiff", city / rs["path"].iloc[2])  # a TIFF under a .png name decodes too
    message = one(run(city).errors, "cannot decode", "mode F")
    assert message.startswith(f"{schema.REMOTE_SENSING_FILE}: column 'path': 1 row(s)")


# 3. symbolic links ----------------------------------------------------------------------------------------------------

def test_symlink_to_a_file_outside_the_bundle_is_refused(city, tmp_path):
    rs = pd.read_parquet(city / schema.REMOTE_SENSING_FILE)
    outside = tmp_path / "outside.png"
    shutil.copy(city / rs["path"].iloc[0], outside)
    (city / rs["path"].iloc[3]).unlink()
    (city / rs["path"].iloc[3]).symlink_to(outside)
    report = run(city)
    message = one(report.errors, "symbolic links to a file outside the bundle")
    assert message.startswith(f"{schema.REMOTE_SENSING_FILE}: column 'path': 1 row(s)")
    assert f"the first leads to {outside.resolve()}" in message and f"path='{rs['path'].iloc[3]}'" in message
    dropped = run(city, drop=True)
    assert dropped.ok and dropped.dropped[(schema.REMOTE_SENSING_FILE, "symlink outside the bundle")] == 1


def test_image_folder_linked_to_another_disk_is_accepted(city, tmp_path):
    disk = tmp_path / "big_disk" / "remote_sensing"
    shutil.move(city / schema.REMOTE_SENSING_DIR, disk)
    (city / schema.REMOTE_SENSING_DIR).symlink_to(disk, target_is_directory=True)
    report = run(city)
    assert report.ok, report.summary()


def test_looping_symlinks_are_an_error_not_a_hang(city):
    sv = pd.read_parquet(city / schema.STREET_VIEW_FILE)
    a, b = city / sv["path"].iloc[0], city / sv["path"].iloc[1]
    a.unlink(), b.unlink()
    a.symlink_to(b.name), b.symlink_to(a.name)  # a -> b, b -> a
    folder = city / schema.STREET_VIEW_DIR
    (folder / "loop_a").symlink_to(folder / "loop_b", target_is_directory=True)  # folders: loop_a -> loop_b -> .
    (folder / "loop_b").symlink_to(".", target_is_directory=True)
    (folder / "loop_c").symlink_to(".", target_is_directory=True)
    code = ("import sys; from musecl.data.validate import validate_bundle; "
            f"r = validate_bundle({str(city)!r}, progress=False, raise_on_error=False); print('\\n'.join(r.errors))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    message = one(done.stdout.splitlines(), "symbolic links that loop or cannot be resolved")
    assert message.startswith(f"{schema.STREET_VIEW_FILE}: column 'path': 2 row(s)")
    assert "Symlink loop" in message or "Too many levels of symbolic links" in message


# 4. a broken city.json gives errors in city.json only ----------------------------------------------------------------

@pytest.mark.parametrize("broken", ["{ not json", "h3_resolution: null", "h3_resolution: 9"])
def test_broken_city_json_gives_no_false_errors_elsewhere(city, broken):
    path = city / schema.CITY_FILE
    if broken == "{ not json":
        path.write_text(path.read_text()[:-20])
    else:
        meta = json.loads(path.read_text())
        meta["h3_resolution"] = None if broken.endswith("null") else 9
        path.write_text(json.dumps(meta))
    for drop in (False, True):
        report = run(city, drop=drop)
        assert report.errors and all(e.startswith(schema.CITY_FILE) for e in report.errors), report.summary()
        assert not report.dropped, report.summary()
        note = one(report.warnings, f"not checked: whether the points of {schema.POIS_FILE} lie inside the city")
        assert f"inside the city: {schema.CITY_FILE}" in note


def test_resolution_mismatch_names_city_json_once(city):
    meta = json.loads((city / schema.CITY_FILE).read_text())
    meta["h3_resolution"] = 9
    (city / schema.CITY_FILE).write_text(json.dumps(meta))
    report = run(city)
    one(report.errors, f"{schema.CITY_FILE}: key 'h3_resolution' is 9 but all 33 regions of {schema.REGIONS_FILE} "
        "are H3 cells at resolution 8")
    assert len(report.errors) == 1, report.summary()


# 5. non-canonical H3 ids are normalised with a warning ---------------------------------------------------------------

def test_upper_case_h3_ids_are_normalised_with_a_warning(city, tmp_path):
    regions = gpd.read_parquet(city / schema.REGIONS_FILE)
    original = regions["region_id"].tolist()
    regions["region_id"] = regions["region_id"].str.upper()
    regions.to_parquet(city / schema.REGIONS_FILE, index=False)
    rs = pd.read_parquet(city / schema.REMOTE_SENSING_FILE)
    rs["region_id"] = " " + rs["region_id"].str.upper() + " "
    rs.to_parquet(city / schema.REMOTE_SENSING_FILE, index=False)
    report = run(city)
    assert report.ok, report.summary()
    message = one(report.warnings, f"{schema.REGIONS_FILE}: column 'region_id': 33 H3 id(s) are not in canonical form")
    assert f"first at row 0: '{original[0].upper()}'" in message and f"normalised to '{original[0]}'" in message
    one(report.warnings, f"{schema.REMOTE_SENSING_FILE}: column 'region_id': {len(rs)} H3 id(s)")
    import_bundle(city, tmp_path / "imported", progress=False, check_images=False)
    assert gpd.read_parquet(tmp_path / "imported" / schema.REGIONS_FILE)["region_id"].tolist() == original
    written = pd.read_parquet(tmp_path / "imported" / schema.REMOTE_SENSING_FILE)["region_id"]
    assert written.isin(original).all()
    assert run(tmp_path / "imported").ok


# 6. the command line on a closed pipe --------------------------------------------------------------------------------

def test_command_line_exits_quietly_on_a_closed_pipe(city):
    meta = json.loads((city / schema.CITY_FILE).read_text())
    meta["indicators"].update({f"bogus_indicator_{i:04d}": {"transform": "nope"} for i in range(3000)})
    (city / schema.CITY_FILE).write_text(json.dumps(meta))  # ~6000 error lines: far more than a pipe holds
    validate = subprocess.Popen([sys.executable, "-m", "musecl.data.validate", str(city), "--no-images"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-1"], stdin=validate.stdout, stdout=subprocess.PIPE)
    validate.stdout.close()  # only head reads it now
    first, _ = head.communicate(timeout=120)
    stderr = validate.stderr.read().decode()
    validate.wait(timeout=120)
    assert first.decode().startswith("INVALID: ")
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert validate.returncode == 141
