"""Scene classes and colours of the synthetic-city renderers.

The per-pixel scene classes (SCENE_CLASSES, LABEL) that the `*_labelled` renderers return, and every RGB palette the
remote-sensing and street-view drawings pick from: roofs, walls, shop signs, vehicles, clothes, ground cover, canopy
and water. Palettes with tiers are indexed by affluence (poor, standard, premium). `_pick` and `_lawn` are the two
colour rules shared by both modalities, so a lawn or a roof looks the same from above and from the street.
"""
from __future__ import annotations

import numpy as np

SCENE_CLASSES = (
    "ground", "road", "sidewalk", "building", "vegetation", "water", "pool", "sky", "vehicle", "sign", "person",
    "occluder",
)
LABEL = {name: i for i, name in enumerate(SCENE_CLASSES)}

# ---- palettes (RGB); tiers are chosen by affluence ------------------------------------------------------------------
_HOUSE_ROOF = np.array([
    # poor: weathered, corrugated, rust
    [[112, 102, 94], [128, 121, 112], [122, 78, 58], [96, 88, 82], [138, 124, 104], [106, 97, 88]],
    # standard: clay tiles
    [[168, 78, 58], [188, 106, 66], [130, 84, 63], [152, 63, 52], [100, 96, 98], [178, 122, 86]],
    # premium: light and varied
    [[208, 192, 170], [188, 188, 193], [122, 142, 164], [148, 172, 150], [218, 208, 192], [196, 104, 82]],
], dtype=np.float32)
_APARTMENT_ROOF = np.array([[172, 168, 160], [150, 150, 148], [188, 178, 162], [132, 128, 124], [162, 152, 142],
                            [200, 196, 188]], dtype=np.float32)
_COMMERCIAL_ROOF = np.array([
    [[140, 140, 138], [82, 84, 90], [120, 118, 112], [160, 158, 150]],  # concrete, bitumen
    [[206, 206, 202], [112, 130, 150], [104, 128, 132], [178, 184, 190]],  # white membrane, glass
], dtype=np.float32)
_RESIDENTIAL_WALL = np.array([
    [[150, 148, 140], [128, 80, 62], [160, 146, 122], [118, 116, 110], [140, 120, 100], [105, 100, 95]],
    [[166, 86, 62], [186, 112, 80], [210, 195, 165], [190, 175, 150], [176, 166, 156], [200, 180, 140]],
    [[234, 230, 220], [226, 210, 180], [200, 212, 222], [222, 200, 190], [210, 216, 196], [242, 236, 226]],
], dtype=np.float32)
_COMMERCIAL_WALL = np.array([
    [[170, 165, 155], [150, 145, 140], [190, 182, 170], [130, 128, 125]],  # stone, concrete
    [[82, 112, 142], [96, 132, 152], [72, 96, 112], [122, 142, 162]],  # glass curtain walls
], dtype=np.float32)
_SIGN_SHOP = np.array([[222, 40, 40], [250, 200, 30], [30, 90, 200], [245, 245, 240], [30, 150, 70], [240, 120, 20]],
                      dtype=np.float32)
_SIGN_NEON = np.array([[255, 40, 180], [40, 230, 255], [170, 60, 255], [255, 60, 90], [150, 255, 60], [255, 140, 255]],
                      dtype=np.float32)
_CARS = np.array([[200, 200, 205], [30, 30, 35], [150, 20, 25], [40, 60, 120], [222, 222, 216], [110, 110, 115],
                  [182, 150, 40], [70, 92, 70]], dtype=np.float32)
_SHOP_LIT = np.array([210, 180, 130], np.float32)
_HEDGE = np.array([60, 98, 50], np.float32)
_CLOTHES = np.array([[40, 40, 45], [30, 50, 100], [150, 30, 40], [200, 200, 195], [90, 70, 50], [60, 110, 70],
                     [200, 150, 40]], dtype=np.float32)

# ---- remote-sensing ground ------------------------------------------------------------------------------------------
# ground cover colours: park grass, lawn (poor), lawn affluence shift, paving, bare soil
_GROUND_COVER = np.array([[104, 146, 72], [150, 140, 98], [-52, 8, -26], [138, 137, 133], [158, 146, 112]],
                         dtype=np.float32)
_CANOPY_DARK = np.array([44, 84, 38], np.float32)
_CANOPY_LIGHT = np.array([34, 40, 20], np.float32)
_WATER_SHALLOW = np.array([64, 102, 112], np.float32)
_WATER_DEEP = np.array([28, 58, 92], np.float32)


def _pick(palette: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Palette rows chosen by uniforms u."""
    return palette[np.minimum((u * len(palette)).astype(np.int64), len(palette) - 1)]


def _lawn(affluence: float) -> np.ndarray:
    """Lawn colour: dry and yellowish in poor areas, green and watered in affluent ones (as in the satellite tiles)."""
    return _GROUND_COVER[1] + affluence * _GROUND_COVER[2]
