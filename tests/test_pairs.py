"""Similarities and triplet invariants (MuseCL's similarity rule, neighbour and random rules)."""
from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest

import musecl.pairs as pairs
from musecl.pairs import (
    build_triplets,
    indicator_agreement,
    most_similar,
    poi_category_counts,
    similarity_matrix,
)

RES = 8
CENTRE = h3.latlng_to_cell(39.90, 116.40, RES)
CELLS = sorted(h3.grid_disk(CENTRE, 3))  # 37 regions
REGIONS = pd.Index(CELLS, name="region_id")


def image_table(per_region: int = 2, skip: int = 0) -> pd.DataFrame:
    """`per_region` images in every region except the first `skip` regions (they have none)."""
    rows = [(f"{r}-{k}", r) for r in CELLS[skip:] for k in range(per_region)]
    return pd.DataFrame(rows, columns=["image_id", "region_id"])


def features(seed: int = 0, k: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).poisson(5.0, size=(len(CELLS), k)).astype(float)


def test_poi_category_counts_first_level_and_full():
    lat, lon = h3.cell_to_latlng(CELLS[0])
    lat2, lon2 = h3.cell_to_latlng(CELLS[1])
    pois = pd.DataFrame({"lon": [lon, lon, lon2, 0.0], "lat": [lat, lat, lat2, 0.0],
                         "category": ["food;restaurant", "food;cafe", "shop;mall", "food;cafe"]})
    counts = poi_category_counts(pois, REGIONS, RES)
    assert list(counts.columns) == ["food", "shop"]
    assert counts.loc[CELLS[0]].tolist() == [2, 0]
    assert counts.loc[CELLS[1]].tolist() == [0, 1]
    assert counts.to_numpy().sum() == 3  # the POI at (0, 0) lies in no region
    full = poi_category_counts(pois, REGIONS, RES, level=2)
    assert list(full.columns) == ["food;cafe", "food;restaurant", "shop;mall"]


def test_similarity_formulas():
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    cos = similarity_matrix(x, "cosine")
    assert cos[0, 1] == pytest.approx(1.0) and cos[0, 2] == pytest.approx(0.0) and cos[3].max() == 0.0
    log_l2 = similarity_matrix(x, "log_l2")
    assert log_l2[0, 1] == pytest.approx(1.0 / (1.0 + abs(np.log(3) - np.log(2))))
    assert np.allclose(np.diag(log_l2), 1.0)
    assert similarity_matrix(x, "neg_l1")[0, 2] == pytest.approx(-4.0)
    assert similarity_matrix(x, "neg_l1_share")[0, 1] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="unknown similarity"):
        similarity_matrix(x, "dot")


@pytest.mark.parametrize("metric", pairs.SIMILARITY_METRICS)
def test_most_similar_matches_full_matrix_and_skips_self(metric, monkeypatch):
    x = features(1)
    sim = similarity_matrix(x, metric)
    np.fill_diagonal(sim, -np.inf)
    monkeypatch.setattr(pairs.similarity, "_CHUNK_ROWS", 5)  # several blocks
    top = most_similar(x, metric, 3, rng=np.random.default_rng(0))
    assert (top != np.arange(len(x))[:, None]).all()
    best = sim.max(axis=1)
    assert np.allclose(sim[np.arange(len(x)), top[:, 0]], best)
    got = np.take_along_axis(sim, top, axis=1)
    assert (np.diff(got, axis=1) <= 1e-12).all()  # ordered by decreasing similarity


def test_most_similar_respects_candidates_and_pads():
    x = features(2)
    allowed = np.zeros(len(x), dtype=bool)
    allowed[[3, 7]] = True
    top = most_similar(x, "cosine", 4, candidates=allowed, rng=np.random.default_rng(0))
    assert set(np.unique(top[top >= 0])) <= {3, 7}
    assert (top[:, 2:] == -1).all()
    assert top[3, 0] == 7 and top[3, 1] == -1  # region 3 cannot pick itself


def test_ties_are_broken_at_random_not_by_order():
    x = np.ones((len(CELLS), 3))  # all regions identical: every other region ties
    firsts = {int(most_similar(x, "cosine", 1, rng=np.random.default_rng(s))[0, 0]) for s in range(12)}
    assert len(firsts) > 3


def check_invariants(table: pd.DataFrame, images: pd.DataFrame) -> None:
    assert (table["positive_region"] != table["anchor_region"]).all()
    assert (table["negative_region"] != table["anchor_region"]).all()
    assert (table["negative_region"] != table["positive_region"]).all()
    region_of = images.set_index("image_id")["region_id"]
    for role in ("anchor", "positive", "negative"):
        assert (region_of.loc[table[f"{role}_image"]].to_numpy() == table[f"{role}_region"].to_numpy()).all()


def test_similarity_triplets_invariants_and_top1():
    x = features(3)
    images = image_table(2, skip=2)  # two regions without images never appear
    ts = build_triplets(images, REGIONS, np.random.default_rng(5), rule="similarity", features=x, metric="cosine",
                        top_k=1, n_train=600, n_val=150, val_fraction=0.25)
    check_invariants(ts.train, images)
    check_invariants(ts.val, images)
    used = set(ts.train[["anchor_region", "positive_region", "negative_region"]].to_numpy().ravel())
    assert not used & set(CELLS[:2])
    # the positive is the most similar *other* region that has images
    sim = similarity_matrix(x, "cosine")
    np.fill_diagonal(sim, -np.inf)
    sim[:, :2] = -np.inf
    a = REGIONS.get_indexer(ts.train["anchor_region"])
    p = REGIONS.get_indexer(ts.train["positive_region"])
    assert np.allclose(sim[a, p], sim[a].max(axis=1))
    # validation anchors are held-out regions
    assert not set(ts.val["anchor_region"]) & set(ts.train["anchor_region"])
    assert len(ts.train) == 600 and len(ts.val) == 150


def test_triplets_are_seeded():
    x = features(4)
    images = image_table(3)
    make = lambda seed: build_triplets(images, REGIONS, np.random.default_rng(seed), features=x, top_k=2, n_train=200, n_val=50)
    first, again, other = make(11), make(11), make(12)
    pd.testing.assert_frame_equal(first.train, again.train)
    pd.testing.assert_frame_equal(first.val, again.val)
    assert not first.train.equals(other.train)


def test_top_k_positives_come_from_the_top_k():
    x = features(6)
    images = image_table(1)
    ts = build_triplets(images, REGIONS, np.random.default_rng(0), features=x, metric="log_l2", top_k=3, n_train=500, n_val=20)
    a = REGIONS.get_indexer(ts.train["anchor_region"])
    p = REGIONS.get_indexer(ts.train["positive_region"])
    assert all(p_ in ts.candidates[a_] for a_, p_ in zip(a, p))
    assert len(set(zip(a, p))) > len(set(a))  # more than one positive per anchor is used


def test_neighbour_rule_and_distant_negatives():
    images = image_table(1)
    ts = build_triplets(images, REGIONS, np.random.default_rng(1), rule="neighbours", negative_min_ring=2,
                        n_train=400, n_val=50)
    check_invariants(ts.train, images)
    dist_pos = [h3.grid_distance(a, p) for a, p in zip(ts.train["anchor_region"], ts.train["positive_region"])]
    dist_neg = [h3.grid_distance(a, n) for a, n in zip(ts.train["anchor_region"], ts.train["negative_region"])]
    assert set(dist_pos) == {1}
    assert min(dist_neg) >= 2


def test_random_rule_and_union_rule():
    images = image_table(1)
    rnd = build_triplets(images, REGIONS, np.random.default_rng(2), rule="random", n_train=300, n_val=30)
    check_invariants(rnd.train, images)
    assert rnd.train["positive_region"].nunique() > 20
    x = features(7)
    union = build_triplets(images, REGIONS, np.random.default_rng(2), rule="similarity+neighbours", features=x,
                           top_k=1, n_train=300, n_val=30)
    check_invariants(union.train, images)
    a = REGIONS.get_indexer(union.train["anchor_region"])
    p = REGIONS.get_indexer(union.train["positive_region"])
    top1 = most_similar(x, "cosine", 1, rng=np.random.default_rng(0))[:, 0]
    near = [h3.grid_distance(CELLS[i], CELLS[j]) == 1 for i, j in zip(a, p)]
    assert all(n or j == top1[i] for n, i, j in zip(near, a, p))


def test_regions_without_pois_are_not_anchors_for_cosine():
    x = features(8)
    x[:5] = 0.0
    ts = build_triplets(image_table(1), REGIONS, np.random.default_rng(0), features=x, n_train=300, n_val=30)
    bad = set(CELLS[:5])
    assert not bad & set(ts.train["anchor_region"]) and not bad & set(ts.train["positive_region"])


def test_indicator_agreement():
    triplets = pd.DataFrame({"anchor_region": CELLS[:10], "positive_region": CELLS[10:20], "negative_region": CELLS[20:30]})
    values = np.random.default_rng(0).normal(size=(len(CELLS), 2))
    values[10:20] = values[:10] + 0.01  # positives share the anchors' indicators
    ind = pd.DataFrame(values, index=REGIONS, columns=["pd", "hd"])
    check = indicator_agreement(ind, triplets)
    assert list(check.index) == ["pd", "hd", "all (euclidean)"]
    assert (check["positive_closer_share"] > 0.85).all()
    assert (check["mean_diff_positive"] < check["mean_diff_random"]).all()


def test_errors_are_clear():
    with pytest.raises(ValueError, match="needs the regions' indicator features"):
        build_triplets(image_table(1), REGIONS, np.random.default_rng(0), rule="similarity")
    with pytest.raises(ValueError, match="not one of the bundle's regions"):
        build_triplets(pd.DataFrame({"image_id": ["x"], "region_id": ["nope"]}), REGIONS, np.random.default_rng(0), rule="random")
    with pytest.raises(ValueError, match="unknown positive rule"):
        build_triplets(image_table(1), REGIONS, np.random.default_rng(0), rule="nearest")


def test_stage_helpers_on_the_tiny_city(tiny_bundle):
    cfg = {"mobility": {"source": "auto"}, "poi_level": 1, "similarity": {"mobility": "log_l2", "poi": "cosine"},
           "val_fraction": 0.2,
           "modalities": {"rs": {"indicator": "poi", "n_train": 200, "n_val": 40},
                          "sv": {"indicator": "mobility", "n_train": 200, "n_val": 40}}}
    tables = pairs.region_indicator_tables(tiny_bundle, cfg)
    n = len(tiny_bundle.regions())
    assert tables["mobility"].shape == (n, 2) and tables["poi"].shape[0] == n
    sets = pairs.modality_triplets(tiny_bundle, tables, cfg, seed=3)
    again = pairs.modality_triplets(tiny_bundle, tables, cfg, seed=3)
    pd.testing.assert_frame_equal(sets["sv"].train, again["sv"].train)
    # each modality draws from its own stream: changing rs leaves sv's triplets as they were
    cfg_rs = {**cfg, "modalities": {**cfg["modalities"], "rs": {"indicator": "poi", "top_k": 3, "n_train": 50, "n_val": 10}}}
    changed = pairs.modality_triplets(tiny_bundle, tables, cfg_rs, seed=3)
    pd.testing.assert_frame_equal(sets["sv"].train, changed["sv"].train)
    # street-view images are assigned to regions by their camera position
    sv_images = set(sets["sv"].images["image_id"])
    assert set(sets["sv"].train["anchor_image"]) <= sv_images
    summary = pairs.triplet_summary(sets, cfg)
    assert summary.loc["sv", "images"] == len(sets["sv"].images) and summary.loc["rs", "train triplets"] == 200


def test_stage_summaries_and_metrics():
    poi = pd.DataFrame({"food": [2, 0, 1], "shop": [0, 0, 3]}, index=pd.Index(["a", "b", "c"], name="region_id"))
    summary = pairs.poi_summary(poi)
    assert summary.loc["POIs"].tolist() == [3, 3] and summary.loc["regions with one"].tolist() == [0.667, 0.333]
    sim = np.array([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    table = pairs.similarity_summary({"poi": sim, "mobility": -sim}, {"poi": "cosine", "mobility": "neg_l1"})
    assert list(table.index) == ["poi", "mobility"]
    assert table.loc["poi", "metric"] == "cosine" and table.loc["poi", "regions"] == 3
    assert table.loc["poi", "median over pairs"] == pytest.approx(0.4)
    check_summary = pd.DataFrame({"indicators: P(positive closer)": [0.7], "mean λ positive": [0.9],
                                  "mean λ random": [0.1]}, index=["rs"])
    metrics = pairs.pair_metrics(check_summary)
    assert metrics == {"rs": {"positive_closer_share_indicators": 0.7, "mean_similarity_positive": 0.9,
                              "mean_similarity_random": 0.1}}
    assert all(type(v) is float for v in metrics["rs"].values())  # JSON-ready


def test_pair_quality_tables(tiny_bundle, tmp_path):
    cfg = {"mobility": {"source": "auto"}, "similarity": {"mobility": "log_l2", "poi": "cosine"},
           "modalities": {"rs": {"indicator": "poi", "n_train": 120, "n_val": 30},
                          "sv": {"indicator": "mobility", "n_train": 100, "n_val": 20}}}
    tables = pairs.region_indicator_tables(tiny_bundle, cfg)
    sets = pairs.modality_triplets(tiny_bundle, tables, cfg, seed=1)
    similarities = pairs.region_similarities(tables, cfg["similarity"])
    # positive pairs keyed by the similarity that chose them
    pair_sims = pairs.positive_pair_similarities(sets, similarities, cfg)
    assert set(pair_sims) == {"poi", "mobility"} and len(pair_sims["mobility"]) == 100
    expected = pairs.similarity_of_pairs(similarities["poi"], sets["rs"].region_ids, sets["rs"].train)
    pd.testing.assert_frame_equal(pair_sims["poi"], expected)
    only_rs = {"modalities": {"rs": {"indicator": "poi"}}}
    assert set(pairs.positive_pair_similarities({"rs": sets["rs"]}, similarities, only_rs)) == {"poi"}
    # per-indicator agreement of both modalities side by side
    checks, _ = pairs.pair_checks(tiny_bundle, sets, similarities, cfg)
    side = pairs.indicator_agreement_table(checks)
    assert list(side.columns.levels[0]) == ["rs", "sv"]
    pd.testing.assert_frame_equal(side["sv"], checks["sv"])
    # invariants of the written triplet files
    pairs.write_pairs(tmp_path, tables, sets)
    written = pairs.written_triplet_checks(tmp_path, sets, cfg)
    assert list(written.index) == [("rs", "train"), ("rs", "val"), ("sv", "train"), ("sv", "val")]
    assert written.to_numpy().all()
    bigger = {"modalities": {**cfg["modalities"], "sv": {**cfg["modalities"]["sv"], "n_val": 21}}}
    assert not pairs.written_triplet_checks(tmp_path, sets, bigger).loc[("sv", "val"), "configured size"]
    with pytest.raises(FileNotFoundError, match="run the `pairs` stage"):
        pairs.written_triplet_checks(tmp_path / "missing", sets, cfg)


def test_similarity_figure_titles():
    import matplotlib

    matplotlib.use("Agg")
    sim = np.array([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    pair_sims = {"poi": pd.DataFrame({"positive": [0.6, 0.4], "random": [0.2, 0.2]})}
    fig = pairs.plot_source_similarities({"mobility": sim, "poi": sim}, pair_sims)
    assert [ax.get_title() for ax in fig.axes] == ["λ^PM (mobility)", "λ^POI (POI mix)"]
    assert len(fig.axes[0].patches) == 40 and len(fig.axes[1].patches) == 80  # positives drawn on the POI panel only


def test_several_tiles_per_region_flow_through_cache_triplets_and_region_means(tiny_bundle, tmp_path):
    """The tiny city has 3 tiles per region: the image table and cache keep them all, triplets draw any of a region's
    tiles (image-level, each from its own region), and region vectors are means over the 3."""
    from musecl.encoders.image_cache import build_image_cache, image_table
    from musecl.encoders.pixel_stats import image_features, region_pixel_stats

    images = image_table(tiny_bundle, "rs")
    regions = tiny_bundle.regions()["region_id"].astype(str).to_numpy(dtype=object)
    assert (images.groupby("region_id").size().reindex(regions) == 3).all()
    cfg = {"mobility": {"source": "auto"}, "poi_level": 1, "similarity": {"mobility": "log_l2", "poi": "cosine"},
           "val_fraction": 0.2, "modalities": {"rs": {"indicator": "poi", "n_train": 600, "n_val": 60}}}
    tables = pairs.region_indicator_tables(tiny_bundle, cfg)
    ts = pairs.modality_triplets(tiny_bundle, tables, cfg, seed=5)["rs"]
    check_invariants(ts.train, images)
    for role in ("anchor", "positive", "negative"):
        tile = ts.train[f"{role}_image"].str.rsplit("_", n=1).str[1]
        assert set(tile) == {"0", "1", "2"}
    cache = build_image_cache(images, tiny_bundle.root, tmp_path / "rs", 32, modality="rs", workers=1, progress=False)
    assert len(cache) == len(images)
    table, counts = region_pixel_stats(cache, regions)
    assert (counts == 3).all()
    features = image_features(np.asarray(cache.images))
    first = regions[0]
    mask = cache.index["region_id"].to_numpy() == first
    np.testing.assert_allclose(table.loc[first].to_numpy(), features[mask].mean(axis=0), rtol=1e-5)
