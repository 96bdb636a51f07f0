"""The caption vocabulary: canonical urban-scene objects, attributes and relations, and every phrase that names them.

Each canonical fact has an ordered tuple of surface phrases, plainest first; a captioner writes with a register (a
choice of positions) of these tuples, and the factual parser (`musecl.data.captions`) maps every surface back to its
canonical. A surface names exactly one canonical (checked at import), and surfaces are matched as whole words
(hyphens count as part of a word), longest first, so "swimming pool" is a pool and "street lamp" a lamp post, not a
road. Only what the synthetic renderers draw is in the lexicon (see docs/synthetic_city.md, section 7).
"""
from __future__ import annotations

# ---- objects: canonical -> (singular, plural) surfaces; a mass noun has singular == plural --------------------------
OBJECTS: dict[str, tuple[tuple[str, str], ...]] = {
    "building": (("building", "buildings"), ("structure", "structures"), ("edifice", "edifices")),
    "house": (("house", "houses"), ("family home", "family homes"), ("detached home", "detached homes"),
              ("cottage", "cottages")),
    "apartment_block": (("apartment block", "apartment blocks"), ("apartment building", "apartment buildings"),
                        ("residential block", "residential blocks"), ("housing block", "housing blocks")),
    "tower": (("tower", "towers"), ("office tower", "office towers"), ("skyscraper", "skyscrapers")),
    "road": (("road", "roads"), ("street", "streets"), ("avenue", "avenues"), ("thoroughfare", "thoroughfares")),
    "sidewalk": (("sidewalk", "sidewalks"), ("pavement", "pavements"), ("footpath", "footpaths"),
                 ("promenade", "promenades")),
    "tree": (("tree", "trees"), ("tree crown", "tree crowns"), ("shade tree", "shade trees")),
    "grass": (("grass", "grass"), ("lawn", "lawns"), ("turf", "turf")),
    "park": (("park", "parks"), ("green space", "green spaces"), ("parkland", "parkland")),
    "water": (("water", "water"), ("river", "river"), ("canal", "canal"), ("lake", "lake")),
    "pool": (("swimming pool", "swimming pools"), ("pool", "pools")),
    "vehicle": (("car", "cars"), ("vehicle", "vehicles"), ("automobile", "automobiles")),
    "person": (("person", "people"), ("pedestrian", "pedestrians"), ("passer-by", "passers-by")),
    "shop_sign": (("shop sign", "shop signs"), ("storefront sign", "storefront signs"), ("signboard", "signboards")),
    "sky": (("sky", "sky"), ("sky above", "sky above")),
    "cloud": (("cloud", "clouds"), ("cloud bank", "cloud banks")),
    "lamp_post": (("lamp post", "lamp posts"), ("street lamp", "street lamps"), ("light pole", "light poles")),
}
COUNTABLE = ("vehicle", "person", "shop_sign", "pool")  # the objects a count attribute can describe
BUILDING_TYPES = ("house", "apartment_block", "tower")  # each implies a building

# ---- attributes: family -> (subject, values); subject "" = the counted object of the phrase --------------------------
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "height": ("building", ("low", "mid", "tall")),
    "density": ("building", ("sparse", "moderate", "dense")),
    "roof": ("building", ("red_roof", "grey_roof", "light_roof")),
    "greenery": ("greenery", ("bare", "patchy", "lush")),
    "openness": ("sky", ("enclosed", "partial", "open")),
    "sign_style": ("shop_sign", ("plain", "neon")),
    "count": ("", ("few", "several", "many")),
}
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "low": ("low-rise", "low", "single-storey"),
    "mid": ("mid-rise", "medium-height", "multi-storey"),
    "tall": ("high-rise", "tall", "towering"),
    "sparse": ("scattered", "sparsely built", "widely spaced"),
    "moderate": ("moderately dense", "evenly spaced", "moderately spaced"),
    "dense": ("densely packed", "dense", "tightly packed"),
    "red_roof": ("red roofs", "red-tiled roofs", "terracotta roofs"),
    "grey_roof": ("grey roofs", "dark roofs", "weathered roofs"),
    "light_roof": ("light roofs", "white roofs", "pale roofs"),
    "bare": ("little greenery", "barely any vegetation", "scant vegetation"),
    "patchy": ("some greenery", "patches of vegetation", "a modest amount of greenery"),
    "lush": ("lush greenery", "abundant vegetation", "verdant foliage"),
    "enclosed": ("narrow strip of sky", "sliver of sky", "hemmed-in sky"),
    "partial": ("patch of sky", "glimpse of sky", "partly hidden sky"),
    "open": ("open sky", "wide sky", "expansive sky"),
    "plain": ("plain", "painted", "simple"),
    "neon": ("neon", "glowing neon", "neon-lit"),
    "few": ("a few", "a couple of", "one or two"),
    "several": ("several", "a number of", "a handful of"),
    "many": ("many", "numerous", "lots of"),
}
# Attributes whose surfaces are whole noun phrases (the subject needs no separate noun): "there is lush greenery".
NOUN_PHRASE_VALUES = ("bare", "patchy", "lush", "enclosed", "partial", "open")

# ---- relations: value -> (subject, surfaces); the value names the other object after ':' -----------------------------
RELATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "along:road": ("tree", ("along the road", "lining the road", "along the street", "lining the street")),
    "near:water": ("building", ("near the water", "by the water", "along the waterfront", "on the riverbank")),
    "on:sidewalk": ("person", ("on the sidewalk", "on the pavement", "on the footpath")),
}

VALUE_FAMILY = {value: family for family, (_, values) in FAMILIES.items() for value in values}


def _surface_table() -> dict[str, tuple[str, str]]:
    """Every surface -> (kind, canonical): kind "object", "attribute" or "relation"; one canonical per surface."""
    table: dict[str, tuple[str, str]] = {}

    def add(surface: str, item: tuple[str, str]) -> None:
        if table.get(surface, item) != item:
            raise ValueError(f"caption lexicon: surface {surface!r} names both {table[surface]} and {item}")
        table[surface] = item

    for name, forms in OBJECTS.items():
        for singular, plural in forms:
            add(singular, ("object", name))
            add(plural, ("object", name))
    if set(ATTRIBUTES) != set(VALUE_FAMILY):
        raise ValueError(f"caption lexicon: attribute values {sorted(set(ATTRIBUTES) ^ set(VALUE_FAMILY))} are in "
                         "only one of ATTRIBUTES and FAMILIES")
    for value, surfaces in ATTRIBUTES.items():
        for surface in surfaces:
            add(surface, ("attribute", value))
    for value, (subject, surfaces) in RELATIONS.items():
        if subject not in OBJECTS or value.split(":", 1)[1] not in OBJECTS:
            raise ValueError(f"caption lexicon: relation {value!r} must join two objects of OBJECTS")
        for surface in surfaces:
            add(surface, ("relation", value))
    return table


SURFACES = _surface_table()
