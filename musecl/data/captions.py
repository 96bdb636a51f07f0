"""Captions of a city's images as data: the facts a caption states, the factual parser that finds them, how a caption
is split into phrases, and how its facts are scored against the truth.

A caption states *facts* (:class:`Fact`): objects ("building", "road", "vehicle", ...), attributes of a subject
("tall", "red_roof", "many", ...) and relations ("along:road"). The vocabulary is the lexicon of
`musecl.data.caption_lexicon`: every phrase or synonym a captioner may write maps to one canonical fact.

The factual parser (:func:`parse_caption`) is the offline stand-in for CAPTURE's factual parser, which UrbanLN uses to
compare and filter captions (a scene-graph parser plus synonym matching). Here it is lexicon based: within each phrase
(:func:`phrases`) the lexicon's surfaces are found as whole words, longest first; an object surface gives an object
fact, an attribute surface an attribute of its family's fixed subject (height, density and roof describe the
buildings, greenery the scene, openness the sky, sign style the shop signs) and a count ("a few", "several", "many")
the next countable object of the phrase (else the previous one); a relation surface ("along the road") gives the
relation of its fixed subject. The result is *closed* (:func:`close_facts`): an attribute implies its subject, a
relation both of its objects, a house or tower a building. It reads any text, but recovers the exact facts only of
captions written with the lexicon, as the synthetic captioners write them (a test checks every captioner).

Phrases are sentences and clauses: a caption is cut after every ".", "!", "?" or ";" followed by a space, each phrase
keeping its punctuation, so ``" ".join(phrases(c)) == c`` for a caption with single spaces. The synthetic captioners
write each clause as an independent clause, so :func:`drop_phrases` can remove any of them (a refinement step removing
a hallucinated phrase) and keep the rest grammatical.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from musecl.data.caption_lexicon import (
    BUILDING_TYPES,
    COUNTABLE,
    FAMILIES,
    OBJECTS,
    RELATIONS,
    SURFACES,
    VALUE_FAMILY,
)

KINDS = ("object", "attribute", "relation")
_PHRASE_END = re.compile(r"(?<=[.;!?])\s+")
_FIELD, _SEPARATOR = "|", ";"


@dataclass(frozen=True, order=True)
class Fact:
    """One visual claim, canonicalised: `kind` is "object", "attribute" or "relation"; `subject` a canonical object
    ("building", "road", "vehicle", ...); `value` empty for an object, the canonical attribute ("tall", "red_roof",
    "many", ...) or the relation ("along:road") otherwise."""

    kind: str
    subject: str
    value: str = ""


def phrases(caption: str) -> list[str]:
    """The caption split into phrases (sentences and clauses), in order; joining them with " " gives a caption."""
    return [p for p in _PHRASE_END.split(str(caption).strip()) if p]


def drop_phrases(caption: str, drop: set[int] | list[int]) -> str:
    """The caption without the phrases at the indices `drop` (of :func:`phrases`), re-punctuated: a clause that now
    ends its sentence ends with "." and a clause that now starts a sentence is capitalised."""
    parts = phrases(caption)
    drop = set(drop)
    kept: list[str] = []
    starts_sentence = True  # does the next kept phrase start a sentence in the new caption?
    for i, part in enumerate(parts):
        ends_sentence = not part.endswith(";")
        if i in drop:
            if ends_sentence and kept and kept[-1].endswith(";"):
                kept[-1] = kept[-1][:-1] + "."
                starts_sentence = True
            continue
        if starts_sentence and part[:1].islower():
            part = part[0].upper() + part[1:]
        kept.append(part)
        starts_sentence = ends_sentence
    if kept and kept[-1].endswith(";"):
        kept[-1] = kept[-1][:-1] + "."
    return " ".join(kept)


@lru_cache(maxsize=1)
def _matcher() -> re.Pattern:
    alternatives = sorted(SURFACES, key=lambda s: (-len(s), s))
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(s) for s in alternatives) + r")(?![\w-])")


def phrase_facts(caption: str) -> list[tuple[str, frozenset[Fact]]]:
    """Each phrase of the caption with the facts it states (closed), in order."""
    return [(part, close_facts(_parse_phrase(part))) for part in phrases(caption)]


def parse_caption(caption: str) -> frozenset[Fact]:
    """The facts a caption states (the factual parser: lexicon phrases and synonyms -> canonical facts)."""
    facts: set[Fact] = set()
    for part in phrases(caption):
        facts |= _parse_phrase(part)
    return close_facts(facts)


def _parse_phrase(text: str) -> set[Fact]:
    items = [SURFACES[m.group(1)] for m in _matcher().finditer(text.lower())]
    facts: set[Fact] = set()
    for i, (kind, name) in enumerate(items):
        if kind == "object":
            facts.add(Fact("object", name))
        elif kind == "relation":
            facts.add(Fact("relation", RELATIONS[name][0], name))
        elif VALUE_FAMILY[name] != "count":
            facts.add(Fact("attribute", FAMILIES[VALUE_FAMILY[name]][0], name))
        else:
            after = [n for k, n in items[i + 1:] if k == "object" and n in COUNTABLE]
            before = [n for k, n in items[:i] if k == "object" and n in COUNTABLE]
            counted = after[0] if after else (before[-1] if before else None)
            if counted is not None:  # a count of nothing countable states nothing
                facts.add(Fact("attribute", counted, name))
    return facts


def implied_objects(facts) -> set[str]:
    """The objects the facts imply: an attribute's subject (when it is an object), both objects of a relation, the
    building of a house, apartment block or tower."""
    implied = set()
    for fact in facts:
        if fact.kind == "relation":
            implied.add(fact.subject)
            implied.add(fact.value.split(":", 1)[1])
        elif fact.kind == "attribute" and fact.subject in OBJECTS:
            implied.add(fact.subject)
        elif fact.kind == "object" and fact.subject in BUILDING_TYPES:
            implied.add("building")
    return implied


def close_facts(facts) -> frozenset[Fact]:
    """The facts plus the objects they imply (:func:`implied_objects`)."""
    facts = frozenset(facts)
    return facts | {Fact("object", name) for name in implied_objects(facts)}


def fact_family(fact: Fact) -> str:
    """The group a fact's value belongs to (e.g. "height" for tall/low/mid-rise; "count" for few/several/many), used
    for CAPTURE's soft match: two facts of the same subject and family but different values match partially."""
    if fact.kind == "object":
        return "object"
    if fact.kind == "relation":
        return "relation"
    if fact.value not in VALUE_FAMILY:
        raise ValueError(f"fact_family: unknown attribute value {fact.value!r} (known: {sorted(VALUE_FAMILY)})")
    return VALUE_FAMILY[fact.value]


def truth_rates(claimed: frozenset[Fact], truth: frozenset[Fact]) -> tuple[float, float]:
    """(hallucination rate, omission rate) of a caption's facts against the image's true facts: the share of
    claimed facts that are false (a wrong attribute value counts as false), and the share of true facts not claimed.
    NaN where the denominator is empty."""
    claimed, truth = frozenset(claimed), frozenset(truth)
    hallucination = len(claimed - truth) / len(claimed) if claimed else math.nan
    omission = len(truth - claimed) / len(truth) if truth else math.nan
    return hallucination, omission


def facts_to_text(facts: frozenset[Fact]) -> str:
    """A stable one-line encoding of a fact set (stored in scene_facts.parquet); `facts_from_text` inverts it.

    Facts in sorted order, each "kind|subject|value", joined by ";" (e.g. "attribute|building|tall;object|building|").
    """
    parts = []
    for fact in sorted(set(facts)):
        fields = (fact.kind, fact.subject, fact.value)
        if fact.kind not in KINDS or any(_FIELD in f or _SEPARATOR in f for f in fields):
            raise ValueError(f"facts_to_text: cannot encode {fact!r} (kind must be one of {KINDS}; no "
                             f"{_FIELD!r} or {_SEPARATOR!r} in a field)")
        parts.append(_FIELD.join(fields))
    return _SEPARATOR.join(parts)


def facts_from_text(text: str) -> frozenset[Fact]:
    """The fact set encoded by :func:`facts_to_text`; a ValueError names the part that is not a fact."""
    facts = set()
    for part in str(text).split(_SEPARATOR) if str(text).strip() else []:
        fields = part.strip().split(_FIELD)
        if len(fields) != 3 or fields[0] not in KINDS or not fields[1]:
            raise ValueError(f"facts_from_text: {part!r} is not a fact 'kind|subject|value' with kind one of {KINDS}")
        facts.add(Fact(*fields))
    return frozenset(facts)
