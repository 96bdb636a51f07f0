"""MuseCL's attentive fusion of remote-sensing and street-view region embeddings, aligned with POI text (eqs. 8-11).

Per region i and modality m in {RS, SV} (the encoders are frozen: their region embeddings are inputs):

    h_m = tanh(e_m W + b)                 eq. 8   W (d x d, Xavier-uniform), b (d, zeros)
    s_m = h_m u                           eq. 9   u (d x 1, Xavier-uniform)
    [a_RS, a_SV] = softmax([s_RS, s_SV])
    e_image = a_RS e_RS + a_SV e_SV       eq. 10

Only W, b and u train (Adam). The alignment loss (eq. 11) is a parameter:

* `mse`: mean squared error between e_image and the region's text vector e_POI (the authors' `fusion_module.py`);
* `infonce`: contrastive over the regions of a batch, cos(e_image_i, e_POI_j) / temperature, cross-entropy in both
  directions (image -> text and text -> image) averaged (the paper's abstract and figure);
* `none`: no training; the attention keeps its seeded initialisation (the "Fusion-svrv" baseline: attention fusion
  without text). A reconstruction objective is no alternative: for a convex combination, the error to e_RS plus the
  error to e_SV is smallest at equal weights, so it would only learn the plain average ("Add-svrv" up to a factor).

The output representation is a parameter: `image` = e_image (the authors' code) or `image+text` = [e_image ; e_POI]
(the paper's figure). Unlike the authors (one region per step), training is batched: every step scores a batch of
regions at once. A region missing one image modality gets attention 1 on the other (masked softmax).

The package is split by role: `model` (the module, the losses, `FusionConfig`) and `train` (alignment of the inputs,
training, `fuse_regions`) import only torch, numpy and pandas, so fusion runs on a bare GPU machine; `stage` is the
stage's input/output, metrics and summaries; `plots` draws the figures (matplotlib imported lazily). Every name is
re-exported here.
"""
from __future__ import annotations

from musecl.contract import EMBEDDING_PREFIX, MODALITIES, REGION_ID
from musecl.fusion.model import LOSSES, OUTPUTS, AttentiveFusion, FusionConfig, alignment_loss
from musecl.fusion.plots import plot_attention, plot_training_curve
from musecl.fusion.stage import (
    STATE_FILE,
    attention_summary,
    describe_inputs,
    dvclive_curve,
    fusion_metrics,
    load_fusion_model,
    save_fusion_model,
    write_attention,
)
from musecl.fusion.train import (
    EpochCallback,
    FusionInputs,
    FusionResult,
    align_inputs,
    evaluate_loss,
    fuse_regions,
    loss_before_after,
    untrained_fusion,
)

__all__ = [
    "EMBEDDING_PREFIX", "LOSSES", "MODALITIES", "OUTPUTS", "REGION_ID", "STATE_FILE", "AttentiveFusion",
    "EpochCallback", "FusionConfig", "FusionInputs", "FusionResult", "align_inputs", "alignment_loss",
    "attention_summary", "describe_inputs", "dvclive_curve", "evaluate_loss", "fuse_regions",
    "fusion_metrics", "load_fusion_model", "loss_before_after", "plot_attention", "plot_training_curve",
    "save_fusion_model", "untrained_fusion", "variant_table",
    "write_attention", "write_variant_metrics",
]
