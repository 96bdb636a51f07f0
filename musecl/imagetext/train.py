"""Training UrbanCLIP and UrbanLN on trunk tokens: the functions the method and stage glue call.

* :func:`fit_urbanclip`: CoCa with contrastive + captioning loss (weights 1 and 1), one sentence per image drawn once
  from the seed (as UrbanCLIP's dataset does), best epoch by validation contrastive loss.
* :func:`fit_urbanln`: CLIP in two phases: (a) `short`: the first sentence at `context_length` (77), plain InfoNCE,
  standing in for the pretrained CLIP that Long-CLIP and UrbanLN start from; (b) `long`: IPSI stretches the text
  positions (77 -> 248) and the model trains on the long captions with momentum self-distillation. `stretch: false`
  (stay at 77, long captions truncated) and `distill: false` (InfoNCE only) are the ablations.
  :func:`pretrain_urbanln` runs phase (a) alone, so that the ablations can share it (`fit_urbanln(pretrained=...)`;
  the same seed gives the same result as a full run).

Inputs: `tokens` (N, T, C) from :func:`musecl.imagetext.towers.image_tokens`, captions per image, and `val_mask`
(N,) bool: True = held out for validation (split by region in the glue). Returns the model (CPU, eval mode, best
epoch) and the history (one row per phase and epoch; epoch 0 = the phase's starting model; `selected` marks the
best epoch). `checkpoint_dir`: `last.pt` after every epoch, resumed when the inputs and settings match.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from musecl.encoders.devices import resolve_device
from musecl.imagetext.config import ImageTextConfig
from musecl.imagetext.distill import check_queue_size
from musecl.imagetext.ipsi import stretched_length
from musecl.imagetext.loop import (
    Data,
    Phase,
    batch_size_for,
    digest,
    generator,
    load_last,
    mark_selected,
    run_phase,
)
from musecl.imagetext.models import build_model, info_of, stretch_model
from musecl.imagetext.tokens import Vocabulary

HISTORY_COLUMNS = ["phase", "epoch", "selected", "train_loss", "train_contrastive", "train_caption", "train_distill",
                   "mu", "lr", "logit_scale", "val_contrastive", "val_caption", "val_i2t_R@1", "val_i2t_R@5",
                   "val_i2t_R@10", "val_t2i_R@1", "val_t2i_R@5", "val_t2i_R@10"]


def fit_urbanclip(tokens: torch.Tensor, captions: Sequence[Sequence[str]], val_mask: np.ndarray,
                  config: ImageTextConfig | None = None, seed: int = 0, device: str | None = None,
                  progress: bool = False,
                  checkpoint_dir: str | Path | None = None) -> tuple[torch.nn.Module, pd.DataFrame]:
    """UrbanCLIP (CoCa) on `tokens` (N, T, C) with `captions[i]` the sentences of image i (see the module)."""
    config = config or ImageTextConfig.preset("cpu", "urbanclip")
    val_mask = _check_inputs(tokens, len(captions), val_mask, "fit_urbanclip")
    counts = np.array([len(c) for c in captions], dtype=np.int64)
    if (counts == 0).any():
        raise ValueError(f"fit_urbanclip: image {int(np.flatnonzero(counts == 0)[0])} has no caption sentence "
                         f"({int((counts == 0).sum())} images without one); leave such images out of the inputs")
    draw = torch.rand(len(counts), generator=generator(seed, "sentence"), dtype=torch.float64).numpy()
    pick = np.minimum((draw * counts).astype(np.int64), counts - 1)
    chosen = [str(captions[i][pick[i]]) for i in range(len(counts))]
    vocab = Vocabulary.build(str(s) for c in captions for s in c)
    ids = vocab.encode(chosen, config.context_length)
    phases = [Phase("urbanclip", config.epochs, ids)]
    text = {"sentences": int(counts.sum()), "truncated_share": _truncated(vocab, chosen, config.context_length)}
    model = build_model("urbanclip", config, vocab, tokens.shape[1], tokens.shape[2], seed)
    model.visual.set_token_stats(tokens, np.flatnonzero(~val_mask))
    return _fit(model, tokens, phases, val_mask, seed, device, progress, checkpoint_dir, text)


def pretrain_urbanln(tokens: torch.Tensor, short_captions: Sequence[str], long_captions: Sequence[str],
                     val_mask: np.ndarray, config: ImageTextConfig | None = None, seed: int = 0,
                     device: str | None = None, progress: bool = False,
                     checkpoint_dir: str | Path | None = None) -> tuple[torch.nn.Module, pd.DataFrame]:
    """UrbanLN's phase (a) alone: CLIP on the short captions at `context_length` (vocabulary of short + long)."""
    config = config or ImageTextConfig.preset("cpu", "urbanln")
    model, phases, text = _urbanln_setup(tokens, short_captions, long_captions, val_mask, config, seed)
    return _fit(model, tokens, phases[:1], val_mask, seed, device, progress, checkpoint_dir, text)


def fit_urbanln(tokens: torch.Tensor, short_captions: Sequence[str], long_captions: Sequence[str],
                val_mask: np.ndarray, config: ImageTextConfig | None = None, seed: int = 0, device: str | None = None,
                progress: bool = False, checkpoint_dir: str | Path | None = None,
                pretrained: torch.nn.Module | None = None) -> tuple[torch.nn.Module, pd.DataFrame]:
    """UrbanLN (CLIP + IPSI + MSD): phase (a) on `short_captions` (one per image; the first sentence), phase (b) on
    `long_captions`. `pretrained`: a model from :func:`pretrain_urbanln` (same inputs, sizes and seed); phase (a) is
    then skipped (it is copied, not changed) and the history holds phase (b) only."""
    config = config or ImageTextConfig.preset("cpu", "urbanln")
    model, phases, text = _urbanln_setup(tokens, short_captions, long_captions, val_mask, config, seed, pretrained)
    if pretrained is not None:
        phases = phases[1:]
    return _fit(model, tokens, phases, val_mask, seed, device, progress, checkpoint_dir, text)


def _urbanln_setup(tokens, short_captions, long_captions, val_mask, config: ImageTextConfig, seed: int,
                   pretrained: torch.nn.Module | None = None):
    val_mask = _check_inputs(tokens, len(short_captions), val_mask, "fit_urbanln")
    if len(long_captions) != len(short_captions):
        raise ValueError(f"fit_urbanln: {len(short_captions)} short captions but {len(long_captions)} long captions "
                         f"(one of each per image)")
    short, long_ = [str(s) for s in short_captions], [str(s) for s in long_captions]
    if config.distill and config.epochs:
        n_train = int((~val_mask).sum())
        check_queue_size(config.queue_size, batch_size_for(config.batch_size, n_train), n_train)
    if pretrained is not None:
        info = info_of(pretrained)
        mismatch = [k for k in ("width", "layers", "heads", "text_width", "text_layers", "text_heads", "embed_dim",
                                "context_length", "ipsi_keep", "ipsi_ratio")
                    if getattr(info.config, k) != getattr(config, k)]
        if info.kind != "urbanln" or info.stretched or mismatch:
            raise ValueError(f"fit_urbanln: `pretrained` must be an unstretched UrbanLN model of the same sizes "
                             f"(from pretrain_urbanln); differs in {mismatch or 'kind/stretch'}")
        model, vocab = copy.deepcopy(pretrained), info.vocab
        model.imagetext_info = _with_config(info, config)
    else:
        vocab = Vocabulary.build(short + long_)
        model = build_model("urbanln", config, vocab, tokens.shape[1], tokens.shape[2], seed)
        model.visual.set_token_stats(tokens, np.flatnonzero(~val_mask))
    long_length = stretched_length(config.context_length, config.ipsi_keep, config.ipsi_ratio) if config.stretch \
        else config.context_length
    kept = config.ipsi_keep if config.stretch and config.ipsi_freeze_kept else 0
    phases = [Phase("short", config.pretrain_epochs, vocab.encode(short, config.context_length)),
              Phase("long", config.epochs, vocab.encode(long_, long_length), distill=config.distill, kept_rows=kept,
                    stretch=config.stretch)]
    text = {"short_truncated_share": _truncated(vocab, short, config.context_length),
            "long_truncated_share": _truncated(vocab, long_, long_length), "long_context_length": long_length}
    return model, phases, text


def _with_config(info, config: ImageTextConfig):
    out = copy.copy(info)
    out.config = config
    return out


def _check_inputs(tokens: torch.Tensor, n: int, val_mask: np.ndarray, who: str) -> np.ndarray:
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
        raise ValueError(f"{who}: tokens must be a (N, T, C) tensor (image_tokens), got "
                         f"{type(tokens).__name__} {tuple(getattr(tokens, 'shape', ()))}")
    val_mask = np.asarray(val_mask, dtype=bool)
    if len(tokens) != n or val_mask.shape != (n,):
        raise ValueError(f"{who}: {len(tokens)} token rows, {n} caption entries and a val_mask of shape "
                         f"{val_mask.shape}: they must describe the same N images")
    if int((~val_mask).sum()) < 2:
        raise ValueError(f"{who}: at least 2 training images are needed (val_mask holds out {int(val_mask.sum())} "
                         f"of {n})")
    return val_mask


def _truncated(vocab: Vocabulary, texts: list[str], context_length: int) -> float:
    lengths = vocab.lengths(texts)
    return float((lengths > context_length - 2).mean()) if len(lengths) else 0.0


def _fit(model: torch.nn.Module, tokens: torch.Tensor, phases: list[Phase], val_mask: np.ndarray, seed: int,
         device: str | None, progress: bool, checkpoint_dir: str | Path | None,
         text: dict) -> tuple[torch.nn.Module, pd.DataFrame]:
    """Run the phases (resuming from `last.pt`), then return the model (CPU, eval) and the history."""
    info = info_of(model)
    dev = resolve_device(device or info.config.device)
    fingerprint = {"kind": info.kind, "config": info.config.fingerprint(), "seed": int(seed),
                   "tokens": digest(tokens), "val": digest(val_mask), "phases": [p.name for p in phases],
                   "ids": [digest(p.ids) for p in phases], "init": digest(*model.state_dict().values())}
    data = Data(tokens.float().to(dev), np.flatnonzero(~val_mask), np.flatnonzero(val_mask), dev, int(seed),
                progress, Path(checkpoint_dir) if checkpoint_dir is not None else None, fingerprint)
    model.to(dev)
    history: list[dict] = []
    resume = load_last(data)
    saved_phase = [p.name for p in phases].index(resume["phase"]) if resume is not None else -1
    previous, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(dev.type == "cpu" or previous, warn_only=True)
    if info.config.threads:
        torch.set_num_threads(info.config.threads)
    try:
        for k, phase in enumerate(phases):
            if k < saved_phase:
                continue  # finished before the checkpoint was written; its rows are in the saved history
            if k == saved_phase:
                history = [dict(r) for r in resume["history"]]
                if resume["stretched"]:
                    stretch_model(model)
                if resume["finished"]:
                    model.load_state_dict(resume["best_state"])
                    mark_selected(history, phase.name, resume["best"]["epoch"])
                    continue
                model.load_state_dict(resume["model"])
                model = run_phase(model, data, phase, history, resume=resume)
                continue
            if phase.stretch:
                stretch_model(model)
            model = run_phase(model, data, phase, history)
    finally:
        torch.use_deterministic_algorithms(previous)
        torch.set_num_threads(threads)
    frame = pd.DataFrame(history).reindex(columns=HISTORY_COLUMNS)
    frame.insert(0, "model", info.kind)
    frame.attrs.update({"vocab_size": info.vocab.size, "n_train": len(data.train_rows), "n_val": len(data.val_rows),
                        "context_length": info_of(model).context_length, **text})
    return model.cpu().eval(), frame
