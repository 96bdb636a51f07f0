"""Image renderers of the synthetic city: contract (shape, dtype, determinism, errors) and causal links latent -> image.

The fields here are small stand-ins (constants or functions of metres east/north of a reference point), so these tests
do not depend on the city generator.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from musecl.synthetic.render import (
    LABEL,
    render_remote_sensing,
    render_remote_sensing_labelled,
    render_street_view,
    render_street_view_labelled,
)

NAMES = ("residential", "commercial", "green", "water", "affluence", "nightlife")
LON, LAT = 116.4, 39.9
M_PER_DEG = 111_320.0


class Field:
    """Latents as functions of (east, north) metres from (LON, LAT); numbers are constants."""

    names = NAMES

    def __init__(self, **latents):
        self.latents = {name: latents.get(name, 0.0) for name in NAMES}

    def sample(self, lon, lat):
        east = (np.asarray(lon, dtype=np.float64) - LON) * M_PER_DEG * np.cos(np.radians(LAT))
        north = (np.asarray(lat, dtype=np.float64) - LAT) * M_PER_DEG
        out = {}
        for name, value in self.latents.items():
            v = value(east, north) if callable(value) else value
            out[name] = np.clip(np.broadcast_to(np.asarray(v, dtype=np.float64), east.shape), 0, 1).copy()
        return out


SUBURB = dict(residential=0.5, commercial=0.05, green=0.4, affluence=0.5, nightlife=0.05)
CENTRE = dict(residential=0.3, commercial=0.95, green=0.05, affluence=0.6, nightlife=0.6)


def rs(field, seed=0, size=64, extent=500.0, labelled=False):
    fn = render_remote_sensing_labelled if labelled else render_remote_sensing
    return fn(field, LON, LAT, size, extent, np.random.default_rng(seed))


def sv(field, seed=0, heading=0.0, size=96, labelled=False, lon=LON, lat=LAT):
    fn = render_street_view_labelled if labelled else render_street_view
    return fn(field, lon, lat, heading, size, np.random.default_rng(seed))


def blue_fraction(img):
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return float(((b > r + 15) & (b >= g)).mean())


def green_fraction(img):
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return float(((g > r + 8) & (g > b + 8)).mean())


def mean_label_fraction(render, label, seeds=range(8)):
    return float(np.mean([(render(seed)[1] == LABEL[label]).mean() for seed in seeds]))


# ---- contract -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size,extent", [(8, 1060.0), (32, 1060.0), (37, 300.0), (64, 1060.0)])
def test_remote_sensing_shape_and_dtype(size, extent):
    img = render_remote_sensing(Field(**SUBURB), LON, LAT, size, extent, np.random.default_rng(1))
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert img.std() > 2  # not a flat colour


@pytest.mark.parametrize("size", [16, 80, 96])
def test_street_view_shape_and_dtype(size):
    img = render_street_view(Field(**CENTRE), LON, LAT, 45.0, size, np.random.default_rng(1))
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert img.std() > 2


def test_same_seed_same_image_other_seed_other_image():
    for render in (lambda s: rs(Field(**SUBURB), seed=s), lambda s: sv(Field(**SUBURB), seed=s)):
        a, b, c = render(5), render(5), render(6)
        assert np.array_equal(a, b)
        assert np.abs(a.astype(int) - c.astype(int)).mean() > 3


def test_labelled_variants_return_the_same_image():
    img, labels = rs(Field(**SUBURB), seed=3, labelled=True)
    assert np.array_equal(img, rs(Field(**SUBURB), seed=3))
    assert labels.shape == img.shape[:2] and labels.dtype == np.uint8
    img, labels = sv(Field(**SUBURB), seed=3, labelled=True)
    assert np.array_equal(img, sv(Field(**SUBURB), seed=3))
    assert labels.shape == img.shape[:2]


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(0)

    class Missing(Field):
        def sample(self, lon, lat):
            out = super().sample(lon, lat)
            del out["nightlife"]
            return out

    with pytest.raises(KeyError, match="nightlife"):
        render_remote_sensing(Missing(), LON, LAT, 32, 500.0, rng)
    class OutOfRange(Field):
        def sample(self, lon, lat):
            return {**super().sample(lon, lat), "water": np.full(np.shape(lon), 1.5)}

    with pytest.raises(ValueError, match="'water' outside \\[0, 1\\]"):
        render_street_view(OutOfRange(), LON, LAT, 0.0, 96, rng)

    class WrongShape(Field):
        def sample(self, lon, lat):
            return {k: np.zeros(3) for k in NAMES}

    with pytest.raises(ValueError, match="shape"):
        render_street_view(WrongShape(), LON, LAT, 0.0, 96, rng)
    with pytest.raises(ValueError, match="size_px"):
        render_remote_sensing(Field(), LON, LAT, 4, 500.0, rng)
    with pytest.raises(ValueError, match="extent_m"):
        render_remote_sensing(Field(), LON, LAT, 32, 0.0, rng)
    with pytest.raises(ValueError, match="latitude"):
        render_street_view(Field(), LON, 91.0, 0.0, 96, rng)
    with pytest.raises(ValueError, match="heading_deg"):
        render_street_view(Field(), LON, LAT, float("nan"), 96, rng)
    with pytest.raises(TypeError, match="Generator"):
        render_street_view(Field(), LON, LAT, 0.0, 96, 42)
    with pytest.raises(TypeError, match="sample"):
        render_remote_sensing(object(), LON, LAT, 32, 500.0, rng)


# ---- remote sensing: causal links -----------------------------------------------------------------------------------
def test_water_everywhere_is_mostly_blue_and_none_is_not():
    wet = rs(Field(**{**SUBURB, "water": 1.0}))
    dry = rs(Field(**SUBURB))
    assert blue_fraction(wet) > 0.9
    assert blue_fraction(dry) < 0.05


def test_shoreline_follows_the_water_field_sharply():
    # water west of a north-south line through the centre
    img, labels = rs(Field(**{**SUBURB, "water": lambda e, n: (e < 0).astype(float)}), labelled=True)
    west, east = labels[:, :24], labels[:, 40:]
    assert (west == LABEL["water"]).mean() > 0.8
    assert np.isin(west, [LABEL["water"], LABEL["road"]]).mean() > 0.97  # major roads cross on bridges
    assert (east == LABEL["water"]).mean() == 0.0
    assert blue_fraction(img[:, :24]) > 0.8 and blue_fraction(img[:, 40:]) < 0.05


def test_more_green_gives_more_green_pixels():
    low = np.mean([green_fraction(rs(Field(**{**SUBURB, "green": 0.05}), seed=s)) for s in range(3)])
    high = np.mean([green_fraction(rs(Field(**{**SUBURB, "green": 0.9}), seed=s)) for s in range(3)])
    assert high > low + 0.25


def test_built_up_areas_have_more_buildings_and_denser_streets():
    def fractions(latents):
        labels = [rs(Field(**latents), seed=s, labelled=True)[1] for s in range(3)]
        return (np.mean([(x == LABEL["building"]).mean() for x in labels]),
                np.mean([(x == LABEL["road"]).mean() for x in labels]))

    rural_b, rural_r = fractions(dict(residential=0.03, commercial=0.0, green=0.2, affluence=0.5))
    urban_b, urban_r = fractions(dict(residential=0.8, commercial=0.6, green=0.05, affluence=0.5))
    assert urban_b > rural_b + 0.15
    assert urban_r > 1.5 * rural_r


def test_commercial_buildings_are_larger_than_houses():
    def mean_footprint_px(commercial):
        # 4 m per pixel, drawn without supersampling: connected building components are single buildings
        sizes = []
        for seed in range(3):
            labels = rs(Field(residential=0.3, commercial=commercial, green=0.1, affluence=0.5), seed=seed,
                        extent=256.0, labelled=True)[1]
            components, count = ndimage.label(labels == LABEL["building"])
            sizes.extend(np.bincount(components.ravel())[1:])
        return np.mean(sizes)

    assert mean_footprint_px(0.9) > 3 * mean_footprint_px(0.05)


def test_affluence_lightens_roofs_and_adds_pools():
    def roof_luminance_and_pools(affluence):
        lum, pools = [], []
        for seed in range(3):
            img, labels = rs(Field(residential=0.45, commercial=0.0, green=0.1, affluence=affluence), seed=seed,
                             extent=256.0, labelled=True)
            lum.append(img[labels == LABEL["building"]].mean())
            pools.append((labels == LABEL["pool"]).mean())
        return np.mean(lum), np.mean(pools)

    poor_lum, poor_pools = roof_luminance_and_pools(0.0)
    rich_lum, rich_pools = roof_luminance_and_pools(1.0)
    assert rich_lum > poor_lum + 15
    assert poor_pools == 0.0 and rich_pools > 0.0


# ---- street view: causal links --------------------------------------------------------------------------------------
def test_commercial_centre_has_taller_buildings_and_less_sky():
    def sky_and_top_brightness(latents):
        sky, bright = [], []
        for seed in range(10):
            img, labels = sv(Field(**latents), seed=seed, labelled=True)
            sky.append((labels == LABEL["sky"]).mean())
            bright.append(img[: img.shape[0] // 3].mean())
        return np.mean(sky), np.mean(bright)

    low_sky, low_bright = sky_and_top_brightness({**SUBURB, "commercial": 0.0, "green": 0.1})
    high_sky, high_bright = sky_and_top_brightness({**SUBURB, "commercial": 1.0, "green": 0.1})
    assert high_sky < 0.6 * low_sky
    assert high_bright < low_bright - 10  # towers (darker facades) replace bright sky at the top of the image


def test_green_shows_as_vegetation():
    low = mean_label_fraction(lambda s: sv(Field(**{**SUBURB, "green": 0.0}), seed=s, labelled=True), "vegetation")
    high = mean_label_fraction(lambda s: sv(Field(**{**SUBURB, "green": 0.95}), seed=s, labelled=True), "vegetation")
    assert high > low + 0.1


def test_shops_signs_follow_commercial_and_nightlife():
    quiet = dict(residential=0.5, commercial=0.05, green=0.1, affluence=0.5, nightlife=0.0)
    busy = dict(residential=0.5, commercial=0.8, green=0.1, affluence=0.5, nightlife=0.9)
    low = mean_label_fraction(lambda s: sv(Field(**quiet), seed=s, labelled=True), "sign")
    high = mean_label_fraction(lambda s: sv(Field(**busy), seed=s, labelled=True), "sign")
    assert high > 3 * low and high > 0.003


def test_nightlife_alone_adds_signs_and_people():
    def fractions(nightlife):
        def render(seed):
            latents = dict(residential=0.5, commercial=0.4, green=0.1, affluence=0.5, nightlife=nightlife)
            return sv(Field(**latents), seed=seed, labelled=True)

        return mean_label_fraction(render, "sign", range(10)), mean_label_fraction(render, "person", range(10))

    low_sign, low_people = fractions(0.0)
    high_sign, high_people = fractions(1.0)
    assert high_sign > 2 * low_sign
    assert high_people > 2 * low_people


def test_vehicles_follow_activity():
    calm = dict(residential=0.05, commercial=0.0, green=0.5, affluence=0.5)
    busy = dict(residential=0.6, commercial=0.9, green=0.05, affluence=0.5)
    low = mean_label_fraction(lambda s: sv(Field(**calm), seed=s, labelled=True), "vehicle", range(12))
    high = mean_label_fraction(lambda s: sv(Field(**busy), seed=s, labelled=True), "vehicle", range(12))
    assert high > 2 * low


def test_heading_matters_only_through_the_field():
    # uniform field: the heading changes nothing (same seed)
    flat = Field(**SUBURB)
    assert np.array_equal(sv(flat, seed=2, heading=0.0), sv(flat, seed=2, heading=90.0))
    # water from 30 m north of the camera: visible looking north, not looking south
    river = Field(**{**SUBURB, "water": lambda e, n: (n > 30).astype(float)})
    north = [sv(river, seed=s, heading=0.0, labelled=True) for s in range(6)]
    south = [sv(river, seed=s, heading=180.0, labelled=True) for s in range(6)]
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(north, south))
    assert np.mean([(lab == LABEL["water"]).mean() for _, lab in north]) > 0.05
    assert all((lab == LABEL["water"]).sum() == 0 for _, lab in south)
    assert np.mean([blue_fraction(img) for img, _ in north]) > np.mean([blue_fraction(img) for img, _ in south])


def test_package_exports_the_public_api():
    import musecl.synthetic.render as render
    from musecl.synthetic.latents import LATENT_NAMES

    for name in render.__all__:
        assert getattr(render, name) is not None
    assert render.LATENTS == LATENT_NAMES == NAMES
    assert [render.LABEL[name] for name in render.SCENE_CLASSES] == list(range(len(render.SCENE_CLASSES)))


def test_generator_state_after_a_render_depends_only_on_the_inputs():
    for fn, args in ((render_remote_sensing, (LON, LAT, 48, 700.0)), (render_street_view, (LON, LAT, 30.0, 64))):
        states = []
        for _ in range(2):
            rng = np.random.default_rng(3)
            fn(Field(**CENTRE), *args, rng)
            states.append(rng.bit_generator.state["state"]["state"])
        assert states[0] == states[1]


def test_street_view_latents_and_quay_distance_from_the_sampled_grid():
    from musecl.synthetic.render.street_view import _SV_AHEAD_M, _SV_SIDE_M, _latents_at, _water_ahead

    grid = {"water": np.add.outer(_SV_SIDE_M, _SV_AHEAD_M).astype(np.float32)}
    assert _latents_at(grid, 50.0, 20.0)["water"] == pytest.approx(70.0)
    assert _latents_at(grid, 1e4, -1e4)["water"] == pytest.approx(_SV_AHEAD_M[-1] + _SV_SIDE_M[0])  # clamped
    assert _water_ahead(np.zeros(len(_SV_AHEAD_M))) == float("inf")
    assert _water_ahead(np.ones(len(_SV_AHEAD_M))) == 4.0
    ramp = np.clip((_SV_AHEAD_M - 10.0) / 40.0, 0, 1)  # crosses 0.5 at 30 m
    assert _water_ahead(ramp) == pytest.approx(30.0)
