"""Caption tokens: open_clip's byte-pair tokenizer (offline) with a compact vocabulary.

CLIP's BPE has 49,408 ids; a city's captions use a few hundred of them. The text towers' token embedding and CoCa's
language-model head are as large as the vocabulary, so a 49,408-row head would make CPU training about 100x slower for
nothing. :class:`Vocabulary` keeps only the BPE ids that occur in the captions it is built from, renumbered densely:

    0 = pad, 1 = start of text, 2 = end of text, 3 = unknown (a BPE id the vocabulary has not seen), 4.. = the BPE
    ids in ascending order.

Pad is 0 (`CoCaLoss(pad_id=0)` ignores it); the text towers pool at the first end-of-text id (open_clip's `eos` pooling,
configured with :attr:`Vocabulary.eot`). :meth:`Vocabulary.encode` truncates a caption to `context_length` keeping the
start and end tokens (what open_clip's tokenizer does) and pads with 0; :meth:`Vocabulary.decode` maps back to text.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np
import torch

PAD, SOT, EOT, UNK = 0, 1, 2, 3
N_SPECIAL = 4


@lru_cache(maxsize=1)
def bpe_tokenizer():
    """open_clip's `SimpleTokenizer` (its BPE merges ship inside the package: no download)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


@lru_cache(maxsize=1 << 16)
def _bpe_one(text: str) -> tuple[int, ...]:
    return tuple(bpe_tokenizer().encode(text))


def bpe_encode(texts: Iterable[str]) -> list[tuple[int, ...]]:
    """The BPE ids of each text (open_clip's cleaning and lower-casing; no start/end tokens), memoised per text
    (a fit encodes the same captions for the vocabulary, the ids and the truncation count)."""
    return [_bpe_one(str(text)) for text in texts]


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """A compact vocabulary: `bpe_ids[i]` is the BPE id of compact id `N_SPECIAL + i` (ascending)."""

    bpe_ids: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.bpe_ids, dtype=np.int64)
        if ids.ndim != 1 or (len(ids) > 1 and np.any(np.diff(ids) <= 0)):
            raise ValueError("Vocabulary.bpe_ids must be a strictly increasing 1-d array of BPE ids")
        object.__setattr__(self, "bpe_ids", ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and np.array_equal(self.bpe_ids, other.bpe_ids)

    def __hash__(self) -> int:
        return hash(self.bpe_ids.tobytes())

    @classmethod
    def build(cls, texts: Iterable[str]) -> "Vocabulary":
        """The vocabulary of every BPE id in `texts` (their start/end tokens are the specials 1 and 2)."""
        encoded = bpe_encode(texts)
        flat = np.fromiter((i for ids in encoded for i in ids), dtype=np.int64)
        tok = bpe_tokenizer()
        flat = flat[(flat != tok.sot_token_id) & (flat != tok.eot_token_id)]
        return cls(np.unique(flat))

    @property
    def size(self) -> int:
        """Number of compact ids (specials included): the token embedding's and the LM head's rows."""
        return N_SPECIAL + len(self.bpe_ids)

    pad, sot, eot, unk = PAD, SOT, EOT, UNK

    def compact(self, bpe: np.ndarray) -> np.ndarray:
        """Compact ids of BPE ids (unknown ids -> `UNK`)."""
        bpe = np.asarray(bpe, dtype=np.int64)
        if len(self.bpe_ids) == 0:
            return np.full(bpe.shape, UNK, dtype=np.int64)
        pos = np.searchsorted(self.bpe_ids, bpe)
        found = self.bpe_ids[np.minimum(pos, len(self.bpe_ids) - 1)] == bpe
        return np.where(found, pos + N_SPECIAL, UNK)

    def encode(self, texts: Sequence[str], context_length: int = 77) -> torch.Tensor:
        """(n, context_length) int64 token ids: start, the caption's tokens (truncated to context_length - 2), end,
        then padding (0)."""
        if context_length < 3:
            raise ValueError(f"context_length must be >= 3 (start, one token, end), got {context_length}")
        encoded = bpe_encode(texts)
        body = context_length - 2
        lengths = np.array([min(len(ids), body) for ids in encoded], dtype=np.int64)
        out = np.zeros((len(encoded), context_length), dtype=np.int64)
        out[:, 0] = SOT
        if len(encoded) and lengths.max() > 0:
            flat = np.fromiter((i for ids in encoded for i in ids[:body]), dtype=np.int64, count=int(lengths.sum()))
            rows = np.repeat(np.arange(len(encoded)), lengths)
            cols = 1 + np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            out[rows, cols] = self.compact(flat)
        out[np.arange(len(encoded)), lengths + 1] = EOT
        return torch.from_numpy(out)

    def decode(self, ids: torch.Tensor | np.ndarray) -> list[str]:
        """Text of each row of compact ids, up to its end token (start, pad and end dropped; unknown -> `<unk>`)."""
        tok = bpe_tokenizer()
        rows = np.atleast_2d(np.asarray(ids, dtype=np.int64))
        texts = []
        for row in rows:
            ends = np.flatnonzero(row == EOT)
            row = row[: ends[0]] if len(ends) else row
            row = row[row >= UNK]
            pieces, run = [], []
            for i in row.tolist():  # decode runs of known ids at once (a character may span two BPE ids)
                if i >= N_SPECIAL:
                    run.append(int(self.bpe_ids[i - N_SPECIAL]))
                    continue
                pieces += [tok.decode(run), "<unk> "]
                run = []
            pieces.append(tok.decode(run))
            texts.append("".join(pieces).strip())
        return texts

    def lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Number of BPE tokens of each text (without start/end): how much a context length truncates."""
        return np.array([len(ids) for ids in bpe_encode(texts)], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"bpe_ids": self.bpe_ids.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Vocabulary":
        return cls(np.asarray(data["bpe_ids"], dtype=np.int64))
