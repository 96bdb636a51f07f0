"""Fusion training: align the region tables, train the attention with Adam (unless loss `none`), fuse every region.

`fuse_regions` is the whole run (what the `fusion` stage, the fusion variants and the sensitivity stage call);
`evaluate_loss` and `loss_before_after` score a fused result afterwards. Like `musecl.fusion.model`, this module imports
only torch, numpy, pandas and `musecl.contract` (tqdm only when a progress bar is asked for), so it runs on a bare GPU
machine. Every random draw (initialisation, batch order) comes from one torch generator seeded by `FusionConfig.seed`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from musecl.contract import EMBEDDING_PREFIX, REGION_ID
from musecl.fusion.model import FusionConfig, alignment_loss, fusion_module, prepare_modalities, prepare_text

EpochCallback = Callable[[int, float], None]


@dataclass
class FusionInputs:
    """The three region tables aligned on one region order; NaN-free tensors plus the modality mask."""

    regions: pd.Index
    modalities: torch.Tensor  # (n, 2, d); zeros where missing
    mask: torch.Tensor  # (n, 2) bool
    text: torch.Tensor | None  # (n, d_text)


def align_inputs(rs: pd.DataFrame, sv: pd.DataFrame, text: pd.DataFrame | None) -> FusionInputs:
    """Align embedding tables (index region_id): the regions are those with at least one image modality, sorted.

    Errors name the table and what is wrong: different image dimensions, a text table lacking some of the regions.
    """
    if rs.shape[1] != sv.shape[1]:
        raise ValueError(
            f"remote-sensing embeddings have {rs.shape[1]} dimensions, street-view {sv.shape[1]}: the shared attention "
            "matrix W needs both modalities in the same dimension (params encoders: embedding_dim)"
        )
    regions = rs.index.union(sv.index).sort_values()
    regions = pd.Index(regions.astype(object), name=REGION_ID)
    stacked = np.stack(
        [rs.reindex(regions).to_numpy(np.float32), sv.reindex(regions).to_numpy(np.float32)], axis=1
    )
    mask = np.isfinite(stacked).all(axis=2)
    stacked = np.nan_to_num(stacked, nan=0.0)
    text_tensor = None
    if text is not None:
        missing = regions.difference(text.index)
        if len(missing):
            raise ValueError(
                f"the POI text table lacks {len(missing)} of the {len(regions)} image regions (first: "
                f"{missing[:3].tolist()}); stage poi_text writes one row per bundle region"
            )
        text_tensor = torch.tensor(text.reindex(regions).to_numpy(np.float32))
    return FusionInputs(regions, torch.tensor(stacked), torch.tensor(mask), text_tensor)


@dataclass
class FusionResult:
    """A fused representation of every region and how it was learned."""

    embeddings: pd.DataFrame  # embedding table (index region_id): e_image, or [e_image ; e_POI]
    attention: pd.DataFrame  # index region_id: alpha_rs, alpha_sv, in_loss (region used in training)
    history: pd.DataFrame  # epoch, loss (mean over the epoch's batches); empty for loss none
    state: dict[str, torch.Tensor]
    config: FusionConfig
    seconds: float  # training wall time: reported in the metrics, never saved with the parameters
    details: dict[str, Any] = field(default_factory=dict)  # region counts and dimensions (no timings: fusion.pt)


def fuse_regions(
    rs: pd.DataFrame,
    sv: pd.DataFrame,
    text: pd.DataFrame | None,
    config: FusionConfig,
    on_epoch: EpochCallback | None = None,
    progress: bool = False,
) -> FusionResult:
    """Train the attention (unless `config.loss == "none"`) and return the fused embedding of every region.

    `rs`, `sv`, `text` are embedding tables (musecl.embeddings.read_embeddings). `text` may be None only for
    loss `none` with output `image`. `on_epoch(epoch, mean_loss)` is called after every epoch (e.g. DVCLive).
    Cheap enough to call once per variant: the model has d*d + 2d parameters and each step is one batched pass.
    """
    if text is None and (config.loss != "none" or config.output != "image"):
        raise ValueError(f"fusion with loss={config.loss!r}, output={config.output!r} needs the POI text table")
    inputs = align_inputs(rs, sv, text)
    n, _, dim = inputs.modalities.shape
    if inputs.text is not None and config.loss != "none" and inputs.text.shape[1] != dim:
        raise ValueError(
            f"POI text vectors have {inputs.text.shape[1]} dimensions but image embeddings {dim}: the alignment loss "
            "compares them directly; set poi_text.word2vec.vector_size to the encoders' embedding dimension"
        )
    generator = torch.Generator().manual_seed(int(config.seed))
    model = fusion_module(config, dim, generator)
    in_loss = np.ones(n, dtype=bool)
    if inputs.text is not None and config.skip_empty_text:
        in_loss = (inputs.text != 0).any(dim=1).numpy()
    seen = FusionInputs(inputs.regions, prepare_modalities(inputs.modalities, config), inputs.mask,
                        prepare_text(inputs.text, config))  # what the attention and the loss see
    start = time.perf_counter()
    history = _train(model, seen, in_loss, config, generator, on_epoch, progress) if config.loss != "none" else []
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        fused, weights = model(seen.modalities, seen.mask)
    vectors = fused if config.output == "image" else torch.cat([fused, inputs.text], dim=1)
    attention = pd.DataFrame(
        {"alpha_rs": weights[:, 0].numpy(), "alpha_sv": weights[:, 1].numpy(), "in_loss": in_loss},
        index=inputs.regions,
    )
    details = {
        "regions": n,
        "regions_in_loss": int(in_loss.sum()),
        "regions_without_rs": int((~inputs.mask[:, 0]).sum()),
        "regions_without_sv": int((~inputs.mask[:, 1]).sum()),
        "dim": dim,
        "output_dim": int(vectors.shape[1]),
    }
    table = pd.DataFrame(vectors.numpy().astype(np.float32), index=inputs.regions,
                         columns=[f"{EMBEDDING_PREFIX}{i:03d}" for i in range(vectors.shape[1])])
    return FusionResult(
        table,
        attention,
        pd.DataFrame(history, columns=["epoch", "loss"]),
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        config,
        seconds,
        details,
    )


def _train(
    model: torch.nn.Module,
    inputs: FusionInputs,
    in_loss: np.ndarray,
    config: FusionConfig,
    generator: torch.Generator,
    on_epoch: EpochCallback | None,
    progress: bool,
) -> list[tuple[int, float]]:
    """Adam over shuffled batches of the loss regions; returns (epoch, mean batch loss) per epoch."""
    train_idx = torch.from_numpy(np.flatnonzero(in_loss))
    if len(train_idx) < (2 if config.loss == "infonce" else 1):
        raise ValueError(
            f"only {len(train_idx)} region(s) have a non-zero text vector; the {config.loss} loss needs more "
            "(check stage poi_text's coverage, or set fusion.skip_empty_text: false)"
        )
    batch = len(train_idx) if config.batch_size is None else min(int(config.batch_size), len(train_idx))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    history = []
    epochs: Any = range(int(config.epochs))
    if progress:  # tqdm only when asked: it is not among the bare-GPU-machine packages
        from tqdm import tqdm

        epochs = tqdm(epochs, desc="fusion")
    for epoch in epochs:
        order = train_idx[torch.randperm(len(train_idx), generator=generator)]
        total, count = 0.0, 0
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            if config.loss == "infonce" and len(idx) < 2:
                continue  # one region has no negative to contrast with
            fused, _ = model(inputs.modalities[idx], inputs.mask[idx])
            loss = alignment_loss(fused, inputs.text[idx], config.loss, config.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        mean = total / max(count, 1)
        history.append((epoch, mean))
        if on_epoch is not None:
            on_epoch(epoch, mean)
    return history


def untrained_fusion(rs: pd.DataFrame, sv: pd.DataFrame, text: pd.DataFrame | None,
                     config: FusionConfig) -> FusionResult:
    """The fusion of `config` before training: loss `none` with the same seed (so the same initial attention) and the
    same output; the baseline `loss_before_after` compares a trained fusion with."""
    return fuse_regions(rs, sv, text, FusionConfig(loss="none", output=config.output, seed=config.seed,
                                                   attention=config.attention,
                                                   normalize_inputs=config.normalize_inputs))


def evaluate_loss(result: FusionResult, rs: pd.DataFrame, sv: pd.DataFrame, text: pd.DataFrame, loss: str,
                  temperature: float = 0.5) -> float:
    """The alignment loss of a trained (or untrained) fusion over all its loss regions in one batch."""
    inputs = align_inputs(rs, sv, text)
    model = fusion_module(result.config, inputs.modalities.shape[2])
    model.load_state_dict(result.state)
    idx = torch.tensor(result.attention["in_loss"].to_numpy(bool))
    modalities, text_seen = prepare_modalities(inputs.modalities, result.config), prepare_text(inputs.text, result.config)
    with torch.no_grad():
        fused, _ = model(modalities[idx], inputs.mask[idx])
        return float(alignment_loss(fused, text_seen[idx], loss, temperature))


def loss_before_after(untrained: FusionResult, trained: FusionResult, rs: pd.DataFrame, sv: pd.DataFrame,
                      text: pd.DataFrame, temperature: float = 0.5) -> pd.DataFrame:
    """Both alignment losses (mse, infonce over all training regions) for an untrained and a trained fusion."""
    rows = {}
    for loss in ("mse", "infonce"):
        rows[loss] = {
            "untrained": evaluate_loss(untrained, rs, sv, text, loss, temperature),
            "trained": evaluate_loss(trained, rs, sv, text, loss, temperature),
        }
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("loss")
    table["change"] = table["trained"] - table["untrained"]
    return table
