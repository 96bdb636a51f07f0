"""Downstream regressors: the paper's MLP (many small models trained side by side in one tensor) and ridge regression.

The MLP is `prediction-tasks/mlp_pytorch.py` of the authors' code: in -> 512 -> 256 -> 128 -> 64 -> 1 with ReLU, MSE
loss, Adam(lr 5e-4), shuffled mini-batches of 32, early stopping on the validation MSE with patience 50 and the best
weights restored. Features are standardised with the training part's mean and standard deviation.

The targets come in two ways, two regressors of the evaluation (:data:`MLP_REGRESSORS`): `mlp` regresses them as they
are, like the authors' code (the paper's Tables 1-2); `mlp_std` z-scores each target on the model's training rows and
maps the predictions back before scoring. The log targets lie far from 0 with standard deviations near 1, and a
network whose output starts near 0 spends its first epochs climbing to their mean; by the time it gets there it fits
its few hundred training rows closely, and early stopping keeps a fit that reaches the mean but follows the truth
weakly. With standardised targets it keeps an early, smoother fit (docs/evaluation.md has the measurements).

A city has a few hundred regions, so one such MLP is tiny and a Python loop over thousands of them would spend its time
in overhead. :func:`fit_predict_mlp` therefore trains a *stack* of independent models at once: every weight has a
leading model dimension and the layers are batched matrix products. Each model keeps its own initialisation, its own
shuffling (both from its own seed), its own training rows, its own early stopping and its own best weights; a model
that stops is taken out of the stack. Adam is element-wise and every model in a stack takes the same number of steps,
so each model follows exactly the trajectory it would follow alone (up to float rounding); a test checks this against
plain `torch.nn` + `torch.optim.Adam` training.

`mlp_urbanclip` is UrbanCLIP's downstream head (its `mlp.py`): in -> 256 -> 1 with ReLU and dropout 0.01, z-scored
targets, AdamW(lr 3e-4, weight decay 0.01), a fixed number of epochs (100) with the weights of the best validation
epoch kept; it runs in the same stacked trainer with its own settings (`evaluation.mlp_urbanclip`).

Ridge regression (scikit-learn `RidgeCV`) standardises the features on the fitting rows and picks its penalty per
indicator by efficient leave-one-out cross-validation on those rows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # torch is imported where a model is trained, so tables and figures load without it
    import torch

PAPER_HIDDEN = (512, 256, 128, 64)
# The MLP regressors of the evaluation and whether each standardises its targets on the training rows.
MLP_REGRESSORS = {"mlp": False, "mlp_std": True, "mlp_urbanclip": True}
# What each regressor of the evaluation is, for table captions.
REGRESSOR_DESCRIPTIONS = {
    "mlp": "the paper's MLP on the targets as they are, as the authors' code",
    "mlp_std": "the paper's MLP on targets standardised on each fit's training rows, predictions mapped back "
               "(not in the paper)",
    "mlp_urbanclip": "UrbanCLIP's downstream head (Linear 256, ReLU, dropout, Linear; z-scored targets; AdamW, "
                     "100 epochs, best validation epoch)",
    "ridge": "ridge regression, penalty by leave-one-out CV",
}
# UrbanCLIP's head (mlp.py of the authors' code, method.md 2.4); batch 32 instead of the code's default 2 (the
# stacked trainer's cost grows with the number of steps; docs/evaluation.md)
URBANCLIP_MLP = {"hidden": [256], "lr": 3e-4, "weight_decay": 0.01, "optimizer": "adamw", "dropout": 0.01,
                 "batch_size": 32, "max_epochs": 100, "patience": None}


@dataclass(frozen=True)
class MLPConfig:
    """The downstream MLP. Defaults are the paper's except `max_epochs` (paper: 20,000; early stopping ends far sooner)."""

    hidden: tuple[int, ...] = PAPER_HIDDEN
    lr: float = 5e-4
    batch_size: int = 32
    max_epochs: int = 20000
    patience: int | None = 50  # None: no early stopping (train max_epochs, keep the best validation epoch)
    stack_size: int = 8  # models trained together; ~8 is fastest on a CPU core (cache), use hundreds on a GPU
    device: str = "cpu"
    clip_quantile: float | None = None  # set from evaluation.clip_quantile (see clip_to_fit_rows)
    optimizer: str = "adam"  # adam (the paper) | adamw (UrbanCLIP's head)
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (adamw only)
    dropout: float = 0.0  # dropout after every hidden ReLU while training (UrbanCLIP: 0.01)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "MLPConfig":
        cfg = dict(cfg or {})
        if "standardize_targets" in cfg:
            raise ValueError("evaluation.mlp.standardize_targets is gone: list the regressor `mlp` (targets as they "
                             "are, the paper) and/or `mlp_std` (standardised targets) in "
                             "evaluation.protocols.<name>.regressors")
        unknown = sorted(set(cfg) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"evaluation.mlp: unknown keys {unknown} (known: {sorted(cls.__dataclass_fields__)})")
        if "hidden" in cfg:
            cfg["hidden"] = tuple(int(h) for h in cfg["hidden"])
        config = cls(**cfg)
        if config.optimizer not in ("adam", "adamw"):
            raise ValueError(f"evaluation MLP optimizer: expected adam or adamw, got {config.optimizer!r}")
        if not 0 <= config.dropout < 1:
            raise ValueError(f"evaluation MLP dropout: expected a number in [0, 1), got {config.dropout!r}")
        return config


@dataclass(frozen=True)
class MLPJob:
    """One model to train: rows (positions into X/Y) for training, early stopping and testing, and which target."""

    key: Hashable
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    target: int
    seed: int


@dataclass
class MLPResult:
    key: Hashable
    prediction: np.ndarray  # on the job's test rows, in their order
    best_epoch: int  # 1-based epoch whose weights were kept
    epochs: int  # epochs trained
    best_val_mse: float


@dataclass
class _Stack:
    """The models currently training together; every tensor has the model dimension first."""

    jobs: list[MLPJob]
    x: torch.Tensor  # (M, N, d) features, standardised per model
    y: torch.Tensor  # (M, N) targets, scaled per model
    y_scale: torch.Tensor  # (M, 2) mean, std used to scale the targets
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    best_weights: list[torch.Tensor] = field(default_factory=list)
    best_biases: list[torch.Tensor] = field(default_factory=list)
    best_val: torch.Tensor | None = None
    best_epoch: torch.Tensor | None = None
    since_best: torch.Tensor | None = None
    generators: list[torch.Generator] = field(default_factory=list)


def _init_linear(fan_in: int, fan_out: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
    import torch

    bound = 1.0 / math.sqrt(fan_in)
    weight = (torch.rand(fan_out, fan_in, generator=generator, dtype=torch.float32) * 2 - 1) * bound
    bias = (torch.rand(fan_out, generator=generator, dtype=torch.float32) * 2 - 1) * bound
    return weight, bias


def init_mlp_params(dims: Sequence[int], generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight (out, in), bias (out,)) of each layer, drawn in the order torch.nn.Sequential of Linear layers draws them."""
    return [_init_linear(a, b, generator) for a, b in zip(dims[:-1], dims[1:])]


def _forward(x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor], dropout: float = 0.0,
             generators: Sequence[torch.Generator] = ()) -> torch.Tensor:
    """The stacked MLP; with `dropout` > 0 and one generator per model (training), each model draws its own masks."""
    import torch

    h = x
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = torch.baddbmm(b, h, w)
        if i < last:
            h = torch.relu(h)
            if dropout > 0 and generators:
                keep = torch.stack([torch.rand(h.shape[1:], generator=g) >= dropout for g in generators])
                h = h * keep.to(h.device) / (1.0 - dropout)
    return h.squeeze(-1)


def clip_to_fit_rows(x: np.ndarray, rows: np.ndarray, quantile: float | None) -> np.ndarray:
    """`x` with every feature clipped to the [q, 1 - q] quantiles of the fitting `rows` (None: unchanged).

    The guard against extrapolation (docs/evaluation.md): a test region whose feature lies beyond anything the
    regressor saw in training is treated as the most extreme training value. q = 0 clips to the training range only,
    so no training row changes; every row (train, validation, test) is clipped by the same statistics.
    """
    if quantile is None:
        return x
    if not 0 <= quantile < 0.5:
        raise ValueError(f"evaluation.clip_quantile: expected null or a number in [0, 0.5), got {quantile!r}")
    lo, hi = np.quantile(x[rows], [quantile, 1 - quantile], axis=0)
    return np.clip(x, lo, hi)


def _standardise(x: np.ndarray, rows: np.ndarray, clip_quantile: float | None = None) -> np.ndarray:
    x = clip_to_fit_rows(x, rows, clip_quantile)
    mean = x[rows].mean(axis=0)
    std = x[rows].std(axis=0)
    std[std == 0] = 1.0  # a feature constant on the training rows carries no information; leave it at 0
    return (x - mean) / std


def _padded(index_lists: list[np.ndarray], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, L) row indices padded with 0 and the matching validity mask."""
    import torch

    width = max(len(i) for i in index_lists)
    idx = np.zeros((len(index_lists), width), dtype=np.int64)
    mask = np.zeros((len(index_lists), width), dtype=bool)
    for m, rows in enumerate(index_lists):
        idx[m, : len(rows)] = rows
        mask[m, : len(rows)] = True
    return torch.from_numpy(idx).to(device), torch.from_numpy(mask).to(device)


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """t[m, idx[m, j]] for every model m: (M, N, ...) and (M, L) -> (M, L, ...)."""
    import torch

    rows = torch.arange(t.shape[0], device=t.device)[:, None]
    return t[rows, idx]


def fit_predict_mlp(
    x: np.ndarray,
    y: np.ndarray,
    jobs: Sequence[MLPJob],
    config: MLPConfig = MLPConfig(),
    progress: Callable[[int], None] | None = None,
    standardize_targets: bool = False,
) -> list[MLPResult]:
    """Train one MLP per job on features `x` (N, d) and targets `y` (N, T); predict each job's test rows.

    `standardize_targets`: False regresses the targets as they are (the paper, regressor `mlp`); True z-scores each
    job's target with its training rows' mean and standard deviation and maps the predictions (and `best_val_mse`)
    back to the target scale (regressor `mlp_std`). Jobs are grouped into stacks of `config.stack_size` models with the
    same number of mini-batches per epoch. `progress(n)` is called with the number of jobs finished after each stack.
    Results come back in job order.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"expected x (N, d) and y (N, T) with the same N, got {x.shape} and {y.shape}")
    for job in jobs:
        if len(job.train) < 1 or len(job.val) < 1 or len(job.test) < 1:
            raise ValueError(f"MLP job {job.key}: train, validation and test rows must all be non-empty")
        if not 0 <= job.target < y.shape[1]:
            raise ValueError(f"MLP job {job.key}: target column {job.target} out of range for y with {y.shape[1]} columns")
    by_batches: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        by_batches.setdefault(math.ceil(len(job.train) / config.batch_size), []).append(i)
    results: list[MLPResult | None] = [None] * len(jobs)
    for n_batches, members in sorted(by_batches.items()):
        for start in range(0, len(members), config.stack_size):
            chunk = members[start : start + config.stack_size]
            stack = _train_stack(x, y, [jobs[i] for i in chunk], n_batches, config, standardize_targets)
            for i, res in zip(chunk, stack):
                results[i] = res
            if progress is not None:
                progress(len(chunk))
    return [r for r in results if r is not None]


def _train_stack(
    x: np.ndarray, y: np.ndarray, jobs: list[MLPJob], n_batches: int, config: MLPConfig, standardize_targets: bool
) -> list[MLPResult]:
    import torch

    device = config.device
    dims = [x.shape[1], *config.hidden, 1]
    features, targets, scales, weights, biases, gens = [], [], [], [], [], []
    for job in jobs:
        features.append(_standardise(x, np.asarray(job.train), config.clip_quantile))
        t = y[:, job.target]
        mean, std = (t[job.train].mean(), t[job.train].std()) if standardize_targets else (0.0, 1.0)
        std = std if std > 0 else 1.0
        targets.append((t - mean) / std)
        scales.append((mean, std))
        gen = torch.Generator().manual_seed(int(job.seed))
        layers = init_mlp_params(dims, gen)
        weights.append([w.T.contiguous() for w, _ in layers])  # stored (in, out) for x @ W
        biases.append([b[None, :] for _, b in layers])
        gens.append(gen)
    n_layers = len(dims) - 1
    stack = _Stack(
        jobs=list(jobs),
        x=torch.tensor(np.stack(features), dtype=torch.float32, device=device),
        y=torch.tensor(np.stack(targets), dtype=torch.float32, device=device),
        y_scale=torch.tensor(scales, dtype=torch.float32, device=device),
        weights=[torch.stack([w[l] for w in weights]).to(device).requires_grad_() for l in range(n_layers)],
        biases=[torch.stack([b[l] for b in biases]).to(device).requires_grad_() for l in range(n_layers)],
        generators=gens,
    )
    m = len(jobs)
    stack.best_weights = [w.detach().clone() for w in stack.weights]
    stack.best_biases = [b.detach().clone() for b in stack.biases]
    stack.best_val = torch.full((m,), float("inf"), device=device)
    stack.best_epoch = torch.zeros(m, dtype=torch.long, device=device)
    stack.since_best = torch.zeros(m, dtype=torch.long, device=device)
    optimizer = _adam(stack, config)
    val_idx, val_mask = _padded([np.asarray(j.val) for j in stack.jobs], device)
    finished: dict[int, MLPResult] = {}
    alive = list(range(m))  # positions in the original job list of the models still in the stack
    epoch = 0
    while alive and epoch < config.max_epochs:
        epoch += 1
        # Each model shuffles its own training rows with its own generator, as a DataLoader(shuffle=True) would.
        order = [np.asarray(j.train)[torch.randperm(len(j.train), generator=g).numpy()]
                 for j, g in zip(stack.jobs, stack.generators)]
        idx, mask = _padded(order, device)
        width = n_batches * config.batch_size
        if idx.shape[1] < width:
            pad = width - idx.shape[1]
            idx = torch.nn.functional.pad(idx, (0, pad))
            mask = torch.nn.functional.pad(mask, (0, pad))
        for step in range(n_batches):
            cols = slice(step * config.batch_size, (step + 1) * config.batch_size)
            bidx, bmask = idx[:, cols], mask[:, cols].float()
            pred = _forward(_gather(stack.x, bidx), stack.weights, stack.biases, config.dropout, stack.generators)
            err = (pred - _gather(stack.y, bidx)) ** 2 * bmask
            # Sum of per-model means: each model's gradient is that of its own mean-squared error.
            loss = (err.sum(dim=1) / bmask.sum(dim=1)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            pred = _forward(_gather(stack.x, val_idx), stack.weights, stack.biases)
            vmask = val_mask.float()
            val = (((pred - _gather(stack.y, val_idx)) ** 2) * vmask).sum(dim=1) / vmask.sum(dim=1)
            improved = val < stack.best_val
            stack.best_val = torch.where(improved, val, stack.best_val)
            stack.best_epoch = torch.where(improved, torch.full_like(stack.best_epoch, epoch), stack.best_epoch)
            stack.since_best = torch.where(improved, torch.zeros_like(stack.since_best), stack.since_best + 1)
            if improved.any():
                sel = improved.view(-1, 1, 1)
                for l in range(n_layers):
                    stack.best_weights[l] = torch.where(sel, stack.weights[l].detach(), stack.best_weights[l])
                    stack.best_biases[l] = torch.where(sel, stack.biases[l].detach(), stack.best_biases[l])
            patience = config.max_epochs if config.patience is None else config.patience
            stopped = (stack.since_best >= patience).cpu().numpy()
        if epoch >= config.max_epochs:
            stopped[:] = True
        if stopped.any():
            for pos in np.flatnonzero(stopped):
                finished[alive[pos]] = _result(stack, int(pos), epoch)
            keep = np.flatnonzero(~stopped)
            alive = [alive[p] for p in keep]
            if alive:
                optimizer = _compact(stack, optimizer, keep, config)
                val_idx, val_mask = val_idx[keep], val_mask[keep]
    return [finished[i] for i in range(m)]


def _result(stack: _Stack, pos: int, epoch: int) -> MLPResult:
    import torch

    job = stack.jobs[pos]
    test = torch.as_tensor(np.asarray(job.test), dtype=torch.long, device=stack.x.device)
    with torch.no_grad():
        x = stack.x[pos : pos + 1, test]
        pred = _forward(x, [w[pos : pos + 1] for w in stack.best_weights], [b[pos : pos + 1] for b in stack.best_biases])
        mean, std = stack.y_scale[pos]
        pred = pred[0] * std + mean
    return MLPResult(
        key=job.key,
        prediction=pred.cpu().numpy().astype(np.float64),
        best_epoch=int(stack.best_epoch[pos]),
        epochs=epoch,
        best_val_mse=float(stack.best_val[pos] * stack.y_scale[pos, 1] ** 2),
    )


def _adam(stack: _Stack, config: MLPConfig) -> torch.optim.Adam:
    import torch

    fused = torch.device(config.device).type in ("cpu", "cuda")
    params = [*stack.weights, *stack.biases]
    if config.optimizer == "adamw":
        # Decoupled decay is element-wise too, so stacked models still follow their solo trajectories.
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.Adam(params, lr=config.lr, fused=fused)


def _compact(stack: _Stack, optimizer: torch.optim.Adam, keep: np.ndarray, config: MLPConfig) -> torch.optim.Adam:
    """Drop the stopped models from every stacked tensor and from Adam's state (same step count for all)."""
    import torch

    keep_t = torch.as_tensor(keep, dtype=torch.long, device=stack.x.device)
    old_params = [*stack.weights, *stack.biases]
    old_state = [optimizer.state.get(p, {}) for p in old_params]
    stack.jobs = [stack.jobs[k] for k in keep]
    stack.generators = [stack.generators[k] for k in keep]
    stack.x, stack.y, stack.y_scale = stack.x[keep_t], stack.y[keep_t], stack.y_scale[keep_t]
    stack.weights = [w.detach()[keep_t].clone().requires_grad_() for w in stack.weights]
    stack.biases = [b.detach()[keep_t].clone().requires_grad_() for b in stack.biases]
    stack.best_weights = [w[keep_t] for w in stack.best_weights]
    stack.best_biases = [b[keep_t] for b in stack.best_biases]
    stack.best_val, stack.best_epoch, stack.since_best = (
        stack.best_val[keep_t], stack.best_epoch[keep_t], stack.since_best[keep_t]
    )
    new_opt = _adam(stack, config)
    for p, state in zip([*stack.weights, *stack.biases], old_state):
        if state:
            new_opt.state[p] = {
                "step": state["step"].clone(),
                "exp_avg": state["exp_avg"][keep_t].clone(),
                "exp_avg_sq": state["exp_avg_sq"][keep_t].clone(),
            }
    return new_opt


# ---- ridge ---------------------------------------------------------------------------------------------------------
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))


def fit_predict_ridge(
    x: np.ndarray,
    y: np.ndarray,
    fit_rows: np.ndarray,
    test_rows: np.ndarray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    clip_quantile: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression of every target column at once, features clipped (:func:`clip_to_fit_rows`) and standardised
    on `fit_rows`.

    The penalty is chosen per target by efficient leave-one-out CV on `fit_rows` (RidgeCV). Returns the predictions on
    `test_rows` (n_test, T) and the chosen penalties (T,).
    """
    from sklearn.linear_model import RidgeCV

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fit_rows, test_rows = np.asarray(fit_rows), np.asarray(test_rows)
    x = clip_to_fit_rows(x, fit_rows, clip_quantile)
    mean = x[fit_rows].mean(axis=0)
    std = x[fit_rows].std(axis=0)
    std[std == 0] = 1.0
    model = RidgeCV(alphas=np.asarray(alphas, dtype=np.float64), alpha_per_target=True)
    model.fit((x[fit_rows] - mean) / std, y[fit_rows])
    pred = model.predict((x[test_rows] - mean) / std).reshape(len(test_rows), y.shape[1])
    return pred, np.atleast_1d(np.asarray(model.alpha_, dtype=np.float64))
