"""The true facts of one synthetic image: what the renderer drew there, as caption facts (`musecl.data.captions.Fact`).

Objects, counts and relations come from the labelled renderer's scene-class map (`render_*_labelled`: the same
pixels as the image, one class per pixel); building types, heights and roof colours, which the class map does not
separate, come from the renderers' own rules applied to the latents averaged over the image's footprint
(:func:`image_latents`). Only what the image shows is a fact: a roof colour only where roofs are visible (every tile
from above; in street view only where pitched house roofs dominate), building attributes only where buildings are.
Every threshold is listed in docs/synthetic_city.md, section 7.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from musecl.contract import check_modality
from musecl.data.captions import Fact, close_facts
from musecl.synthetic.latents import LATENT_NAMES
from musecl.synthetic.render import LABEL, METRES_PER_DEG_LAT
from musecl.synthetic.render.helpers import _apartment_share

# Minimum share of the image's pixels for an object to be present, per modality.
MIN_SHARE = {
    "rs": {"building": 0.02, "road": 0.01, "sidewalk": 0.01, "vegetation": 0.02, "water": 0.02, "occluder": 0.05},
    "sv": {"building": 0.02, "road": 0.01, "sidewalk": 0.01, "vegetation": 0.02, "water": 0.02, "sky": 0.02,
           "occluder": 0.005},
}
CLASS_OBJECT = {"building": "building", "road": "road", "sidewalk": "sidewalk", "vegetation": "tree", "water": "water",
                "sky": "sky"}
OCCLUDER_OBJECT = {"rs": "cloud", "sv": "lamp_post"}  # thick cloud from above, a lamp post in the street
COUNTED = {"rs": {"pool": "pool"}, "sv": {"vehicle": "vehicle", "person": "person", "sign": "shop_sign"}}
MIN_COMPONENT_SHARE = 0.0003  # a counted thing has at least max(2, this x pixels) pixels
COUNT_BINS = ((2, "few"), (5, "several"), (math.inf, "many"))
# Tier thresholds (lower bounds of the middle and top value) of shares of the image, per modality.
DENSITY = {"rs": (0.10, 0.18), "sv": (0.12, 0.35)}  # building share: sparse / moderate / dense
GREENERY = {"rs": (0.12, 0.35), "sv": (0.08, 0.30)}  # vegetation share: bare / patchy / lush
OPENNESS = (0.08, 0.25)  # street-view sky share: enclosed / partial / open
HEIGHT_M = (10.0, 24.0)  # expected building height: low / mid / tall
TYPE_SHARE, TOWER_M, PARK_GREEN = 0.3, 30.0, 0.65
PARK_VEGETATION = {"rs": 0.25, "sv": 0.20}
ALONG_ROAD_SHARE, NEAR_WATER_PX, NEAR_WATER_SHARE = 0.3, 2, 0.001


def image_latents(field: Any, lon: float, lat: float, modality: str, *, heading: float = 0.0,
                  extent_m: float | None = None) -> dict[str, float]:
    """The latents averaged over an image's footprint: remote sensing a 5 x 5 grid over the middle 80 % of the tile
    (`extent_m` wide); street view six points 15, 40 and 80 m ahead along `heading`, 20 m either side."""
    if check_modality(modality, "image_latents: modality") == "rs":
        if extent_m is None:
            raise ValueError("image_latents: a remote-sensing tile needs extent_m (the tile's side in metres)")
        offsets = np.linspace(-0.4, 0.4, 5) * float(extent_m)
        east, north = (a.ravel() for a in np.meshgrid(offsets, offsets))
    else:
        ahead, side = (a.ravel() for a in np.meshgrid([15.0, 40.0, 80.0], [-20.0, 20.0]))
        h = math.radians(heading)
        east = ahead * math.sin(h) + side * math.cos(h)
        north = ahead * math.cos(h) - side * math.sin(h)
    lats = lat + north / METRES_PER_DEG_LAT
    lons = lon + east / (METRES_PER_DEG_LAT * math.cos(math.radians(lat)))
    sampled = field.sample(lons, lats)
    return {name: float(np.mean(sampled[name])) for name in LATENT_NAMES}


def scene_facts(labels: np.ndarray, latents: Mapping[str, float], modality: str) -> frozenset[Fact]:
    """The true facts of an image from its scene-class map (`labels`, indices into SCENE_CLASSES) and the latents
    at its location (:func:`image_latents`); closed under `musecl.data.captions.close_facts`."""
    modality = check_modality(modality, "scene_facts: modality")
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.size == 0:
        raise ValueError(f"scene_facts: labels must be a non-empty 2-D class map, got shape {labels.shape}")
    share = np.bincount(labels.ravel(), minlength=len(LABEL)) / labels.size
    present = {name: share[LABEL[name]] >= low for name, low in MIN_SHARE[modality].items()}
    facts: set[Fact] = {Fact("object", CLASS_OBJECT[n]) for n, ok in present.items() if ok and n in CLASS_OBJECT}
    if present["occluder"]:
        facts.add(Fact("object", OCCLUDER_OBJECT[modality]))
    min_px = max(2, int(round(MIN_COMPONENT_SHARE * labels.size)))
    for cls, obj in COUNTED[modality].items():
        n = count_components(labels == LABEL[cls], min_px)
        if n:
            facts.add(Fact("attribute", obj, next(v for top, v in COUNT_BINS if n <= top)))
    r, c, g, a, nl = (float(latents[k]) for k in ("residential", "commercial", "green", "affluence", "nightlife"))
    if any(f.subject == "shop_sign" for f in facts):
        facts.add(Fact("attribute", "shop_sign", "neon" if nl >= 0.5 else "plain"))
    facts.add(Fact("attribute", "greenery", _tier(share[LABEL["vegetation"]], GREENERY[modality],
                                                  ("bare", "patchy", "lush"))))
    if modality == "sv" and present["sky"]:
        facts.add(Fact("attribute", "sky", _tier(share[LABEL["sky"]], OPENNESS, ("enclosed", "partial", "open"))))
    if modality == "rs" and share[LABEL["ground"]] >= 0.10 and _grass_share(r, c, g) >= 0.5:
        facts.add(Fact("object", "grass"))
    if g >= PARK_GREEN and share[LABEL["vegetation"]] >= PARK_VEGETATION[modality]:
        facts.add(Fact("object", "park"))
    if present["building"]:
        facts |= _building_facts(share[LABEL["building"]], r, c, a, modality)
    objects = {f.subject for f in close_facts(facts) if f.kind == "object"}
    facts |= {f for f in _relations(labels, modality)
              if f.subject in objects and f.value.split(":", 1)[1] in objects}  # both ends shown, not just a pixel
    return close_facts(facts)


def count_components(mask: np.ndarray, min_px: int) -> int:
    """Connected components (4-connected) of `mask` with at least `min_px` pixels."""
    if mask.sum() < min_px:  # nothing that large: skip the labelling
        return 0
    components, n = ndimage.label(mask)
    return int((np.bincount(components.ravel())[1:] >= min_px).sum())


def _tier(value: float, bounds: tuple[float, float], names: tuple[str, str, str]) -> str:
    return names[int(value >= bounds[0]) + int(value >= bounds[1])]


def _grass_share(r: float, c: float, g: float) -> float:
    """Share of the remote-sensing ground-cover weights that are park grass or lawn (the renderer's `_ground_cover`)."""
    built = 1.0 - (1.0 - r) * (1.0 - c)
    grassy = g + r * (1.0 - c)
    return grassy / (grassy + c * built + 0.6 * (1.0 - built) * (1.0 - g) + 0.05)


def building_mix(r: float, c: float) -> dict[str, float]:
    """Expected shares of the renderers' building types: commercial c/(r+c), apartments, houses (both renderers)."""
    commercial = c / (r + c + 1e-6)
    apartments = (1.0 - commercial) * float(_apartment_share(r, c))
    return {"commercial": commercial, "apartments": apartments, "houses": 1.0 - commercial - apartments}


def type_heights(r: float, c: float, a: float, modality: str) -> dict[str, float]:
    """Expected height (m) of each building type, from the renderers' rules (city_blocks / facades)."""
    if modality == "rs":  # commercial 8 + 130 c^2 u^1.5, apartments 10 + 26 r u, houses 4 + 4 u (u uniform)
        return {"commercial": 8.0 + 52.0 * c**2, "apartments": 10.0 + 13.0 * r, "houses": 6.0}
    # storeys: commercial about 2.5 + 35 c^2 of 3.6-3.8 m, apartments 3 + 5 r of 3 m, houses 1-2 of 3 m plus a roof
    return {"commercial": 3.7 * (2.5 + 35.0 * c**2), "apartments": 3.0 * (3.0 + 5.0 * r),
            "houses": 3.0 * (1.4 + 0.3 * a) + 2.25}


def roof_colours(r: float, c: float, a: float) -> dict[str, dict[str, float]]:
    """P(roof colour class | building type): house tiers by affluence (poor weathered = grey, standard clay = red,
    premium = light), apartment slabs grey, commercial membrane/glass (light, 0.15 + 0.7 a) or concrete (grey)."""
    poor = 0.7 * (1.0 - a) ** 2
    premium = max(0.0, min(0.75 * a, 1.0 - poor))
    light = min(1.0, 0.15 + 0.7 * a)
    return {"houses": {"grey_roof": poor, "red_roof": 1.0 - poor - premium, "light_roof": premium},
            "apartments": {"grey_roof": 1.0, "red_roof": 0.0, "light_roof": 0.0},
            "commercial": {"grey_roof": 1.0 - light, "red_roof": 0.0, "light_roof": light}}


def _building_facts(building_share: float, r: float, c: float, a: float, modality: str) -> set[Fact]:
    mix = building_mix(r, c)
    heights = type_heights(r, c, a, modality)
    facts = {Fact("object", "building")}
    if mix["houses"] >= TYPE_SHARE:
        facts.add(Fact("object", "house"))
    if mix["apartments"] >= TYPE_SHARE:
        facts.add(Fact("object", "apartment_block"))
    if mix["commercial"] >= TYPE_SHARE and heights["commercial"] >= TOWER_M:
        facts.add(Fact("object", "tower"))
    height = sum(mix[t] * heights[t] for t in mix)
    facts.add(Fact("attribute", "building", _tier(height, HEIGHT_M, ("low", "mid", "tall"))))
    facts.add(Fact("attribute", "building", _tier(building_share, DENSITY[modality], ("sparse", "moderate", "dense"))))
    colours = roof_colours(r, c, a)
    if modality == "rs":
        weights = {k: sum(mix[t] * colours[t][k] for t in mix) for k in colours["houses"]}
    elif mix["houses"] >= 0.5:  # street view: only pitched house roofs are seen from the street
        weights = colours["houses"]
    else:
        return facts
    facts.add(Fact("attribute", "building", max(sorted(weights), key=weights.get)))
    return facts


def _grow(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """`mask` dilated by `steps` pixels with the 4-neighbourhood (as `ndimage.binary_dilation`, in array slices)."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _relations(labels: np.ndarray, modality: str) -> set[Fact]:
    """Trees along the road, buildings near water, people on the sidewalk, from the class map's neighbourhoods."""
    facts: set[Fact] = set()
    road = labels == LABEL["road"]
    if modality == "sv":
        road |= labels == LABEL["sidewalk"]
    border = _grow(road) & ~road
    if border.any() and (labels[border] == LABEL["vegetation"]).mean() >= ALONG_ROAD_SHARE:
        facts.add(Fact("relation", "tree", "along:road"))
    water = labels == LABEL["water"]
    if water.any():
        near = _grow(water, NEAR_WATER_PX) & (labels == LABEL["building"])
        if near.sum() >= max(2, NEAR_WATER_SHARE * labels.size):
            facts.add(Fact("relation", "building", "near:water"))
    person = labels == LABEL["person"]
    if person.any() and (_grow(person) & (labels == LABEL["sidewalk"])).any():
        facts.add(Fact("relation", "person", "on:sidewalk"))
    return facts
