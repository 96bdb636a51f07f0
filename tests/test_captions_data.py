"""Captions as data: the lexicon parser, truth rates, the simulated captioners and the caption tables of a tiny city."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest

from musecl.data import schema
from musecl.data.caption_lexicon import SURFACES
from musecl.data.captions import (
    Fact,
    drop_phrases,
    fact_family,
    facts_from_text,
    facts_to_text,
    parse_caption,
    phrase_facts,
    phrases,
    truth_rates,
)
from musecl.data.validate import validate_bundle
from musecl.synthetic.captioners import CAPTIONER_NAMES, CAPTIONERS, caption_image, claim_facts, render_caption
from musecl.synthetic.generate import CAPTIONS, KIND_REMOTE_SENSING, KIND_STREET_VIEW

SEED = 7  # the seed of the session's tiny_bundle (tests/conftest.py)
KIND = {"rs": KIND_REMOTE_SENSING, "sv": KIND_STREET_VIEW}


def _truths(bundle) -> list[tuple[str, int, frozenset[Fact]]]:
    """(modality, index in its image table, true facts) of every image of the bundle."""
    facts = bundle.scene_facts()
    out = []
    for modality, table in (("rs", bundle.remote_sensing()), ("sv", bundle.street_view())):
        index = pd.Series(np.arange(len(table)), index=table["image_id"])
        rows = facts[facts["modality"] == modality]
        out += [(modality, int(index[i]), facts_from_text(t)) for i, t in zip(rows["image_id"], rows["facts"])]
    return out


# ---- the parser and the fact helpers --------------------------------------------------------------------------------
def test_parser_reads_synonyms_counts_and_relations():
    caption = ("An aerial view of densely packed high-rise apartment buildings with red-tiled roofs by the water. "
               "A couple of cars are parked; several pedestrians walk on the pavement. There is some greenery.")
    assert parse_caption(caption) == {
        Fact("object", "building"), Fact("object", "apartment_block"), Fact("attribute", "building", "dense"),
        Fact("attribute", "building", "tall"), Fact("attribute", "building", "red_roof"), Fact("object", "water"),
        Fact("relation", "building", "near:water"), Fact("object", "vehicle"), Fact("attribute", "vehicle", "few"),
        Fact("object", "person"), Fact("attribute", "person", "several"), Fact("object", "sidewalk"),
        Fact("relation", "person", "on:sidewalk"), Fact("attribute", "greenery", "patchy"),
    }
    # longest match first: a street lamp is not a road, a swimming pool one pool; hyphenated words are not split
    assert parse_caption("A street lamp beside a swimming pool, seen street-level.") == {
        Fact("object", "lamp_post"), Fact("object", "pool")}
    assert parse_caption("Nothing to see here.") == frozenset()


def test_phrases_join_back_and_drop_keeps_sentences_grammatical():
    caption = "There are houses; there may be a swimming pool. Trees line nothing; a road runs by. It is sunny."
    parts = phrases(caption)
    assert " ".join(parts) == caption and len(parts) == 5
    assert [bool(f) for _, f in phrase_facts(caption)] == [True, True, True, True, False]
    assert drop_phrases(caption, {1}) == "There are houses. Trees line nothing; a road runs by. It is sunny."
    assert drop_phrases(caption, {2}) == "There are houses; there may be a swimming pool. A road runs by. It is sunny."
    assert drop_phrases(caption, {0, 4}) == "There may be a swimming pool. Trees line nothing; a road runs by."


def test_truth_rates_fact_family_and_text_encoding_by_hand():
    truth = frozenset({Fact("object", "building"), Fact("attribute", "building", "tall"), Fact("object", "road"),
                       Fact("relation", "tree", "along:road"), Fact("object", "tree")})
    claimed = frozenset({Fact("object", "building"), Fact("attribute", "building", "low"),  # a wrong height
                         Fact("object", "road"), Fact("object", "pool")})  # a hallucinated pool
    assert truth_rates(claimed, truth) == pytest.approx((2 / 4, 3 / 5))
    assert truth_rates(truth, truth) == (0.0, 0.0)
    h, o = truth_rates(frozenset(), truth)
    assert math.isnan(h) and o == 1.0
    assert [fact_family(f) for f in sorted(claimed)] == ["height", "object", "object", "object"]
    assert fact_family(Fact("attribute", "vehicle", "many")) == "count"
    assert fact_family(Fact("relation", "tree", "along:road")) == "relation"
    assert facts_from_text(facts_to_text(truth)) == truth and facts_from_text("") == frozenset()
    with pytest.raises(ValueError, match="not a fact"):
        facts_from_text("object building")
    assert len(SURFACES) > 150  # the lexicon: every synonym of every canonical fact


# ---- the captioners on a tiny city ---------------------------------------------------------------------------------
def test_tiny_city_writes_captions_and_scene_facts(tiny_bundle):
    facts, captions = tiny_bundle.scene_facts(), tiny_bundle.captions()
    n_images = len(tiny_bundle.remote_sensing()) + len(tiny_bundle.street_view())
    assert facts is not None and captions is not None
    assert len(facts) == n_images and len(captions) == len(CAPTIONERS) * n_images
    assert list(captions.columns) == [c.name for c in schema.CAPTIONS.columns]
    assert tuple(captions["captioner"].iloc[: len(CAPTIONERS)]) == CAPTIONER_NAMES
    assert set(captions["image_id"]) == set(facts["image_id"])
    assert captions["caption"].str.len().min() > 0
    rates = captions[["hallucination_rate", "omission_rate"]].to_numpy()
    assert np.nanmin(rates) >= 0 and np.nanmax(rates) <= 1
    rs_facts = set().union(*(facts_from_text(t) for t in facts.loc[facts["modality"] == "rs", "facts"]))
    sv_facts = set().union(*(facts_from_text(t) for t in facts.loc[facts["modality"] == "sv", "facts"]))
    assert Fact("object", "vehicle") not in rs_facts and Fact("object", "cloud") not in sv_facts
    assert {Fact("object", "road"), Fact("object", "building")} <= rs_facts & sv_facts
    assert validate_bundle(tiny_bundle.root, progress=False, check_images=False).ok


def test_captions_are_deterministic_and_parse_to_exactly_the_claimed_facts(tiny_bundle):
    """Regenerating every caption from the stored true facts and the seed gives the stored table; the parser recovers
    each caption's claimed facts exactly (this validates the parser), so the stored rates are the parsed ones."""
    stored = tiny_bundle.captions()
    regenerated = []
    for modality, i, truth in _truths(tiny_bundle):
        for c, captioner in enumerate(CAPTIONERS):
            rng = np.random.default_rng([SEED, CAPTIONS, c, KIND[modality], i])
            claimed = claim_facts(captioner, truth, modality, rng)
            text = render_caption(captioner, claimed, modality, rng)
            assert parse_caption(text) == claimed, f"{captioner.name}: {text!r}"
            assert " ".join(phrases(text)) == text
            regenerated.append(text)
        rows = caption_image(truth, modality, lambda c: np.random.default_rng([SEED, CAPTIONS, c, KIND[modality], i]))
        assert [r[1] for r in rows] == regenerated[-len(CAPTIONERS):]
    assert sorted(regenerated) == sorted(stored["caption"])
    truth_of = {(m, i): t for m, i, t in _truths(tiny_bundle)}
    ids = {m: pd.Series(np.arange(len(t)), index=t["image_id"]) for m, t in
           (("rs", tiny_bundle.remote_sensing()), ("sv", tiny_bundle.street_view()))}
    for row in stored.itertuples():
        h, o = truth_rates(parse_caption(row.caption), truth_of[(row.modality, int(ids[row.modality][row.image_id]))])
        assert (h, o) == pytest.approx((row.hallucination_rate, row.omission_rate), nan_ok=True)


def test_long_captioners_write_past_clip_context(tiny_bundle):
    open_clip = pytest.importorskip("open_clip")
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    captions = tiny_bundle.captions()
    tokens = captions["caption"].map(lambda c: len(tokenizer.encode(c)) + 2)  # + start and end tokens
    mean = tokens.groupby(captions["captioner"]).mean()
    longest = tokens.groupby(captions["captioner"]).max()
    assert longest["verbose"] > 77 and longest["poetic"] > 77
    assert mean["terse"] < 40 < mean["verbose"]


def test_validator_catches_captions_of_unknown_images(tiny_bundle, tmp_path):
    root = tmp_path / "city"
    shutil.copytree(tiny_bundle.root, root)
    captions = pd.read_parquet(root / schema.CAPTIONS_FILE)
    captions.loc[3, "image_id"] = "rs_nowhere"
    captions.loc[7, "caption"] = "  "
    captions.loc[8, "hallucination_rate"] = 1.5
    captions.to_parquet(root / schema.CAPTIONS_FILE, index=False)
    report = validate_bundle(root, progress=False, check_images=False, raise_on_error=False)
    text = "\n".join(report.errors)
    assert "captions.parquet: column 'image_id': 1 row(s) refer to an image not in remote_sensing.parquet" in text
    assert "'rs_nowhere'" in text and "first at row 3" in text
    assert "captions.parquet: column 'caption': 1 row(s) are empty" in text
    assert "column 'hallucination_rate': 1 row(s) are outside [0, 1]" in text
    dropped = validate_bundle(root, bad_rows="drop", progress=False, check_images=False)
    assert dropped.dropped[(schema.CAPTIONS_FILE, "unknown image_id")] == 1
    assert len(dropped.tables["captions"]) == len(captions) - 3
