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
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

if TYPE_CHECKING:
    import matplotlib.figure

    from musecl.data import CityBundle

# Same values as musecl.data.schema.REGION_ID and musecl.embeddings' column names (tests check it), not imported: they
# would pull in geopandas and h3, and this module must load on a bare GPU machine (torch, numpy, pandas only).
REGION_ID = "region_id"
EMBEDDING_PREFIX = "e"
LOSSES = ("mse", "infonce", "none")
OUTPUTS = ("image", "image+text")
MODALITIES = ("rs", "sv")
STATE_FILE = "fusion.pt"
EpochCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class FusionConfig:
    """Fusion training settings (params.yaml `fusion`)."""

    loss: str = "mse"
    output: str = "image"
    temperature: float = 0.5  # infonce only
    epochs: int = 50
    lr: float = 1e-3
    batch_size: int | None = 64  # None = all regions in one batch
    skip_empty_text: bool = True  # leave regions whose text vector is all zeros out of the loss
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"fusion.loss is {self.loss!r}; expected one of {LOSSES}")
        if self.output not in OUTPUTS:
            raise ValueError(f"fusion.output is {self.output!r}; expected one of {OUTPUTS}")
        if not self.temperature > 0:
            raise ValueError(f"fusion.temperature must be > 0, got {self.temperature!r}")
        if int(self.epochs) < 0:
            raise ValueError(f"fusion.epochs must be >= 0, got {self.epochs!r}")
        if not self.lr > 0:
            raise ValueError(f"fusion.lr must be > 0, got {self.lr!r}")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError(f"fusion.batch_size must be >= 1 or null, got {self.batch_size!r}")

    @classmethod
    def from_params(cls, section: Mapping[str, Any], seed: int) -> "FusionConfig":
        """Build from the params.yaml `fusion` section (keys other than the config's fields are ignored)."""
        known = {f.name for f in fields(cls)} - {"seed"}
        values = {k: v for k, v in dict(section).items() if k in known}
        return cls(**values, seed=int(seed))


class AttentiveFusion(nn.Module):
    """Eqs. 8-10 for a batch of regions: inputs (n, 2, d) with a (n, 2) availability mask."""

    def __init__(self, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(dim, dim))
        self.b = nn.Parameter(torch.zeros(dim))
        self.u = nn.Parameter(torch.empty(dim, 1))
        nn.init.xavier_uniform_(self.W, generator=generator)
        nn.init.xavier_uniform_(self.u, generator=generator)

    def scores(self, modalities: torch.Tensor) -> torch.Tensor:
        """s_m = u . tanh(e_m W + b), shape (n, 2)."""
        return (torch.tanh(modalities @ self.W + self.b) @ self.u).squeeze(-1)

    def forward(self, modalities: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused vectors (n, d) and attention weights (n, 2); a False in `mask` gives that modality weight 0."""
        scores = self.scores(modalities)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        fused = (weights.unsqueeze(-1) * modalities).sum(dim=1)
        return fused, weights


def alignment_loss(fused: torch.Tensor, text: torch.Tensor, loss: str, temperature: float = 0.5) -> torch.Tensor:
    """Eq. 11: `mse` (mean over regions and dimensions) or symmetric `infonce` over the rows of the batch."""
    if loss == "mse":
        return torch.mean((fused - text) ** 2)
    if loss == "infonce":
        logits = nn.functional.normalize(fused, dim=1) @ nn.functional.normalize(text, dim=1).T / temperature
        target = torch.arange(fused.shape[0], device=fused.device)
        return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target))
    raise ValueError(f"no alignment loss {loss!r} (expected 'mse' or 'infonce')")


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
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


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
    model = AttentiveFusion(dim, generator)
    in_loss = np.ones(n, dtype=bool)
    if inputs.text is not None and config.skip_empty_text:
        in_loss = (inputs.text != 0).any(dim=1).numpy()
    start = time.perf_counter()
    history = _train(model, inputs, in_loss, config, generator, on_epoch, progress) if config.loss != "none" else []
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        fused, weights = model(inputs.modalities, inputs.mask)
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
    model: AttentiveFusion,
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


def evaluate_loss(result: FusionResult, rs: pd.DataFrame, sv: pd.DataFrame, text: pd.DataFrame, loss: str,
                  temperature: float = 0.5) -> float:
    """The alignment loss of a trained (or untrained) fusion over all its loss regions in one batch."""
    inputs = align_inputs(rs, sv, text)
    model = AttentiveFusion(inputs.modalities.shape[2])
    model.load_state_dict(result.state)
    idx = torch.tensor(result.attention["in_loss"].to_numpy(bool))
    with torch.no_grad():
        fused, _ = model(inputs.modalities[idx], inputs.mask[idx])
        return float(alignment_loss(fused, inputs.text[idx], loss, temperature))


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


def fusion_metrics(result: FusionResult) -> dict[str, Any]:
    """DVC metrics of a fusion run: config, final loss, region counts, attention distribution, wall time."""
    summary = attention_summary(result.attention)
    return {
        "config": asdict(result.config),
        "final_loss": float(result.history["loss"].iloc[-1]) if len(result.history) else None,
        "train_seconds": result.seconds,
        **result.details,
        "attention": {w: {k: float(v) for k, v in row.items()} for w, row in summary.iterrows()},
    }


# ---- outputs -------------------------------------------------------------------------------------------------------
def save_fusion_model(result: FusionResult, path: str | Path) -> Path:
    """The trained attention parameters (W, b, u) with the config, as a torch file written atomically."""
    from musecl.storage import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"state_dict": result.state, "config": asdict(result.config), "details": result.details}, tmp)
    return path


def load_fusion_model(path: str | Path) -> tuple[AttentiveFusion, FusionConfig]:
    """Rebuild the module and its config from `save_fusion_model` output."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fusion parameters {path} not found (run stage fusion: `dvc repro fusion`)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload["state_dict"]
    model = AttentiveFusion(state["W"].shape[0])
    model.load_state_dict(state)
    return model, FusionConfig(**payload["config"])


def write_attention(attention: pd.DataFrame, path: str | Path) -> None:
    """Attention weights per region as parquet (columns region_id, alpha_rs, alpha_sv, in_loss), atomically."""
    from musecl.storage import write_parquet

    out = attention.reset_index()
    out[REGION_ID] = out[REGION_ID].astype(str)
    write_parquet(out, path)


def attention_summary(attention: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and quantiles of the attention weight of each modality across regions."""
    quantiles = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
    rows = {}
    for column in ("alpha_rs", "alpha_sv"):
        values = attention[column].to_numpy(np.float64)
        row = {"mean": values.mean(), "std": values.std(ddof=0)}
        row.update({("min" if q == 0 else "max" if q == 1 else f"q{int(q * 100):02d}"): v
                    for q, v in zip(quantiles, np.quantile(values, quantiles))})
        row["share_above_half"] = float((values > 0.5).mean())
        rows[column] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("weight")


def describe_inputs(rs: pd.DataFrame, sv: pd.DataFrame, text: pd.DataFrame) -> pd.DataFrame:
    """Regions, dimension and vector-norm statistics of the three input tables (the MSE loss compares raw scales)."""
    rows = {}
    for name, table in (("remote_sensing", rs), ("street_view", sv), ("poi_text", text)):
        norms = np.linalg.norm(table.to_numpy(np.float64), axis=1)
        rows[name] = {"regions": len(table), "dim": table.shape[1], "norm_mean": norms.mean(),
                      "norm_std": norms.std(ddof=0), "zero_vectors": int((norms == 0).sum())}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("table")


@contextmanager
def dvclive_curve(folder: str | Path) -> Iterator[EpochCallback]:
    """A DVCLive run in `folder` (no dvc.yaml edits, no experiment commit) and an `on_epoch` callback logging into it.

    The curve lands in `<folder>/plots/metrics/train/loss.tsv`, the final value in `<folder>/metrics.json`.
    """
    from dvclive import Live

    with Live(str(folder), dvcyaml=None, save_dvc_exp=False, report=None) as live:

        def log(epoch: int, loss: float) -> None:
            live.log_metric("train/loss", loss)
            live.next_step()

        yield log


def plot_training_curve(history: pd.DataFrame, title: str = "") -> "matplotlib.figure.Figure":
    """Alignment loss per epoch."""
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    if len(history):
        ax.plot(history["epoch"] + 1, history["loss"], marker="o", markersize=3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        losses = history["loss"].to_numpy()
        if losses.min() > 0 and losses.max() / losses.min() > 100:  # spans orders of magnitude
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no training (loss: none)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("alignment loss (mean over batches)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_attention(attention: pd.DataFrame, bundle: "CityBundle") -> "matplotlib.figure.Figure":
    """The weight on street view per region on the city map (fixed 0-1 scale: red = street view dominates, blue =
    remote sensing dominates), beside its histogram over regions."""
    import matplotlib.pyplot as plt

    regions = bundle.regions().set_index(REGION_ID).join(attention[["alpha_sv"]], how="inner")
    fig, (ax_map, ax_hist) = plt.subplots(1, 2, figsize=(10.0, 4.2), gridspec_kw={"width_ratios": [1.2, 1.0]})
    regions.plot(column="alpha_sv", ax=ax_map, cmap="coolwarm", vmin=0.0, vmax=1.0, legend=True, linewidth=0.1,
                 edgecolor="white", legend_kwds={"shrink": 0.7, "label": "α_SV (weight on street view)"})
    bundle.boundary().boundary.plot(ax=ax_map, color="black", linewidth=0.6)
    ax_map.set_axis_off()
    ax_map.set_title("Attention per region")
    ax_hist.hist(attention["alpha_sv"], bins=30, range=(0.0, 1.0), color="grey")
    ax_hist.axvline(0.5, color="black", linewidth=0.8, linestyle="--")
    ax_hist.set_xlabel("α_SV = 1 − α_RS")
    ax_hist.set_ylabel("regions")
    ax_hist.set_title(f"mean {attention['alpha_sv'].mean():.3f}, std {attention['alpha_sv'].std(ddof=0):.3f}")
    fig.tight_layout()
    return fig

