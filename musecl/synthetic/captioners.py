"""Simulated captioners: five stand-ins for the multimodal LLMs that caption urban imagery in UrbanCLIP and UrbanLN.

Each :class:`Captioner` turns an image's true facts (`musecl.synthetic.scene_facts`) into a caption in four steps,
every draw from the `rng` it is given: it leaves facts out (`omit`, and `max_groups` subjects at most), replaces
attribute values by wrong ones of the same family (`wrong`; counts `wrong_count`, to a neighbouring bin), adds
Poisson(`hallucinate`) false facts drawn from a co-occurrence prior (:data:`PRIOR`: a river where there is a park,
cars where there is a road, ...), and writes the claimed facts in its own style and register of synonyms, with generic
filler sentences (`fillers`). The caption states exactly its claimed facts (`musecl.data.captions.parse_caption`
recovers them), so its hallucination and omission rates against the truth are exact. Parameters and whom each
captioner stands for: docs/synthetic_city.md, section 7. The parameters are invented, never tuned to make a method win.
"""
from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from musecl.contract import check_modality
from musecl.data.caption_lexicon import ATTRIBUTES, BUILDING_TYPES, COUNTABLE, FAMILIES, OBJECTS, RELATIONS
from musecl.data.captions import Fact, close_facts, fact_family, implied_objects, truth_rates


@dataclass(frozen=True)
class Captioner:
    """One simulated captioner: its style, register of synonyms (positions in the lexicon's tuples) and error model."""

    name: str
    stands_for: str
    style: str  # "terse", "verbose", "listing", "cautious" or "poetic"
    register: tuple[int, ...]
    omit: float  # P(a true fact is left out)
    max_groups: int | None  # at most this many subjects described (None: all)
    wrong: float  # P(an attribute value is replaced by another value of its family)
    wrong_count: float  # the same for counts (to a neighbouring bin)
    hallucinate: float  # mean number of false facts added (Poisson), drawn from PRIOR
    fillers: tuple[int, int]  # generic sentences stating no fact: uniform integer in [low, high]


CAPTIONERS: tuple[Captioner, ...] = (  # the order is the captioner index of the random streams: never reorder
    Captioner("terse", "LLaMA-Adapter V2", "terse", (0,), 0.30, 3, 0.10, 0.30, 0.3, (0, 1)),
    Captioner("verbose", "ShareGPT4V-7B", "verbose", (0, 1, 2, 3), 0.10, None, 0.10, 0.30, 1.5, (2, 4)),
    Captioner("listing", "Qwen2.5-VL-7B", "listing", (0, 1), 0.10, None, 0.05, 0.15, 0.3, (0, 1)),
    Captioner("cautious", "DeepSeek-VL2-tiny", "cautious", (0, 1), 0.35, 6, 0.15, 0.40, 0.8, (1, 2)),
    Captioner("poetic", "InternVL3-8B", "poetic", (1, 2, 3), 0.15, None, 0.10, 0.25, 1.0, (2, 5)),
)
CAPTIONER_NAMES = tuple(c.name for c in CAPTIONERS)

SALIENCE = ("building", "water", "park", "tree", "greenery", "road", "grass", "sky", "vehicle", "person", "shop_sign",
            "sidewalk", "pool", "cloud", "lamp_post")
_OBJ, _ATTR, _REL = "object", "attribute", "relation"
# Co-occurrence prior of hallucinations: (object that must be in the image, false fact, weight); modality "" = both.
PRIOR: tuple[tuple[str, str, Fact, float], ...] = (
    ("", "tree", Fact(_OBJ, "park"), 1.5), ("", "park", Fact(_OBJ, "water"), 2.0),
    ("", "grass", Fact(_OBJ, "water"), 1.0), ("", "tree", Fact(_REL, "tree", "along:road"), 1.0),
    ("", "building", Fact(_OBJ, "pool"), 1.0), ("", "house", Fact(_OBJ, "pool"), 2.0),
    ("", "building", Fact(_OBJ, "tower"), 1.0), ("", "building", Fact(_REL, "building", "near:water"), 0.7),
    ("", "road", Fact(_OBJ, "vehicle"), 2.5), ("", "tree", Fact(_OBJ, "grass"), 1.0),
    ("rs", "road", Fact(_OBJ, "sidewalk"), 1.0), ("rs", "road", Fact(_OBJ, "person"), 0.5),
    ("rs", "building", Fact(_OBJ, "cloud"), 0.3),
    ("sv", "sidewalk", Fact(_OBJ, "person"), 2.5), ("sv", "building", Fact(_OBJ, "shop_sign"), 2.0),
    ("sv", "road", Fact(_OBJ, "lamp_post"), 1.0), ("sv", "building", Fact(_ATTR, "building", "red_roof"), 1.0),
)
_MASS = {"water", "grass", "turf", "parkland", "sky", "sky above"}
_INTRO = {"rs": ("An aerial view of", "A satellite image of", "The image shows"),
          "sv": ("A street-level view of", "A photo of", "The image shows")}
_CLAUSES = {
    "verbose": ("there {be} {np}{rel}", "the image shows {np}{rel}", "{np}{rel} can be seen",
                "in this part of the scene, there {be} {np}{rel}"),
    "cautious": ("it looks like there {be} {np}{rel}", "there may be {np}{rel}", "the image possibly shows {np}{rel}",
                 "I think I can see {np}{rel}"),
    "poetic": ("the eye is drawn to {np}{rel}", "here one finds {np}{rel}", "softly framed, one notices {np}{rel}",
               "beyond, the frame holds {np}{rel}"),
}
_FILLERS = {
    "terse": ("It is an urban scene.", "It shows a part of a city."),
    "listing": ("The image contains the following elements.",),
    "verbose": ("The overall scene conveys a sense of everyday urban life.",
                "The lighting suggests that the picture was taken during the day.",
                "The composition gives a clear impression of how the neighbourhood is laid out.",
                "The colours are natural and slightly muted.",
                "Overall, the image offers a detailed snapshot of the area.",
                "Nothing in the picture looks unusual for a city of this kind."),
    "cautious": ("The image quality makes some details hard to make out.",
                 "It is difficult to be certain about the finer details.", "Some parts of the image are unclear.",
                 "I cannot identify everything in this image with confidence."),
    "poetic": ("The city seems to breathe slowly here, caught between motion and stillness.",
               "Everything is held in a soft, even glow.",
               "It is a portrait of ordinary urban life, quiet and unhurried.",
               "Colours blend gently into one another across the frame.",
               "The scene carries the calm rhythm of a weekday afternoon.",
               "Shadows and surfaces trade places in a patient geometry."),
}
_OPENING = {"verbose": {"rs": "This is a detailed aerial photograph of an urban neighbourhood, seen from directly "
                              "overhead.",
                        "sv": "This is a detailed photograph taken at eye level in an urban neighbourhood."},
            "poetic": {"rs": "Seen from high above, the city unfolds like a map.",
                       "sv": "At eye level, the city unfolds around the viewer."}}


_ORDER = attrgetter("kind", "subject", "value")  # the facts' own order, compared as tuples (fast)


def group_key(fact: Fact) -> str:
    """The subject a fact is described with: building types with the buildings, everything else its subject."""
    return "building" if fact.kind == _OBJ and fact.subject in BUILDING_TYPES else fact.subject


def claim_facts(captioner: Captioner, truth: frozenset[Fact], modality: str, rng: np.random.Generator
                ) -> frozenset[Fact]:
    """The facts a captioner claims for an image with these true facts: omissions, wrong values, hallucinations."""
    truth_list = sorted(truth, key=_ORDER)
    omit, wrong, pick = rng.random((3, len(truth_list)))
    kept = [i for i in range(len(truth_list)) if omit[i] >= captioner.omit]
    if captioner.max_groups is not None:
        order = _group_order([truth_list[i] for i in kept], rng.random(len(SALIENCE)))[: captioner.max_groups]
        kept = [i for i in kept if group_key(truth_list[i]) in order]
    claimed = set()
    for i in kept:
        fact = truth_list[i]
        if fact.kind == _ATTR:
            family = fact_family(fact)
            values = FAMILIES[family][1]
            if family == "count" and wrong[i] < captioner.wrong_count:
                j = values.index(fact.value)
                options = [values[k] for k in (j - 1, j + 1) if 0 <= k < len(values)]
            elif family != "count" and wrong[i] < captioner.wrong:
                options = [v for v in values if v != fact.value]
            else:
                options = [fact.value]
            fact = Fact(_ATTR, fact.subject, options[min(int(pick[i] * len(options)), len(options) - 1)])
        claimed.add(fact)
    return close_facts(claimed | _hallucinations(captioner, truth, modality, rng))


def _group_order(facts: list[Fact], jitter: np.ndarray) -> list[str]:
    """The subjects of `facts`, most salient first with a random jitter (uniforms, one per SALIENCE entry, scaled to
    three places), so a captioner does not always start alike."""
    keys = {group_key(f) for f in facts}
    return sorted(keys, key=lambda k: (SALIENCE.index(k) + 3.0 * jitter[SALIENCE.index(k)], k))


def _hallucinations(captioner: Captioner, truth: frozenset[Fact], modality: str, rng: np.random.Generator
                    ) -> set[Fact]:
    """Poisson(hallucinate) false facts from the co-occurrence prior (a counted object gets a count half the time)."""
    n = int(rng.poisson(captioner.hallucinate))
    if n == 0:
        return set()
    objects = {f.subject for f in truth if f.kind == _OBJ}
    families = {(f.subject, fact_family(f)) for f in truth if f.kind == _ATTR}
    weight: dict[Fact, float] = {}  # a false fact two triggers suggest is one candidate with both weights
    for m, trigger, fact, w in PRIOR:
        if m in ("", modality) and trigger in objects and fact not in truth \
                and not (fact.kind == _ATTR and (fact.subject, fact_family(fact)) in families):
            weight[fact] = weight.get(fact, 0.0) + w
    candidates = list(weight.items())
    out: set[Fact] = set()
    if not candidates:
        return out
    # n draws without replacement, probability proportional to weight: the n largest u^(1/w) (Efraimidis-Spirakis)
    keys = rng.random(len(candidates)) ** (1.0 / np.array([w for _, w in candidates]))
    for i in np.argsort(-keys, kind="stable")[:n]:
        fact = candidates[int(i)][0]
        out.add(fact)
        if fact.kind == _OBJ and fact.subject in COUNTABLE and rng.random() < 0.5:
            out.add(Fact(_ATTR, fact.subject, FAMILIES["count"][1][int(rng.integers(3))]))
    return out


# ---- writing ---------------------------------------------------------------------------------------------------------
def render_caption(captioner: Captioner, claimed: frozenset[Fact], modality: str, rng: np.random.Generator) -> str:
    """The caption text stating exactly the claimed facts, in the captioner's style and register."""
    writer = _Writer(captioner.register, rng)
    draw = writer.random
    implied = implied_objects(claimed)  # said by the facts that imply them: "trees along the road" names the road
    stated = [f for f in sorted(claimed, key=_ORDER) if not (f.kind == _OBJ and f.subject in implied)]
    keys = _group_order(stated, [draw() for _ in SALIENCE])
    groups: dict[str, list[Fact]] = {k: [] for k in keys}
    for fact in stated:
        groups[group_key(fact)].append(fact)
    fillers = list(_FILLERS[captioner.style])
    low, high = captioner.fillers
    n_fill = min(low + int(draw() * (high - low + 1)), len(fillers))
    extra = [fillers.pop(int(draw() * len(fillers))) for _ in range(n_fill)]
    style = captioner.style
    if style == "terse":
        parts = [writer.noun_phrase(k, groups[k]) for k in keys]
        nps = [p[0] + p[2] for p in parts]
        listed = nps[0] if len(nps) == 1 else ", ".join(nps[:-1]) + " and " + nps[-1]
        body = [f"{writer.choose(_INTRO[modality])} {listed}."] if nps else []
        return " ".join(body + extra) if body or extra else "An image."
    if style == "listing":
        sentences = [writer.fact_sentence(f) for k in keys for f in groups[k]]
        return " ".join(extra + sentences) if sentences or extra else "The image contains no clear elements."
    clauses = []
    for k in keys:
        np_text, plural, rel = writer.noun_phrase(k, groups[k])
        template = writer.choose(_CLAUSES[style])
        clauses.append(template.format(np=np_text, rel=rel, be="are" if plural else "is"))
    per_sentence = {"verbose": (1, 2), "cautious": (2, 3), "poetic": (1, 3)}[style]
    sentences = []
    while clauses:
        take = per_sentence[0] + int(draw() * (per_sentence[1] - per_sentence[0] + 1))
        sentences.append(_sentence(clauses[:take]))
        clauses = clauses[take:]
    for filler in extra:  # fillers anywhere between the sentences
        sentences.insert(int(draw() * (len(sentences) + 1)), filler)
    if style in _OPENING:
        sentences.insert(0, _OPENING[style][modality])
    return " ".join(sentences) if sentences else "An image."


def _sentence(clauses: list[str]) -> str:
    text = "; ".join(clauses) + "."
    return text[0].upper() + text[1:]


class _Writer:
    """Words for facts in one register, every choice from one generator."""

    def __init__(self, register: tuple[int, ...], rng: np.random.Generator) -> None:
        self.register, self.rng = register, rng
        self.uniforms: list[float] = []

    def random(self) -> float:
        """The next uniform of the generator, drawn 64 at a time (one call instead of one per word)."""
        if not self.uniforms:
            self.uniforms = self.rng.random(64).tolist()[::-1]
        return self.uniforms.pop()

    def choose(self, options):
        return options[min(int(self.random() * len(options)), len(options) - 1)]

    def word(self, options):
        """A synonym in the captioner's register (positions past the end wrap around)."""
        return options[self.choose(self.register) % len(options)]

    def noun(self, subject: str, plural: bool) -> tuple[str, bool]:
        """(noun, grammatically plural) of an object; a mass noun is singular."""
        singular, many = self.word(OBJECTS[subject])
        if singular == many:
            return singular, False
        return (many, True) if plural else (singular, False)

    def article(self, noun: str, plural: bool) -> str:
        if plural or noun in _MASS:
            return noun
        return ("an " if noun[0] in "aeiou" else "a ") + noun

    def noun_phrase(self, key: str, facts: list[Fact]) -> tuple[str, bool, str]:
        """(noun phrase, plural, " " + relation phrase or "") of one subject's facts."""
        attrs = {fact_family(f): f.value for f in facts if f.kind == _ATTR}
        rels = [f.value for f in facts if f.kind == _REL]
        rel = "".join(" " + self.word(RELATIONS[r][1]) for r in rels)
        if key == "greenery":
            return self.word(ATTRIBUTES[attrs["greenery"]]), False, rel
        if key == "sky" and "openness" in attrs:
            return self.article(self.word(ATTRIBUTES[attrs["openness"]]), False), False, rel
        if key == "building":
            types = [f.subject for f in facts if f.kind == _OBJ and f.subject in BUILDING_TYPES] or ["building"]
            nouns = [self.noun(t, True)[0] for t in types]
            adjectives = [self.word(ATTRIBUTES[attrs[a]]) for a in ("density", "height") if a in attrs]
            text = " ".join(adjectives + [" and ".join(nouns)])
            if "roof" in attrs:
                text += " with " + self.word(ATTRIBUTES[attrs["roof"]])
            return text, True, rel
        if key in COUNTABLE:
            noun, plural = self.noun(key, True)
            words = [self.word(ATTRIBUTES[attrs[a]]) for a in ("count", "sign_style") if a in attrs]
            return " ".join(words + [noun]), plural, rel
        noun, plural = self.noun(key, self.random() < 0.5)
        return (("a view of the " + noun) if key == "sky" else self.article(noun, plural)), plural, rel

    def fact_sentence(self, fact: Fact) -> str:
        """One short sentence stating one fact (the listing style)."""
        family = fact_family(fact)
        if fact.kind == _OBJ or family in ("count", "greenery", "openness"):
            np_text, plural, _ = self.noun_phrase(group_key(fact), [fact])
            return f"There {'are' if plural else 'is'} {np_text}."
        subject, plural = self.noun(fact.subject, True)
        be = "are" if plural else "is"
        if fact.kind == _REL:
            return f"The {subject} {be} {self.word(RELATIONS[fact.value][1])}."
        if family == "roof":
            return f"The {subject} have {self.word(ATTRIBUTES[fact.value])}."
        return f"The {subject} {be} {self.word(ATTRIBUTES[fact.value])}."


def caption_image(truth: frozenset[Fact], modality: str, rng_for) -> list[tuple[str, str, float, float]]:
    """(captioner, caption, hallucination rate, omission rate) of every captioner for one image; `rng_for(i)` gives
    the generator of captioner i (the generator uses [seed, CAPTIONS, i, kind, image index])."""
    check_modality(modality, "caption_image: modality")
    rows = []
    for i, captioner in enumerate(CAPTIONERS):
        rng = rng_for(i)
        claimed = claim_facts(captioner, truth, modality, rng)
        text = render_caption(captioner, claimed, modality, rng)
        rows.append((captioner.name, text, *truth_rates(claimed, truth)))
    return rows
