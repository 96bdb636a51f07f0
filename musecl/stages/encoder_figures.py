"""Figures of the image-encoder stages (`encoders`, `baselines`): training curves, cached image samples, and a PCA of
the region embeddings coloured by an indicator."""
from __future__ import annotations

import numpy as np
import pandas as pd

from musecl.contract import MODALITY_NAMES


def plot_training_curves(results: dict):
    """Training/validation loss and validation triplet accuracy per epoch, one column per modality."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5.0 * len(results), 6.4), squeeze=False)
    for col, (modality, result) in enumerate(results.items()):
        h = result.history
        trained = h[h["epoch"] > 0]
        ax = axes[0, col]
        ax.plot(trained["epoch"], trained["train_loss"], marker="o", label="train")
        ax.plot(h["epoch"], h["val_loss"], marker="o", label="validation")
        ax.set_title(f"{MODALITY_NAMES.get(modality, modality)} ({result.model.spec.backbone})")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
        ax = axes[1, col]
        ax.plot(h["epoch"], h["val_accuracy"], marker="o", color="tab:green", label="validation")
        ax.plot(trained["epoch"], trained["train_accuracy"], marker=".", color="tab:gray", label="train")
        ax.axhline(0.5, color="black", lw=1, ls="--")
        ax.axvline(result.best_epoch, color="tab:red", lw=1, ls=":", label=f"best epoch {result.best_epoch}")
        ax.set_ylim(0, 1)
        ax.set_xlabel("epoch (0 = untrained)")
        ax.set_ylabel("triplet accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_cache_samples(caches: dict, n: int = 6):
    """The first `n` cached images of each modality, as the encoder sees them (after resizing)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(caches), n, figsize=(1.9 * n, 2.1 * len(caches)), squeeze=False)
    for row, (modality, cache) in zip(axes, caches.items()):
        picks = np.linspace(0, len(cache) - 1, n).astype(int)
        for ax, i in zip(row, picks):
            ax.imshow(cache.images[i])
            ax.set_title(f"{modality} {cache.index['region_id'].iloc[i][-6:]}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def embedding_pca(tables: dict[str, pd.DataFrame], indicators: pd.DataFrame, color_by: str):
    """First two principal components of each modality's region embeddings, coloured by an indicator."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(4.8 * len(tables), 4.0), squeeze=False)
    for ax, (modality, table) in zip(axes[0], tables.items()):
        x = table.to_numpy(dtype=np.float64)
        x = x - x.mean(axis=0)
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        pcs = u[:, :2] * s[:2]
        share = (s[:2] ** 2).sum() / max((s**2).sum(), 1e-12)
        colour = indicators.reindex(table.index)[color_by].to_numpy()
        points = ax.scatter(pcs[:, 0], pcs[:, 1], c=colour, s=12, cmap="viridis")
        fig.colorbar(points, ax=ax, shrink=0.8, label=color_by)
        ax.set_title(f"{MODALITY_NAMES.get(modality, modality)}: PC1-2 ({share:.0%} of variance)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig

