"""Using a trained image-text model: image and text embeddings (:func:`encode_images`, :func:`encode_texts`),
retrieval recall R@k in both directions (:func:`retrieval_recall`), and how well a phrase matches its image
(:func:`phrase_image_similarity`: the grounding scorer of the caption refinement step).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from musecl.encoders.devices import autocast_context
from musecl.imagetext.models import image_latent, image_pooled, info_of, text_latent


def _device_of(model: torch.nn.Module, device: str | torch.device | None) -> torch.device:
    if device is None:
        return next(model.parameters()).device
    from musecl.encoders.devices import resolve_device

    return resolve_device(str(device))


def _batched(model: torch.nn.Module, n: int, fn, batch_size: int, device: torch.device, precision: str) -> np.ndarray:
    was_training = model.training
    model.to(device).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            with autocast_context(device, precision):
                out.append(fn(start, min(n, start + batch_size)).float().cpu())
    model.train(was_training)
    dim = info_of(model).config.embed_dim
    return torch.cat(out).numpy() if out else np.zeros((0, dim), dtype=np.float32)


def encode_images(model: torch.nn.Module, tokens: torch.Tensor, normalize: bool = True, pooled: bool = False,
                  batch_size: int = 256, device: str | torch.device | None = None,
                  precision: str = "auto") -> np.ndarray:
    """(N, d) float32 image embeddings of trunk tokens (N, T, C): the contrastive latent (L2-normalised unless
    `normalize=False`), or with `pooled=True` the tower's pooled feature before the projection (not normalised)."""
    dev = _device_of(model, device)

    def run(a: int, b: int) -> torch.Tensor:
        x = tokens[a:b].to(dev)
        return image_pooled(model, x) if pooled else image_latent(model, x, normalize=normalize)

    return _batched(model, len(tokens), run, batch_size, dev, precision)


def encode_texts(model: torch.nn.Module, texts: Sequence[str], context_length: int | None = None,
                 batch_size: int = 256, device: str | torch.device | None = None,
                 precision: str = "auto") -> np.ndarray:
    """(n, d) float32 L2-normalised text embeddings, tokenised with the model's vocabulary at `context_length`
    (default: the model's own, 248 for a stretched UrbanLN)."""
    info = info_of(model)
    length = info.context_length if context_length is None else int(context_length)
    if length > info.context_length:
        raise ValueError(f"context_length {length} exceeds the model's {info.context_length} text positions")
    ids = info.vocab.encode(list(texts), length)
    if info.kind == "urbanclip" and length < info.context_length:  # CoCa's CLS sits after the full context
        ids = F.pad(ids, (0, info.context_length - length))
    dev = _device_of(model, device)
    return _batched(model, len(ids), lambda a, b: text_latent(model, ids[a:b].to(dev)), batch_size, dev, precision)


class PhraseScores(NamedTuple):
    """Per phrase: `cosine` similarity to its own image, and `rank` in [0, 1]: the share of the other images that
    are less similar to the phrase than its own image (ties count half; 1 = its image is the best match of all)."""

    cosine: np.ndarray
    rank: np.ndarray


def phrase_image_similarity(model: torch.nn.Module, tokens: torch.Tensor, phrases: Sequence[str],
                            image_index: np.ndarray, batch_size: int = 256, device: str | torch.device | None = None,
                            chunk: int = 1024) -> PhraseScores:
    """How well each phrase matches the image it was said about (`image_index[i]`: row of `tokens` for phrase i),
    in the model's contrastive space: cosine similarity, and its rank-normalised variant against all images."""
    image_index = np.asarray(image_index, dtype=np.int64)
    if len(image_index) != len(phrases):
        raise ValueError(f"phrase_image_similarity: {len(phrases)} phrases but {len(image_index)} image indices")
    if len(image_index) and (image_index.min() < 0 or image_index.max() >= len(tokens)):
        raise ValueError(f"phrase_image_similarity: image_index out of range for {len(tokens)} images")
    images = torch.from_numpy(encode_images(model, tokens, batch_size=batch_size, device=device))
    texts = torch.from_numpy(encode_texts(model, phrases, batch_size=batch_size, device=device))
    n = len(images)
    cosine = np.empty(len(texts), dtype=np.float32)
    rank = np.empty(len(texts), dtype=np.float32)
    for a in range(0, len(texts), chunk):
        b = min(len(texts), a + chunk)
        sims = texts[a:b] @ images.T  # (chunk, N)
        own = sims[torch.arange(b - a), torch.from_numpy(image_index[a:b])]
        below = (sims < own[:, None]).sum(1).double()
        ties = (sims == own[:, None]).sum(1).double() - 1  # the own image ties with itself
        cosine[a:b] = own.numpy()
        rank[a:b] = ((below + 0.5 * ties) / max(1, n - 1)).numpy()
    return PhraseScores(cosine, rank)


def retrieval_recall(image_emb: np.ndarray, text_emb: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Image->text and text->image recall at k of row-aligned pairs (image i <-> text i), by cosine similarity:
    `{"i2t_R@1": ..., "t2i_R@1": ..., ...}`. A pair's rank is the number of candidates strictly more similar."""
    img = F.normalize(torch.as_tensor(np.asarray(image_emb), dtype=torch.float64), dim=1)
    txt = F.normalize(torch.as_tensor(np.asarray(text_emb), dtype=torch.float64), dim=1)
    if img.shape != txt.shape:
        raise ValueError(f"retrieval_recall: image and text embeddings must be row-aligned, got {tuple(img.shape)} "
                         f"and {tuple(txt.shape)}")
    sims = img @ txt.T
    own = sims.diagonal()
    rank_i2t = (sims > own[:, None]).sum(1)
    rank_t2i = (sims > own[None, :]).sum(0)
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float((rank_i2t < k).double().mean()) if len(own) else float("nan")
        out[f"t2i_R@{k}"] = float((rank_t2i < k).double().mean()) if len(own) else float("nan")
    return out
