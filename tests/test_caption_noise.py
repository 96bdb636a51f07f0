"""Caption noise suppression (UrbanLN's data level) and captions for real cities: CAPTURE consensus, rank-based
refinement, caption quality against the truth, caption files, the open-data captioner and the optional local model.

The tests build their facts by hand and pass the parser, the fact families and the phrase splitter in, so they do not
depend on the caption lexicon's vocabulary."""
from __future__ import annotations

import json

import h3
import numpy as np
import pandas as pd
import pytest

from musecl.data.captions import Fact
from musecl.imagetext import quality, refine
from musecl.imagetext.consensus import (capture_score, consensus_scores, pairwise_capture, select_consensus,
                                        select_random)
from musecl.opendata.captions import (CaptionModelUnavailable, caption_with_local_model, describe_regions,
                                      read_caption_file)
from musecl.opendata.report import BuildError, ReaderReport

FAMILIES = {"tall": "height", "low": "height", "grey": "colour", "red": "colour", "along:road": "along",
            "along:river": "along"}


def family(fact: Fact) -> str:
    return FAMILIES[fact.value]


def obj(s: str) -> Fact:
    return Fact("object", s)


def attr(s: str, v: str) -> Fact:
    return Fact("attribute", s, v)


def rel(s: str, v: str) -> Fact:
    return Fact("relation", s, v)


# ---- CAPTURE score ---------------------------------------------------------------------------------------------------
def test_capture_score_by_hand():
    a = {obj("building"), obj("road"), attr("building", "tall"), attr("road", "grey"), rel("building", "along:road")}
    b = {obj("building"), obj("tree"), attr("building", "low"), attr("road", "grey")}
    # objects: 1 exact of 2 and 2 -> F1 0.5; attributes: 1 exact + tall/low soft (0.5 each side) -> P = R = 0.75;
    # relations: only `a` has one -> F1 0. Weighted 5:5:2 -> (5 * 0.5 + 5 * 0.75 + 2 * 0) / 12.
    assert capture_score(a, b, family=family) == pytest.approx(6.25 / 12)
    assert capture_score(b, a, family=family) == pytest.approx(6.25 / 12)
    # A kind neither side mentions is left out: without the relation the weights are 5:5 -> (2.5 + 3.75) / 10.
    assert capture_score(a - {rel("building", "along:road")}, b, family=family) == pytest.approx(0.625)
    assert capture_score(a, b, soft=0.0, family=family) == pytest.approx((5 * 0.5 + 5 * 0.5) / 12)
    assert capture_score(a, a, family=family) == pytest.approx(1.0)
    assert capture_score(set(), set(), family=family) == 0.0
    assert capture_score(a, set(), family=family) == 0.0
    with pytest.raises(ValueError, match="kind"):
        capture_score({Fact("colour", "x")}, a, family=family)


def test_vectorised_scores_equal_the_pairwise_function():
    rng = np.random.default_rng(3)
    universe = ([obj(s) for s in ("building", "road", "tree", "car")]
                + [attr(s, v) for s in ("building", "road") for v in ("tall", "low", "grey", "red")]
                + [rel(s, v) for s in ("tree", "car") for v in ("along:road", "along:river")])
    facts, group, slot = [], [], []
    for g in range(60):
        for c in range(4):
            if rng.random() < 0.8:
                chosen = rng.choice(len(universe), rng.integers(0, 8), replace=False)
                facts.append(frozenset(universe[i] for i in chosen))
                group.append(g)
                slot.append(c)
    scores = pairwise_capture(np.array(group), np.array(slot), facts, 4, family=family)
    where = {(g, c): i for i, (g, c) in enumerate(zip(group, slot))}
    for (g, i), a in where.items():
        for c in range(4):
            if c != i and (g, c) in where:
                assert scores[g, i, c] == pytest.approx(capture_score(facts[a], facts[where[g, c]], family=family),
                                                        abs=1e-12)
            elif c != i:
                assert np.isnan(scores[g, i, c])


# ---- consensus and random selection ----------------------------------------------------------------------------------
CAPTIONS = {
    "all four": {obj("building"), obj("road"), obj("tree"), obj("car")},
    "three": {obj("building"), obj("road"), obj("tree")},
    "invented": {obj("building"), obj("river"), obj("boat"), obj("bridge")},
}


def parse(text: str) -> frozenset[Fact]:
    return frozenset(CAPTIONS[text])


def test_consensus_drops_the_hallucinating_captioner():
    frame = pd.DataFrame({"image_id": ["i1"] * 3, "captioner": ["a_dreamer", "b_model", "c_model"],
                          "caption": ["invented", "three", "all four"]})
    chosen = select_consensus(frame, parse=parse, family=family)
    assert len(chosen) == 1
    # s(three, all four) = 6/7, s(three, invented) = 2/7, s(all four, invented) = 1/4.
    assert chosen.loc[0, "captioner"] == "b_model"
    assert chosen.loc[0, "consensus_score"] == pytest.approx((6 / 7 + 2 / 7) / 2)
    scores = consensus_scores(frame, parse=parse, family=family).set_index("captioner")["consensus_score"]
    assert scores["a_dreamer"] == pytest.approx((2 / 7 + 1 / 4) / 2)
    assert scores.idxmin() == "a_dreamer"


def test_consensus_ties_go_to_the_fixed_captioner_order_not_the_row_order():
    frame = pd.DataFrame({"image_id": ["i1", "i1", "i2", "i2", "i3"], "captioner": ["m2", "m1", "m1", "m2", "m2"],
                          "caption": ["three", "three", "all four", "all four", "invented"]})
    for rows in (frame, frame.iloc[::-1]):
        chosen = select_consensus(rows, parse=parse, family=family).set_index("image_id")
        assert chosen["captioner"].to_dict() == {"i1": "m1", "i2": "m1", "i3": "m2"}
        assert np.isnan(chosen.loc["i3", "consensus_score"])  # one candidate: nothing to agree with
    chosen = select_consensus(frame, parse=parse, family=family, order=["m2", "m1"]).set_index("image_id")
    assert chosen["captioner"].to_dict() == {"i1": "m2", "i2": "m2", "i3": "m2"}
    with pytest.raises(ValueError, match="twice"):
        select_consensus(pd.concat([frame, frame.iloc[:1]]), parse=parse, family=family)
    with pytest.raises(ValueError, match="caption"):
        select_consensus(frame.drop(columns="caption"), parse=parse)


def test_random_selection_is_seeded_and_ignores_row_order():
    frame = pd.DataFrame({"image_id": np.repeat([f"i{k}" for k in range(200)], 3),
                          "captioner": np.tile(["a", "b", "c"], 200), "caption": "three"})
    first = select_random(frame, seed=4)
    again = select_random(frame.sample(frac=1.0, random_state=2), seed=4)
    other = select_random(frame, seed=5)
    assert first["captioner"].tolist() == again["captioner"].tolist()
    assert first["captioner"].tolist() != other["captioner"].tolist()
    assert set(first["captioner"]) == {"a", "b", "c"} and first["image_id"].is_unique and len(first) == 200


# ---- refinement ------------------------------------------------------------------------------------------------------
def test_rank_scores():
    sim = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.2], [0.1, 0.3, 0.2]])
    assert rank_scores_of(sim, [0, 1, 0]) == pytest.approx([1.0, 0.5, 0.0])
    assert refine.rank_scores(np.array([[0.3]]), np.array([0])) == pytest.approx([1.0])
    with pytest.raises(ValueError, match="own"):
        refine.rank_scores(sim, np.array([0, 3, 0]))


def rank_scores_of(sim, own):
    return refine.rank_scores(np.array(sim), np.array(own))


def test_refinement_removes_the_unsupported_phrase(monkeypatch):
    monkeypatch.setattr(refine, "phrases", lambda text: [p.strip() + "." for p in text.split(".") if p.strip()])
    selected = pd.DataFrame({"image_id": ["x", "y", "z"], "captioner": "m",
                             "caption": ["Tall buildings. A river.", "A park. A lake.", "A bridge. Boats."]})
    vocabulary = ["Tall buildings.", "A river.", "A park.", "A lake.", "A bridge.", "Boats."]
    # Similarity of each phrase (row) to the images x, y, z, w (w: an image without a caption).
    table = np.array([[0.9, 0.1, 0.2, 0.05],  # tall buildings: x is the most similar -> 1.0
                      [0.0, 0.8, 0.7, 0.1],   # a river: x is the least similar -> 0.0 (removed)
                      [0.1, 0.9, 0.2, 0.3],   # a park: y best
                      [0.2, 0.7, 0.1, 0.1],   # a lake: y best
                      [0.5, 0.6, 0.1, 0.9],   # a bridge: z least -> 0.0
                      [0.3, 0.6, 0.2, 0.9]])  # boats: z least -> 0.0
    calls = []

    def scorer(texts, image_columns):
        calls.append(list(image_columns))
        return table[[vocabulary.index(t) for t in texts]]

    out = refine.refine_captions(selected, scorer)
    assert calls == [[0, 0, 1, 1, 2, 2]]  # one call; own image = the caption's row by default
    assert out["caption"].tolist() == ["Tall buildings.", "A park. A lake.", "A bridge."]
    assert out["removed_phrases"].tolist() == [["A river."], [], ["Boats."]]
    assert out["n_kept"].tolist() == [1, 2, 1] and out["n_removed"].tolist() == [1, 0, 1]
    assert out["original_caption"].tolist() == selected["caption"].tolist()
    # min_phrases = 0 lets a caption lose every phrase; precomputed scores in caption_phrases order work alike.
    phrases_table = refine.caption_phrases(selected)
    assert phrases_table["phrase"].tolist() == vocabulary
    precomputed = refine.rank_scores(table, np.array([0, 0, 1, 1, 2, 2]))
    out0 = refine.refine_captions(selected, precomputed, min_phrases=0)
    assert out0["caption"].tolist() == ["Tall buildings.", "A park. A lake.", ""]
    out2 = refine.refine_captions(selected, precomputed, min_phrases=2)
    assert out2["n_removed"].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="one score per phrase"):
        refine.refine_captions(selected, precomputed[:3])
    from collections import namedtuple

    ranked = namedtuple("PhraseScores", ["cosine", "rank"])
    as_tuple = refine.refine_captions(selected, lambda texts, cols: ranked(np.zeros(len(texts)), precomputed))
    assert as_tuple["caption"].tolist() == out["caption"].tolist()  # a result with a `rank` field: its ranks
    mapped = refine.refine_captions(selected, scorer, image_index={"x": 3, "y": 1, "z": 2})
    assert calls[-1] == [3, 3, 1, 1, 2, 2]
    assert mapped.loc[0, "caption"] == "A river."  # for image w the river phrase is better supported


# ---- caption quality against the truth -------------------------------------------------------------------------------
def test_hallucination_table(monkeypatch):
    truth = {"t1": frozenset({obj("building"), obj("road"), obj("tree"), obj("car")})}
    monkeypatch.setattr(quality.lexicon, "facts_from_text", lambda text: truth[text])

    def rates(claimed, true):
        return (len(claimed - true) / len(claimed) if claimed else np.nan, len(true - claimed) / len(true))

    monkeypatch.setattr(quality.lexicon, "truth_rates", rates)
    scene = pd.DataFrame({"image_id": ["i1"], "modality": ["rs"], "facts": ["t1"]})
    raw = pd.DataFrame({"image_id": "i1", "modality": "rs", "captioner": ["a", "b", "c"],
                        "caption": ["invented", "three", "all four"]})
    steps = {**quality.per_captioner(raw), "consensus": raw.iloc[[1]]}
    table = quality.hallucination_table(steps, scene, parse=parse)
    assert list(table.index) == ["per captioner: a", "per captioner: b", "per captioner: c", "consensus"]
    assert table.loc["per captioner: a", "hallucination_rate"] == pytest.approx(0.75)
    assert table.loc["per captioner: a", "omission_rate"] == pytest.approx(0.75)
    assert table.loc["consensus", "omission_rate"] == pytest.approx(0.25)
    assert table["captions"].tolist() == [1, 1, 1, 1] and table["facts_per_caption"].tolist() == [4, 3, 4, 3]
    with pytest.raises(ValueError, match="no true facts"):
        quality.hallucination_table({"x": raw.assign(image_id="i9")}, scene, parse=parse)


# ---- caption files and the open-data captioner -----------------------------------------------------------------------
IMAGES = {
    "rs": pd.DataFrame({"image_id": ["t1", "t2"], "region_id": ["r1", "r2"],
                        "path": ["images/remote_sensing/t1.png", "images/remote_sensing/t2.png"]}),
    "sv": pd.DataFrame({"image_id": ["s1", "s2"], "path": ["images/street_view/2023/s1.jpg",
                                                           "images/street_view/2023/s2.jpg"],
                        "lon": [0.0, 0.0], "lat": [0.0, 0.0]}),
}


def test_read_caption_file_by_path_and_by_id(tmp_path):
    file = tmp_path / "blip.csv"
    pd.DataFrame({"path": ["/data/city/images/remote_sensing/t1.png", "2023/s2.jpg", "images/street_view/2023/s1.jpg",
                           "t2.png", "2023/s2.jpg"],
                  "caption": ["Tall towers.", "A quiet street.", "Shops.", "  ", "A quiet street."]}).to_csv(
        file, index=False)
    report = ReaderReport("captions", str(file))
    captions = read_caption_file(file, IMAGES, report=report)
    assert captions[["image_id", "modality"]].values.tolist() == [["t1", "rs"], ["s2", "sv"], ["s1", "sv"]]
    assert set(captions["captioner"]) == {"blip"}  # the file's stem
    assert (report.read, report.kept, dict(report.dropped)) == (5, 3, {"empty caption": 1, "duplicate row": 1})
    assert captions.attrs["report"]["dropped"] == {"duplicate row": 1, "empty caption": 1}

    lines = tmp_path / "any.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in [{"image_id": "s1", "caption": "Trees.", "captioner": "qwen"},
                                                       {"image_id": "t2", "caption": "Roofs.", "captioner": "qwen"}]))
    captions = read_caption_file(lines, IMAGES)
    assert captions[["image_id", "modality", "captioner"]].values.tolist() == [["s1", "sv", "qwen"],
                                                                               ["t2", "rs", "qwen"]]


def test_read_caption_file_errors(tmp_path):
    unknown = tmp_path / "c.csv"
    pd.DataFrame({"image_id": ["t1", "nope"], "caption": ["a", "b"]}).to_csv(unknown, index=False)
    with pytest.raises(BuildError, match=r"c\.csv.*'image_id'.*no image.*rows \[1\].*nope"):
        read_caption_file(unknown, IMAGES)
    captions = read_caption_file(unknown, IMAGES, unknown="drop")
    assert captions["image_id"].tolist() == ["t1"] and captions.attrs["report"]["dropped"] == {"no matching image": 1}
    no_column = tmp_path / "d.csv"
    pd.DataFrame({"file": ["t1.png"], "text": ["a"]}).to_csv(no_column, index=False)
    with pytest.raises(BuildError, match=r"d\.csv.*'caption'.*'image_id' or 'path'.*\['file', 'text'\]"):
        read_caption_file(no_column, IMAGES)
    ambiguous = {"rs": IMAGES["rs"], "sv": IMAGES["sv"].assign(path=["images/street_view/t1.png", "x/s2.jpg"])}
    by_name = tmp_path / "e.csv"
    pd.DataFrame({"path": ["t1.png"], "caption": ["a"]}).to_csv(by_name, index=False)
    with pytest.raises(BuildError, match="several images"):
        read_caption_file(by_name, ambiguous)
    twice = tmp_path / "f.csv"
    pd.DataFrame({"image_id": ["t1", "t1"], "caption": ["a", "b"]}).to_csv(twice, index=False)
    with pytest.raises(BuildError, match="different captions"):
        read_caption_file(twice, IMAGES)
    with pytest.raises(BuildError, match="not found"):
        read_caption_file(tmp_path / "missing.csv", IMAGES)


def _tiny_bundle(root):
    """Two H3 regions, POIs in both (three categories in one, none in a third region), one tile each, street views."""
    from musecl.data.regions import regions_frame

    centre = h3.latlng_to_cell(52.52, 13.40, 9)
    cells = [centre, *sorted(h3.grid_ring(centre, 1))[:2]]
    regions = regions_frame(cells)
    regions.to_parquet(root / "regions.parquet", index=False)
    (root / "city.json").write_text(json.dumps({"name": "tiny", "h3_resolution": 9, "indicators": {}}))
    lat0, lon0 = h3.cell_to_latlng(cells[0])
    lat1, lon1 = h3.cell_to_latlng(cells[1])
    pois = pd.DataFrame({"poi_id": [str(i) for i in range(6)], "lon": [lon0] * 5 + [lon1], "lat": [lat0] * 5 + [lat1],
                         "category": ["food;cafe", "food;restaurant", "food;bar", "shopping;mall", "transport;bus",
                                      "education;school"], "name": ""})
    pois.to_parquet(root / "pois.parquet", index=False)
    pd.DataFrame({"image_id": ["t0", "t1", "t2"], "region_id": cells,
                  "path": [f"images/remote_sensing/t{i}.png" for i in range(3)]}).to_parquet(
        root / "remote_sensing.parquet", index=False)
    pd.DataFrame({"image_id": ["s0", "s1", "far"], "path": ["images/street_view/s0.jpg", "images/street_view/s1.jpg",
                                                            "images/street_view/far.jpg"],
                  "lon": [lon0, lon1, lon0 + 1.0], "lat": [lat0, lat1, lat0]}).to_parquet(
        root / "street_view.parquet", index=False)
    return cells


def test_describe_regions(tmp_path):
    cells = _tiny_bundle(tmp_path)
    out = describe_regions(tmp_path)
    assert out["image_id"].tolist() == ["t0", "t1", "t2", "s0", "s1"]  # the street view outside every region: none
    assert set(out["captioner"]) == {"open_data"}
    text = out.set_index("image_id")["caption"]
    assert text["t0"] == text["s0"]  # a region description: the same for every image of the region
    assert text["t0"] == ("The region has 5 points of interest (many for this city). Its points of interest are mostly "
                          "food (60%), shopping (20%) and transport (20%).")
    assert text["t1"].endswith("mostly education (100%).")
    assert text["t2"] == ("The region has 0 points of interest (few for this city). No points of interest are "
                          "recorded in the region.")
    plain = describe_regions(tmp_path, include_poi_count=False, top_categories=1,
                             region_attributes=pd.DataFrame({"land_use": ["residential"]}, index=[cells[2]]))
    plain_text = plain.set_index("image_id")["caption"]
    assert plain_text["t0"] == "Its points of interest are mostly food (60%)."
    assert plain_text["t2"].endswith("Land use: residential.")


def test_local_model_says_what_is_missing(tmp_path):
    import importlib.util

    with pytest.raises(CaptionModelUnavailable) as err:
        caption_with_local_model([tmp_path / "a.png"], tmp_path / "blip")
    message = str(err.value)
    assert "config.json" in message and str(tmp_path / "blip") in message and "read_caption_file" in message
    if importlib.util.find_spec("transformers") is None:
        assert "pip install transformers" in message
