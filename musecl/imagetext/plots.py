"""Figures of the caption and image-text stages: caption lengths against CLIP's 77-token context, hallucination and
omission rates per captioner and selection step, training curves, the positional embeddings before and after UrbanLN's
stretching, and image-text retrieval recall."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import matplotlib.figure


def length_histogram(lengths: pd.DataFrame, limit: int = 77) -> "matplotlib.figure.Figure":
    """One panel per modality: the distribution of caption lengths in CLIP tokens per captioner (`lengths`: modality,
    captioner, tokens), with the 77-token context marked."""
    import matplotlib.pyplot as plt

    modalities = list(dict.fromkeys(lengths["modality"]))
    fig, axes = plt.subplots(1, len(modalities), figsize=(5.2 * len(modalities), 3.4), squeeze=False)
    top = float(lengths["tokens"].max())
    bins = np.linspace(0, max(top, limit) * 1.02, 40)
    for ax, modality in zip(axes[0], modalities):
        part = lengths[lengths["modality"] == modality]
        for captioner, group in part.groupby("captioner", sort=True):
            ax.hist(group["tokens"], bins=bins, histtype="step", linewidth=1.6, label=captioner)
        ax.axvline(limit, color="black", linestyle="--", linewidth=1)
        ax.text(limit, ax.get_ylim()[1] * 0.95, f" {limit}-token context", fontsize=8, va="top")
        ax.set_xlabel("caption length (CLIP tokens)")
        ax.set_ylabel("captions")
        ax.set_title({"rs": "remote sensing", "sv": "street view"}.get(modality, modality))
    axes[0][-1].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def quality_bars(quality: pd.DataFrame) -> "matplotlib.figure.Figure":
    """Hallucination and omission rate per step (rows of `musecl.imagetext.quality.hallucination_table`)."""
    import matplotlib.pyplot as plt

    steps = quality["step"].tolist()
    y = np.arange(len(steps))
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 0.42 * len(steps) + 1.2), sharey=True)
    for ax, column, title in zip(axes, ("hallucination_rate", "omission_rate"), ("hallucinated facts", "omitted facts")):
        ax.barh(y, quality[column], color=["#888888" if s.startswith("captioner") else "#1f77b4" for s in steps])
        for yi, v in zip(y, quality[column]):
            ax.text(v, yi, f" {v:.2f}", va="center", fontsize=8)
        ax.set_title(f"share of {title}")
        ax.set_xlim(0, max(1e-6, float(quality[column].max())) * 1.25)
    axes[0].set_yticks(y, steps)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return fig


def training_curves(histories: Mapping[str, pd.DataFrame], metric: str = "val_contrastive",
                    columns: int = 4) -> "matplotlib.figure.Figure":
    """Training and held-out loss per epoch of each run (columns `epoch`, `phase`, `train_loss`, `metric`), one small
    panel per run; a dotted line where a run's phase changes (UrbanLN: short -> long captions)."""
    import matplotlib.pyplot as plt

    n = len(histories)
    cols = min(columns, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, history) in zip(axes.flat, histories.items()):
        step = np.arange(len(history))
        ax.plot(step, history["train_loss"], marker=".", label="train loss")
        if metric in history:
            ax.plot(step, history[metric], marker=".", label=f"held-out {metric.split('_', 1)[-1]} loss")
        for boundary in np.flatnonzero(history["phase"].ne(history["phase"].shift()).to_numpy())[1:]:
            ax.axvline(boundary - 0.5, color="grey", linestyle=":", linewidth=1)
        if "selected" in history and history["selected"].any():
            best = int(np.flatnonzero(history["selected"].to_numpy())[-1])
            ax.axvline(best, color="black", linewidth=0.8, alpha=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch (0 = start of the phase)", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def positional_embeddings(before: np.ndarray, after: np.ndarray, keep: int = 20) -> "matplotlib.figure.Figure":
    """The text positional embedding table before (77 rows) and after stretching (248 rows): a few dimensions along
    the position, and the cosine similarity of each position to its neighbour."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    x_before = np.arange(len(before))
    ratio = (len(after) - keep) / max(1, len(before) - keep)
    x_after = np.where(np.arange(len(after)) < keep, np.arange(len(after)),
                       keep + (np.arange(len(after)) - keep) / ratio)
    for d in range(min(3, before.shape[1])):
        line, = axes[0].plot(x_before, before[:, d], "o", markersize=3, label=f"dim {d}, 77 positions")
        axes[0].plot(x_after, after[:, d], "-", color=line.get_color(), linewidth=1, alpha=0.8,
                     label=f"dim {d}, 248 positions (x on the old scale)")
    axes[0].axvline(keep - 0.5, color="grey", linestyle=":")
    axes[0].set_xlabel("original position")
    axes[0].set_title("positional embedding values")
    axes[0].legend(fontsize=7, frameon=False)

    def neighbour_cos(table: np.ndarray) -> np.ndarray:
        unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
        return (unit[1:] * unit[:-1]).sum(axis=1)

    axes[1].plot(np.arange(1, len(before)), neighbour_cos(before), label="before (77)")
    axes[1].plot(np.arange(1, len(after)), neighbour_cos(after), label="after (248)")
    axes[1].set_xlabel("position")
    axes[1].set_title("cosine similarity to the previous position")
    axes[1].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def retrieval_bars(recall: pd.DataFrame, ks: Sequence[int] = (1, 5, 10)) -> "matplotlib.figure.Figure":
    """Held-out image->text and text->image recall@k per run (`recall`: run, direction, k, recall, chance); a black
    tick on each bar marks its chance level (k / the run's held-out images)."""
    import matplotlib.pyplot as plt

    runs = list(dict.fromkeys(recall["run"]))
    width = 0.8 / len(ks)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 0.22 * len(runs) * len(ks) + 1.3), sharey=True)
    for ax, direction in zip(axes, ("image_to_text", "text_to_image")):
        part = recall[recall["direction"] == direction].set_index(["run", "k"])
        for j, k in enumerate(ks):
            y = np.arange(len(runs)) + j * width
            values = [float(part.at[(r, k), "recall"]) for r in runs]
            chance = [float(part.at[(r, k), "chance"]) for r in runs]
            ax.barh(y, values, height=width, label=f"R@{k}")
            ax.scatter(chance, y, marker="|", color="black", s=60, zorder=3,
                       label="chance" if j == len(ks) - 1 else None)
        ax.set_title(direction.replace("_", " "))
        ax.set_xlim(0, 1)
    axes[0].set_yticks(np.arange(len(runs)) + 0.4 - width / 2, runs)
    axes[0].invert_yaxis()
    axes[1].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
