"""POI text: a language-neutral tokenizer, Word2Vec (gensim) training and region text embeddings (MuseCL eq. 7).

Tokenizer rules (`tokenize`), the same for every language and with nothing to download:

1. Unicode NFKC normalisation (full-width forms, ligatures and compatibility characters become their plain forms:
   "ＡＢＣ" -> "ABC", "ﬁ" -> "fi"), then Unicode case folding ("Straße" -> "strasse", "ÉCOLE" -> "école").
2. A token is a maximal run of letters, combining marks and digits (Unicode categories L*, M*, N*), so accented and
   Indic words stay whole ("naïve", "हिन्दी"). An apostrophe (' or ’) between two such runs stays inside the token
   ("don't", "l'eau").
3. Everything else separates tokens: whitespace, punctuation, symbols, the underscore and the hyphen
   ("coffee-shop" -> "coffee", "shop"; "5★" -> "5").
4. Han ideographs (Chinese characters, also kanji) are written without spaces; without a dictionary (jieba etc.) they
   cannot be segmented into words, so with `split_han=True` (default) every Han character is its own token. Text that
   was segmented beforehand (words separated by spaces) keeps its words with `split_han=False`. Scripts such as Thai
   that do not separate words come out as one token per unspaced run.

Category strings ("level1;level2", `category_tokens`) are not word-tokenized: as in the authors' `POI_rep.py`, every
';'-separated level is ONE token (normalised by rules 1 and casefolding, surrounding whitespace stripped, inner
whitespace runs replaced by '_': "Food;Fast Food" -> ["food", "fast_food"]).

Word2Vec follows the paper: skip-gram (`sg=1`) with hierarchical softmax (`hs=1`, `negative=0`), 128 dimensions.
`deterministic=True` trains with one worker thread and the given seed (gensim's initial vectors come from that seed;
the hash function gensim keeps for seeding is set to a stable CRC-32 instead of Python's salted `hash`, so results do
not depend on `PYTHONHASHSEED` either); `deterministic=False` uses all cores, which is faster but thread scheduling
makes the vectors differ from run to r

The package: `tokens` (the tokenizer and the Word2Vec corpus), `word2vec` (training, saving, nearest words), `regions`
(eq. 7: region text vectors, and `fit_poi_text`, the whole chain from POIs to region vectors that the `poi_text` stage
and the sensitivity runs share) and `plots` (figures).
"""
from musecl.text.plots import plot_projection, project_embeddings, select_indicator
from musecl.text.regions import (
    PoiTextFit,
    RegionTextEmbeddings,
    assign_pois_to_regions,
    fit_poi_text,
    region_text_embeddings,
)
from musecl.text.tokens import (
    REGION_TOKEN_SOURCES,
    SENTENCE_MODES,
    TOKEN_FIELDS,
    build_sentences,
    category_tokens,
    corpus_summary,
    normalise,
    tokenize,
    tokenize_pois,
)
from musecl.text.word2vec import (
    MODEL_FILE,
    STATS_FILE,
    Word2VecConfig,
    Word2VecRun,
    load_word2vec,
    nearest_words,
    save_word2vec,
    stable_hash,
    throughput_table,
    top_categories,
    train_word2vec,
)

__all__ = [
    "MODEL_FILE", "REGION_TOKEN_SOURCES", "SENTENCE_MODES", "STATS_FILE", "TOKEN_FIELDS", "PoiTextFit",
    "RegionTextEmbeddings", "Word2VecConfig", "Word2VecRun", "assign_pois_to_regions", "build_sentences",
    "category_tokens", "corpus_summary", "fit_poi_text", "load_word2vec", "nearest_words", "normalise",
    "plot_projection", "project_embeddings", "region_text_embeddings", "save_word2vec", "select_indicator",
    "stable_hash", "throughput_table", "tokenize", "tokenize_pois", "top_categories", "train_word2vec",
]
