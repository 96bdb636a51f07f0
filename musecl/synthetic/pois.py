"""Synthetic POIs: counts per region and category from log-linear intensities of the latents, names and review text.

Every category has an affinity to each latent (`CATEGORIES`); the expected count of category c in region r is
    base_c * exp(sum_l beta_{c,l} * z_{r,l}) * land_fraction_r * scale * overdispersion_{r,c}
with z the region latents, `scale` setting the city-wide mean and a log-normal over-dispersion (sd OVERDISPERSION) per
region and category. Texts share words between related categories (so Word2Vec finds structure), carry adjectives linked
to affluence and nightlife, and noise words.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from musecl.synthetic.latents import LATENT_NAMES

OVERDISPERSION = 0.35  # sd of the log-normal multiplier per region and category
MAX_REVIEWS_IN_TEXT = 4  # review snippets included in a POI's text (the first few of its n_comments)


@dataclass(frozen=True)
class PoiCategory:
    name: str  # "level1;level2"
    base: float  # relative frequency at latents 0
    affinity: dict[str, float]  # latent -> log-linear coefficient
    words: tuple[str, ...]  # category-specific vocabulary
    name_nouns: tuple[str, ...]  # what the place calls itself
    popularity: float  # log-scale shift of the expected number of comments


# The taxonomy follows Baidu Maps' POI industry classification (the paper's POIs in Beijing and Shanghai): its ~20
# first-level categories (美食 food, 酒店 hotel, 购物 shopping, 生活服务 life_service, 丽人 beauty, 旅游景点 tourism,
# 休闲娱乐 leisure, 运动健身 sports, 教育培训 education, 文化传媒 culture_media, 医疗 health, 汽车服务 car_service,
# 交通设施 transport, 金融 finance, 房地产 real_estate, 公司企业 company, 政府机构 government, 出入口 entrance,
# 自然地物 nature, 行政地标 landmark), with a few second-level categories each (Baidu files bars, clubs and KTV under
# leisure, parks under tourism). Level-1 groups share words; some words are shared across groups where real places
# overlap (food/leisure "drinks").
GROUP_WORDS: dict[str, tuple[str, ...]] = {
    "food": ("food", "menu", "taste", "dish", "portion", "order", "delicious", "flavour"),
    "hotel": ("room", "stay", "bed", "reception", "breakfast", "night"),
    "shopping": ("store", "price", "goods", "shelf", "discount", "brand", "checkout"),
    "life_service": ("service", "appointment", "staff", "clean", "quick"),
    "beauty": ("beauty", "appointment", "treatment", "style", "relax"),
    "tourism": ("visit", "tourists", "scenery", "photos", "weekend", "family"),
    "leisure": ("fun", "friends", "night", "drinks", "music", "weekend"),
    "sports": ("sport", "training", "team", "match", "fitness"),
    "education": ("students", "teacher", "class", "learning", "campus"),
    "culture_media": ("culture", "art", "exhibition", "artists", "gallery"),
    "health": ("doctor", "appointment", "care", "medicine", "treatment"),
    "car_service": ("car", "mechanic", "fuel", "service", "engine"),
    "transport": ("car", "parking", "traffic", "station", "commute"),
    "finance": ("money", "account", "cash", "card", "counter"),
    "real_estate": ("apartment", "housing", "rent", "property", "estate"),
    "company": ("office", "company", "workday", "employees", "staff"),
    "government": ("public", "official", "documents", "citizens", "counter"),
    "entrance": ("gate", "entrance", "exit", "guard", "access"),
    "nature": ("water", "bank", "trees", "view", "walk"),
    "landmark": ("area", "district", "neighbourhood", "centre", "landmark"),
}

CATEGORIES: tuple[PoiCategory, ...] = (
    PoiCategory("food;restaurant", 3.0, {"commercial": 1.5, "residential": 0.8, "nightlife": 0.6},
                ("dinner", "chef", "table", "noodles", "rice", "soup"), ("Restaurant", "Kitchen", "Bistro"), 0.6),
    PoiCategory("food;cafe", 1.2, {"commercial": 1.6, "affluence": 1.2, "green": 0.3},
                ("coffee", "latte", "cake", "wifi", "tea", "dessert"), ("Cafe", "Coffee", "Tea House"), 0.5),
    PoiCategory("food;fast_food", 1.5, {"commercial": 1.3, "residential": 0.7, "affluence": -1.0},
                ("burger", "fries", "takeaway", "cheap", "quick", "snack"), ("Burger", "Fried Chicken", "Snacks"), 0.3),
    PoiCategory("food;bakery", 0.6, {"residential": 1.2, "affluence": 0.6},
                ("bread", "pastry", "cake", "morning", "fresh"), ("Bakery", "Bread House"), 0.0),
    PoiCategory("hotel;hotel", 0.3, {"commercial": 1.4, "nightlife": 0.8, "water": 0.6},
                ("lobby", "check_in", "suite", "view", "tourists"), ("Hotel", "Inn", "Residence"), 0.5),
    PoiCategory("hotel;hostel", 0.2, {"commercial": 1.0, "nightlife": 0.6, "affluence": -0.8},
                ("dorm", "bunk", "backpackers", "cheap", "shared"), ("Hostel", "Guesthouse"), 0.2),
    PoiCategory("shopping;convenience", 2.0, {"residential": 1.4, "commercial": 0.5, "affluence": -0.4},
                ("snack", "drinks", "open", "daily", "corner"), ("Mart", "Convenience Store", "24h Shop"), -0.6),
    PoiCategory("shopping;supermarket", 0.5, {"residential": 1.6},
                ("groceries", "vegetables", "fresh", "daily", "cart"), ("Supermarket", "Market", "Grocery"), 0.0),
    PoiCategory("shopping;mall", 0.15, {"commercial": 2.4},
                ("mall", "floors", "fashion", "cinema", "crowded"), ("Mall", "Plaza", "Shopping Centre"), 1.2),
    PoiCategory("shopping;boutique", 0.5, {"commercial": 1.4, "affluence": 2.0},
                ("fashion", "designer", "clothes", "style", "luxury"), ("Boutique", "Atelier", "Fashion"), 0.2),
    PoiCategory("life_service;laundry", 0.4, {"residential": 1.6, "affluence": -0.7},
                ("laundry", "washing", "ironing", "clothes", "cheap"), ("Laundry", "Dry Cleaner"), -0.9),
    PoiCategory("life_service;post_office", 0.25, {"residential": 1.2, "commercial": 0.4},
                ("parcel", "mail", "stamps", "delivery", "queue"), ("Post Office", "Express Station"), -1.0),
    PoiCategory("beauty;hair_salon", 0.7, {"residential": 1.1, "commercial": 0.5},
                ("haircut", "stylist", "salon", "dye", "mirror"), ("Hair Salon", "Barber", "Beauty Studio"), -0.2),
    PoiCategory("beauty;spa", 0.3, {"commercial": 0.8, "affluence": 1.5},
                ("massage", "spa", "facial", "nails", "skin"), ("Spa", "Nail Studio", "Massage"), 0.0),
    PoiCategory("tourism;park", 0.4, {"green": 2.8, "residential": 0.3},
                ("trees", "lawn", "walk", "jogging", "lake", "quiet"), ("Park", "Garden", "Green"), 0.4),
    PoiCategory("tourism;museum", 0.05, {"commercial": 1.0, "green": 0.6, "water": 0.4},
                ("museum", "history", "collection", "guide", "tickets"), ("Museum", "Memorial Hall"), 1.0),
    PoiCategory("leisure;cinema", 0.12, {"commercial": 1.4, "nightlife": 1.2},
                ("movie", "screen", "tickets", "popcorn", "seats"), ("Cinema", "Theatre", "Movie Hall"), 0.9),
    PoiCategory("leisure;bar", 0.4, {"nightlife": 2.8, "commercial": 0.4},
                ("beer", "bartender", "cocktail", "happy_hour", "loud"), ("Bar", "Pub", "Tavern"), 0.7),
    PoiCategory("leisure;club", 0.08, {"nightlife": 3.5},
                ("dj", "dance", "bass", "queue", "party"), ("Club", "Lounge"), 0.9),
    PoiCategory("leisure;karaoke", 0.15, {"nightlife": 2.4, "affluence": -0.6},
                ("ktv", "songs", "microphone", "private_room", "friends"), ("KTV", "Karaoke"), 0.4),
    PoiCategory("sports;gym", 0.5, {"residential": 0.8, "commercial": 0.8, "affluence": 0.9},
                ("fitness", "training", "yoga", "coach", "workout"), ("Gym", "Fitness Club", "Yoga Studio"), 0.0),
    PoiCategory("sports;stadium", 0.05, {"green": 1.2, "residential": 0.4},
                ("stadium", "court", "pitch", "football", "basketball"), ("Stadium", "Sports Centre", "Arena"), 0.5),
    PoiCategory("education;school", 0.4, {"residential": 1.9},
                ("pupils", "homework", "playground", "parents", "exam"), ("School", "Primary School", "Academy"), -0.4),
    PoiCategory("education;university", 0.04, {"green": 1.0, "residential": 0.5},
                ("lecture", "library", "research", "dormitory", "professor"),
                ("University", "Institute", "College"), 0.6),
    PoiCategory("education;training_centre", 0.5, {"residential": 1.0, "commercial": 1.0},
                ("course", "tutoring", "english", "exam", "lessons"), ("Training Centre", "Tutoring School"), -0.3),
    PoiCategory("culture_media;art_gallery", 0.08, {"affluence": 1.5, "commercial": 0.8, "nightlife": 0.4},
                ("paintings", "sculpture", "modern", "curator", "opening"), ("Gallery", "Art Space"), 0.3),
    PoiCategory("culture_media;exhibition_hall", 0.06, {"commercial": 1.8},
                ("expo", "fair", "booths", "hall", "display"), ("Exhibition Hall", "Expo Centre", "Culture Palace"),
                0.6),
    PoiCategory("health;clinic", 0.5, {"residential": 1.1, "commercial": 0.6},
                ("clinic", "nurse", "waiting", "checkup", "dentist"),
                ("Clinic", "Medical Centre", "Dental Care"), -0.2),
    PoiCategory("health;pharmacy", 0.5, {"residential": 1.1, "commercial": 0.5},
                ("pharmacy", "pills", "prescription", "counter", "open"), ("Pharmacy", "Drugstore"), -0.8),
    PoiCategory("health;hospital", 0.06, {"residential": 0.8, "commercial": 0.8},
                ("hospital", "emergency", "ward", "surgery", "specialist"), ("Hospital", "People's Hospital"), 0.8),
    PoiCategory("car_service;car_repair", 0.4, {"residential": 0.5, "commercial": 0.3, "affluence": -0.8},
                ("repair", "tyres", "oil", "garage", "parts"), ("Auto Repair", "Car Care", "Tyre Shop"), -0.8),
    PoiCategory("car_service;gas_station", 0.15, {"residential": 0.3, "commercial": 0.3, "green": 0.3},
                ("petrol", "pump", "diesel", "fill", "highway"), ("Gas Station", "Petrol Station"), -1.0),
    PoiCategory("transport;parking", 0.5, {"commercial": 1.2, "residential": 0.4},
                ("garage", "spaces", "entrance", "ticket", "hourly"), ("Parking", "Car Park", "Garage"), -1.2),
    PoiCategory("transport;bus_stop", 1.0, {"residential": 1.0, "commercial": 0.8},
                ("bus", "stop", "route", "waiting", "shelter"), ("Bus Stop", "Bus Station"), -1.5),
    PoiCategory("transport;metro_station", 0.08, {"commercial": 1.8, "residential": 0.6},
                ("metro", "subway", "line", "platform", "transfer"), ("Metro Station", "Subway Station"), 0.0),
    PoiCategory("finance;bank", 0.4, {"commercial": 2.0, "affluence": 0.6},
                ("bank", "atm", "account", "counter", "queue"), ("Bank", "Savings Bank", "Credit Union"), -0.8),
    PoiCategory("finance;atm", 0.6, {"commercial": 1.6, "residential": 0.5},
                ("atm", "withdraw", "machine", "fee", "cash"), ("ATM", "Cash Point"), -2.0),
    PoiCategory("real_estate;residential_compound", 0.8, {"residential": 2.2},
                ("compound", "blocks", "residents", "courtyard", "management"),
                ("Residences", "Garden Estate", "Apartments"), -0.5),
    PoiCategory("real_estate;agency", 0.6, {"residential": 1.4, "affluence": 0.5},
                ("agent", "listing", "viewing", "lease", "deposit"), ("Real Estate", "Property Agency", "Homes"), -0.7),
    PoiCategory("company;office", 1.5, {"commercial": 2.8},
                ("tower", "lobby", "elevator", "suits", "conference"),
                ("Tower", "Office Building", "Business Centre"), -1.0),
    PoiCategory("company;factory", 0.2, {"residential": -1.0, "green": -0.8, "affluence": -1.0},
                ("factory", "warehouse", "workers", "trucks", "production"), ("Factory", "Works", "Logistics Park"),
                -1.5),
    PoiCategory("government;office", 0.2, {"commercial": 1.2},
                ("bureau", "permit", "registration", "administration", "forms"),
                ("Government Office", "District Bureau", "Service Hall"), -0.8),
    PoiCategory("government;police_station", 0.15, {"residential": 0.8, "commercial": 0.6, "nightlife": 0.5},
                ("police", "officers", "report", "patrol", "safety"), ("Police Station", "Police Post"), -1.0),
    PoiCategory("entrance;gate", 0.8, {"residential": 1.2, "commercial": 1.0},
                ("north_gate", "south_gate", "east_gate", "west_gate", "door"), ("Gate", "Entrance", "Exit"), -2.0),
    PoiCategory("nature;riverside", 0.1, {"water": 3.0, "green": 0.8},
                ("river", "shore", "embankment", "ducks", "breeze"), ("Riverside", "Waterfront", "Embankment"), 0.2),
    PoiCategory("landmark;business_district", 0.05, {"commercial": 2.5},
                ("cbd", "skyscrapers", "business", "busy", "towers"), ("Business District", "Commercial Area"), 0.0),
    PoiCategory("landmark;neighbourhood", 0.3, {"residential": 1.5},
                ("neighbourhood", "community", "lanes", "locals", "old"), ("Community", "Neighbourhood", "Village"),
                -1.0),
)

# Adjective pools tied to latents: an adjective is drawn from a pool with probability that rises with the latent.
ADJECTIVES: dict[str, tuple[str, ...]] = {
    "affluent": ("elegant", "premium", "upscale", "refined", "stylish", "exclusive"),
    "budget": ("cheap", "affordable", "simple", "basic", "crowded", "shabby"),
    "nightlife": ("lively", "noisy", "busy", "buzzing", "late", "neon"),
    "green": ("quiet", "leafy", "peaceful", "shady", "calm", "fresh"),
}
NOISE_WORDS = ("good", "nice", "place", "visit", "time", "people", "ok", "great", "recommend", "again", "friends",
               "location", "near", "bad", "really", "worth", "experience", "city", "street", "today")
NAME_PREFIXES: dict[str, tuple[str, ...]] = {
    "affluent": ("Royal", "Grand", "Imperial", "Golden", "Crown", "Prestige"),
    "budget": ("Happy", "Lucky", "Budget", "Family", "Friendly", "Good Luck"),
    "neutral": ("City", "Central", "New", "East", "West", "Sunrise", "Riverside", "Corner", "Garden", "Star"),
}


def poi_intensity(latents: pd.DataFrame, categories: tuple[PoiCategory, ...] = CATEGORIES) -> np.ndarray:
    """(regions, categories) relative intensities exp(sum_l beta_{c,l} z_l) * base_c, before land and scale."""
    z = latents[list(LATENT_NAMES)].to_numpy(dtype=np.float64)
    beta = np.array([[c.affinity.get(n, 0.0) for n in LATENT_NAMES] for c in categories])
    base = np.array([c.base for c in categories])
    return base[None, :] * np.exp(z @ beta.T)


def generate_pois(
    latents: pd.DataFrame, sampler, pois_per_region: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """The POI table (schema columns) and each POI's region index (row of `latents`)."""
    n_reg = len(latents)
    land = latents["land_fraction"].to_numpy(dtype=np.float64)
    rel = poi_intensity(latents) * land[:, None]
    scale = pois_per_region * n_reg / rel.sum()
    lam = rel * scale * rng.lognormal(-0.5 * OVERDISPERSION**2, OVERDISPERSION, rel.shape)
    counts = rng.poisson(lam)
    region_idx, cat_idx = np.nonzero(counts)
    reps = counts[region_idx, cat_idx]
    region_idx = np.repeat(region_idx, reps)
    cat_idx = np.repeat(cat_idx, reps)
    n = region_idx.size

    lon, lat, _ = sampler.sample(region_idx, rng, avoid_water=True)
    z = {name: latents[name].to_numpy(dtype=np.float64)[region_idx] for name in LATENT_NAMES}

    # Popularity: more reviews in busy, nightlife-rich and affluent places; category shift; heavy-tailed noise.
    popularity = np.array([c.popularity for c in CATEGORIES])[cat_idx]
    log_mean = 1.0 + 0.9 * z["commercial"] + 1.0 * z["nightlife"] + 0.6 * z["affluence"] + popularity
    n_comments = rng.poisson(np.exp(log_mean + rng.normal(0, 0.8, n))).astype(np.int64)

    names = _names(cat_idx, z, rng)
    text = _texts(cat_idx, z, n_comments, rng)
    width = max(6, len(str(n)))
    pois = pd.DataFrame(
        {
            "poi_id": np.strings.add("poi_", np.strings.zfill(np.arange(n).astype(str), width)).astype(object),
            "lon": lon,
            "lat": lat,
            "category": np.array([c.name for c in CATEGORIES], dtype=object)[cat_idx],
            "name": names,
            "text": text,
            "n_comments": n_comments,
        }
    )
    return pois, region_idx


def _adjective_pool(z: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Index into ADJECTIVES' pools per POI: affluent vs budget by affluence, nightlife, green, with noise."""
    weights = np.column_stack(
        [np.exp(3 * z["affluence"]), np.exp(3 * (1 - z["affluence"])), np.exp(3 * z["nightlife"]),
         np.exp(3 * z["green"])]
    )
    return _categorical(weights, rng)


def _categorical(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    cum = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cum[:, -1]
    return np.minimum((u[:, None] > cum).sum(1), weights.shape[1] - 1)


def _pick(pool: tuple[str, ...] | np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    pool = np.asarray(pool, dtype=object)
    return pool[rng.integers(0, len(pool), n)]


def _pick_ragged(pools: list[tuple[str, ...]], which: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One word per row from pools[which[row]] (vectorised over a padded table of pools)."""
    width = max(len(p) for p in pools)
    table = np.array([list(p) + [p[0]] * (width - len(p)) for p in pools], dtype=object)
    sizes = np.array([len(p) for p in pools])
    return table[which, (rng.random(which.size) * sizes[which]).astype(np.int64)]


def _names(cat_idx: np.ndarray, z: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    n = cat_idx.size
    w = np.column_stack([np.exp(2.5 * z["affluence"]), np.exp(2.5 * (1 - z["affluence"])), np.full(n, np.e**1.25)])
    style = _categorical(w, rng)
    prefix = _pick_ragged([NAME_PREFIXES["affluent"], NAME_PREFIXES["budget"], NAME_PREFIXES["neutral"]], style, rng)
    noun = _pick_ragged([c.name_nouns for c in CATEGORIES], cat_idx, rng)
    return np.strings.add(np.strings.add(prefix.astype(str), " "), noun.astype(str)).astype(object)


def _texts(
    cat_idx: np.ndarray, z: dict[str, np.ndarray], n_comments: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """'level1 level2 word word' tags, then up to MAX_REVIEWS_IN_TEXT review snippets of four words each."""
    n = cat_idx.size
    level1 = np.array([c.name.split(";")[0] for c in CATEGORIES], dtype=object)[cat_idx]
    level2 = np.array([c.name.split(";")[1] for c in CATEGORIES], dtype=object)[cat_idx]
    group_pools = [GROUP_WORDS[c.name.split(";")[0]] for c in CATEGORIES]
    cat_pools = [c.words for c in CATEGORIES]
    adj_pools = list(ADJECTIVES.values())
    columns = [level1, level2, _pick_ragged(cat_pools, cat_idx, rng), _pick_ragged(group_pools, cat_idx, rng)]
    n_reviews = np.minimum(n_comments, MAX_REVIEWS_IN_TEXT)
    for k in range(MAX_REVIEWS_IN_TEXT):
        present = n_reviews > k
        snippet = [
            _pick_ragged(adj_pools, _adjective_pool(z, rng), rng),
            _pick_ragged(cat_pools, cat_idx, rng),
            _pick_ragged(group_pools, cat_idx, rng),
            _pick(NOISE_WORDS, rng, n),
        ]
        columns.extend(np.where(present, word, "") for word in snippet)
    text = columns[0].astype(str)
    for col in columns[1:]:
        text = np.strings.add(np.strings.add(text, " "), col.astype(str))
    return pd.Series(text, dtype=object).str.replace(r" +", " ", regex=True).str.strip().to_numpy(dtype=object)
