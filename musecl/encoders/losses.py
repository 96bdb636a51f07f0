"""The trainer's losses, each returning (mean loss, number of correct samples): `triplet_loss` (margin loss on
Euclidean distances, plus Tile2Vec's optional penalty on embedding norms; MuseCL, Urban2Vec, Tile2Vec) and
`ntxent_loss` (SimCLR's NT-Xent with in-batch negatives; PG-SimCLR), and `validation_metrics`, which scores embedded
validation samples with the triplet accuracy #[d(a,p) < d(a,n)] / # whatever the training loss.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from musecl.encoders.config import TrainConfig


def triplet_loss(
    a: torch.Tensor, p: torch.Tensor, n: torch.Tensor, margin: float, norm_penalty: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, number of triplets with d(a,p) < d(a,n)); distances as torch.nn.PairwiseDistance(eps=1e-6)."""
    d_ap = F.pairwise_distance(a, p, eps=1e-6)
    d_an = F.pairwise_distance(a, n, eps=1e-6)
    loss = F.relu(d_ap - d_an + margin).mean()
    if norm_penalty:
        loss = loss + norm_penalty * (a.norm(dim=1) + p.norm(dim=1) + n.norm(dim=1)).mean()
    return loss, (d_ap < d_an).sum()


def ntxent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent over 2B views; (mean loss, number of views whose partner is their most similar view)."""
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    loss = F.cross_entropy(logits, target)
    return loss, (logits.argmax(dim=1) == target).sum() / 2


def validation_metrics(z: torch.Tensor, config: TrainConfig) -> tuple[float, float]:
    """(loss, triplet accuracy) of embedded samples z (n, 2|3, dim); pairs use the next sample's positive as negative."""
    a, p = z[:, 0], z[:, 1]
    n = z[:, 2] if z.shape[1] == 3 else torch.roll(p, 1, dims=0)
    loss, correct = triplet_loss(a, p, n, config.loss.margin, config.loss.norm_penalty)
    if config.loss.kind == "ntxent":  # NT-Xent of the pairs in training-sized batches (its value depends on batch size)
        parts = [ntxent_loss(a[i : i + config.batch_size], p[i : i + config.batch_size], config.loss.temperature)[0]
                 * len(a[i : i + config.batch_size]) for i in range(0, len(a), config.batch_size)]
        loss = torch.stack(parts).sum() / len(a)
    return float(loss), float(correct) / len(a)
