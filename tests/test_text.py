"""POI text: tokenizer rules, corpus building, Word2Vec determinism and eq. 7 region text embeddings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musecl.config import repo_root
from musecl.text import (
    RegionTextEmbeddings,
    Word2VecConfig,
    build_sentences,
    category_tokens,
    load_word2vec,
    nearest_words,
    region_text_embeddings,
    save_word2vec,
    stable_hash,
    throughput_table,
    tokenize,
    tokenize_pois,
    top_categories,
    train_word2vec,
)


# ---- tokenizer ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Quiet CAFE, good coffee!", ["quiet", "cafe", "good", "coffee"]),
        ("coffee-shop / take_away", ["coffee", "shop", "take", "away"]),  # hyphen, slash, underscore separate
        ("don't  stop\tl'eau", ["don't", "stop", "l'eau"]),  # inner apostrophe kept, whitespace runs separate
        ("it’s 'quoted'", ["it’s", "quoted"]),  # typographic apostrophe inside; quotes around a word dropped
        ("5★ rating: 4.5/5", ["5", "rating", "4", "5", "5"]),  # symbols and the decimal point separate
        ("Straße ÉCOLE", ["strasse", "école"]),  # Unicode case folding
        ("ＡＢＣ ﬁne", ["abc", "fine"]),  # NFKC: full-width letters, ligature
        ("हिन्दी पाठ", ["हिन्दी", "पाठ"]),  # combining marks stay inside the word
        ("北京烤鸭 好吃", ["北", "京", "烤", "鸭", "好", "吃"]),  # Han split into characters
        ("", []),
        ("... !!! ---", []),
    ],
)
def test_tokenize_rules(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_tokenize_keeps_presegmented_han_words_when_asked() -> None:
    assert tokenize("北京烤鸭 好吃", split_han=False) == ["北京烤鸭", "好吃"]
    assert tokenize("cafe北京", split_han=False) == ["cafe北京"]
    assert tokenize("cafe北京") == ["cafe", "北", "京"]


def test_tokenize_missing_values() -> None:
    assert tokenize(None) == []
    assert tokenize(float("nan")) == []


def test_category_levels_are_single_tokens() -> None:
    assert category_tokens("Food;Fast Food") == ["food", "fast_food"]
    assert category_tokens(" shopping ; ;mall ") == ["shopping", "mall"]
    assert category_tokens("美食;中餐厅") == ["美食", "中餐厅"]
    assert category_tokens(None) == []


def _pois() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "poi_id": ["a", "b", "c"],
            "category": ["food;cafe", "food;restaurant", "shopping;mall"],
            "name": ["Royal Cafe", "Lucky Kitchen", None],
            "text": ["Great coffee, cheap cake!", None, "北京 mall"],
        }
    )


def test_tokenize_pois_matches_scalar_tokenizer() -> None:
    pois = _pois()
    tokens = tokenize_pois(pois)
    assert list(tokens.columns) == ["category_tokens", "name_tokens", "text_tokens"]
    for i, row in pois.iterrows():
        assert tokens.at[i, "category_tokens"] == category_tokens(row["category"])
        assert tokens.at[i, "name_tokens"] == tokenize(row["name"])
        assert tokens.at[i, "text_tokens"] == tokenize(row["text"])
    assert tokens.at[2, "text_tokens"] == ["北", "京", "mall"]


def test_tokenize_pois_without_text_column_and_bad_input() -> None:
    tokens = tokenize_pois(_pois().drop(columns="text"))
    assert tokens["text_tokens"].map(len).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match=r"city/pois.parquet: missing column\(s\) \['name'\]"):
        tokenize_pois(_pois().drop(columns="name"), source="city/pois.parquet")


def test_build_sentences_modes() -> None:
    tokens = tokenize_pois(_pois())
    per_poi = build_sentences(tokens, "poi")
    assert per_poi[0] == ["food", "cafe", "royal", "cafe", "great", "coffee", "cheap", "cake"]
    assert per_poi[1] == ["food", "restaurant", "lucky", "kitchen"]
    fields = build_sentences(tokens, "fields")
    assert fields[:3] == [["food", "cafe"], ["royal", "cafe"], ["great", "coffee", "cheap", "cake"]]
    assert [] not in fields and len(fields) == 7  # POI b has no text, POI c no name
    assert build_sentences(tokens, "category") == [["food", "cafe"], ["food", "restaurant"], ["shopping", "mall"]]
    with pytest.raises(ValueError, match="poi_text.sentences"):
        build_sentences(tokens, "documents")


# ---- Word2Vec -------------------------------------------------------------------------------------------------------
def _corpus(n: int = 400, seed: int = 3) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    groups = {
        "food": ["coffee", "cake", "menu", "taste", "dish"],
        "nightlife": ["beer", "music", "dance", "late", "cocktail"],
        "education": ["class", "teacher", "campus", "exam", "library"],
    }
    names = list(groups)
    sentences = []
    for _ in range(n):
        g = names[rng.integers(len(names))]
        sentences.append([g] + list(rng.choice(groups[g], size=6)) + [f"noise{rng.integers(20)}"])
    return sentences


SMALL = dict(vector_size=16, epochs=3, window=3)


def test_word2vec_uses_paper_objective_by_default() -> None:
    config = Word2VecConfig()
    assert (config.vector_size, config.sg, config.hs, config.negative) == (128, 1, 1, 0)
    run = train_word2vec(_corpus(60), Word2VecConfig(**SMALL), seed=1)
    assert (run.model.sg, run.model.hs, run.model.negative, run.model.workers) == (1, 1, 0, 1)
    assert run.model.vector_size == 16
    assert run.stats["raw_words_trained"] == 3 * sum(len(s) for s in _corpus(60))
    assert run.stats["words_per_second"] > 0


def test_word2vec_deterministic_mode_reproduces_vectors() -> None:
    corpus = _corpus()
    a = train_word2vec(corpus, Word2VecConfig(**SMALL), seed=11)
    b = train_word2vec(corpus, Word2VecConfig(**SMALL), seed=11)
    c = train_word2vec(corpus, Word2VecConfig(**SMALL), seed=12)
    assert a.wv.index_to_key == b.wv.index_to_key
    assert np.array_equal(a.wv.vectors, b.wv.vectors)
    assert not np.allclose(a.wv.vectors, c.wv.vectors)


def test_word2vec_deterministic_across_python_hash_seeds(tmp_path: Path) -> None:
    """Fresh interpreters with different PYTHONHASHSEED give the same vectors (gensim's hashfxn is stable_hash)."""
    script = (
        "import sys, numpy as np\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from tests.test_text import _corpus, SMALL\n"
        "from musecl.text import Word2VecConfig, train_word2vec\n"
        "run = train_word2vec(_corpus(), Word2VecConfig(**SMALL), seed=5)\n"
        "np.save(sys.argv[1], run.wv.vectors)\n"
        "open(sys.argv[1] + '.vocab', 'w').write('\\n'.join(run.wv.index_to_key))\n"
    )
    root = str(repo_root(Path(__file__).parent))
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"v{hash_seed}.npy"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", script, str(out), root], check=True, env=env, cwd=root)
        outputs.append((np.load(out), Path(str(out) + ".vocab").read_text()))
    assert outputs[0][1] == outputs[1][1]
    assert np.array_equal(outputs[0][0], outputs[1][0])


def test_word2vec_learns_group_structure() -> None:
    run = train_word2vec(_corpus(800), Word2VecConfig(vector_size=16, epochs=10, window=3), seed=2)
    wv = run.wv
    assert wv.similarity("coffee", "cake") > wv.similarity("coffee", "campus")
    table = nearest_words(wv, ["food", "education"], topn=3)
    assert table.shape == (2, 3) and list(table.index) == ["food", "education"]
    with pytest.raises(KeyError, match="not in the Word2Vec vocabulary"):
        nearest_words(wv, ["spaceship"])


def test_fast_mode_uses_all_cores_and_config_checks() -> None:
    assert Word2VecConfig(deterministic=False).n_workers == (os.cpu_count() or 1)
    assert Word2VecConfig(deterministic=False, workers=3).n_workers == 3
    assert Word2VecConfig(workers=3).n_workers == 1
    assert Word2VecConfig().other_mode().deterministic is False
    with pytest.raises(ValueError, match="sentences"):
        Word2VecConfig(sentences="paragraphs")
    with pytest.raises(ValueError, match="unknown key"):
        Word2VecConfig.from_params({"size": 100})
    with pytest.raises(ValueError, match="min_count"):
        train_word2vec([["a"]], Word2VecConfig(min_count=5, **SMALL), seed=0)


def test_save_and_load_word2vec(tmp_path: Path) -> None:
    fast = train_word2vec(_corpus(60), Word2VecConfig(deterministic=False, workers=2, **SMALL), seed=4)
    run = train_word2vec(_corpus(60), Word2VecConfig(**SMALL), seed=4)
    save_word2vec(run, tmp_path / "word2vec")
    loaded = load_word2vec(tmp_path / "word2vec")
    assert np.array_equal(loaded.wv.vectors, run.wv.vectors)
    saved = json.loads((tmp_path / "word2vec" / "training.json").read_text())
    assert saved["config"]["vector_size"] == 16 and saved["stats"]["mode"] == "deterministic"
    table = throughput_table([run, None, fast])
    assert list(table.index) == ["deterministic", "fast"] and table.loc["fast", "workers"] == 2
    with pytest.raises(FileNotFoundError, match="dvc repro poi_text"):
        load_word2vec(tmp_path / "nothing")


def test_stable_hash_is_crc32() -> None:
    assert stable_hash("food") == stable_hash("food") == 3560450551  # zlib.crc32(b"food")


# ---- eq. 7 --------------------------------------------------------------------------------------------------------
def _keyed_vectors() -> "object":
    from gensim.models import KeyedVectors

    wv = KeyedVectors(vector_size=3)
    words = ["food", "cafe", "restaurant", "shopping", "royal", "coffee"]
    vectors = np.array(
        [[1, 0, 0], [0, 2, 0], [0, 0, 4], [1, 1, 1], [3, 3, 3], [-1, 0, 1]], dtype=np.float32
    )
    wv.add_vectors(words, vectors)
    return wv, dict(zip(words, vectors.astype(np.float64)))


def _region_fixture() -> tuple[pd.DataFrame, np.ndarray]:
    pois = pd.DataFrame(
        {
            "category": ["food;cafe", "food;restaurant", "food;cafe", "unknown;thing", "shopping;mall", "food;cafe"],
            "name": ["Royal Cafe", "x", "y", "z", "w", "v"],
            "text": ["coffee", None, None, "spaceship", None, None],
        }
    )
    #            A: 3 POIs      C: OOV only   D: 1 POI   outside every region
    regions = np.array(["A", "A", "A", "C", "D", None], dtype=object)
    return tokenize_pois(pois), regions


def test_region_text_embedding_of_hand_made_regions() -> None:
    wv, vec = _keyed_vectors()
    tokens, poi_regions = _region_fixture()
    result = region_text_embeddings(tokens, poi_regions, wv, ["A", "B", "C", "D"], source="category")
    assert isinstance(result, RegionTextEmbeddings)
    table = result.table
    assert list(table.index) == ["A", "B", "C", "D"] and table.shape == (4, 3)
    # A: unique category tokens {food, cafe, restaurant} -- "food" and "cafe" appear twice but count once
    expected_a = (vec["food"] + vec["cafe"] + vec["restaurant"]) / 3
    np.testing.assert_allclose(table.loc["A"].to_numpy(), expected_a, rtol=1e-6)
    np.testing.assert_array_equal(table.loc["B"].to_numpy(), 0.0)  # no POI
    np.testing.assert_array_equal(table.loc["C"].to_numpy(), 0.0)  # POI, but every token out of vocabulary
    # D: "mall" is out of vocabulary, so the mean is over {shopping} only
    np.testing.assert_allclose(table.loc["D"].to_numpy(), vec["shopping"], rtol=1e-6)
    cov = result.coverage
    assert cov["pois"].tolist() == [3, 0, 1, 1]
    assert cov["unique_tokens"].tolist() == [3, 0, 2, 2]
    assert cov["in_vocabulary"].tolist() == [3, 0, 0, 1]
    assert result.regions_without_pois == 1 and result.regions_without_tokens == 2
    assert result.summary().loc[0, "regions_zero_vector"] == 2


def test_region_text_embedding_from_all_tokens() -> None:
    wv, vec = _keyed_vectors()
    tokens, poi_regions = _region_fixture()
    table = region_text_embeddings(tokens, poi_regions, wv, ["A"], source="all").table
    # A adds name tokens royal, cafe (dup), x, y (OOV) and text token coffee
    expected = (vec["food"] + vec["cafe"] + vec["restaurant"] + vec["royal"] + vec["coffee"]) / 5
    np.testing.assert_allclose(table.loc["A"].to_numpy(), expected, rtol=1e-6)
    assert table.dtypes.unique().tolist() == [np.dtype(np.float32)]


def test_region_text_embedding_checks() -> None:
    wv, _ = _keyed_vectors()
    tokens, poi_regions = _region_fixture()
    with pytest.raises(ValueError, match="region_tokens"):
        region_text_embeddings(tokens, poi_regions, wv, ["A"], source="tags")
    with pytest.raises(ValueError, match="5 region ids for 6 POIs"):
        region_text_embeddings(tokens, poi_regions[:5], wv, ["A"])
    with pytest.raises(ValueError, match="duplicate region ids"):
        region_text_embeddings(tokens, poi_regions, wv, ["A", "A"])


def test_top_categories_order() -> None:
    tokens, _ = _region_fixture()
    assert top_categories(tokens, n=2) == ["food", "shopping"]  # food x4; shopping, unknown x1: alphabetical tie
    assert top_categories(tokens, n=1, level=1) == ["cafe"]
