"""Fusion with ideal encoders: what MuseCL's attentive fusion keeps of two image representations that together know
everything a linear regressor needs (docs/text_and_fusion.md, "Fusion with ideal encoders").

A synthetic city's latent variables (`latents.parquet`) determine its indicators. The experiment replaces the trained
encoders by *ideal* ones: each "encoder" is a seeded Gaussian random projection of a group of standardised latents
into `dim` dimensions, so it holds exactly its latents, linearly and without noise:

* RS sees what a tile shows from above: residential, green, water, land_fraction;
* SV sees what a street shows: commercial, affluence, nightlife (complementary to RS: together all seven latents);
* text (the alignment target) sees the latents the synthetic POI intensities load on most: commercial, residential,
  nightlife (`musecl/synthetic/pois.py`).

Each representation is then scored by the same ridge protocol (repeated K-fold, features clipped to the fitting rows'
range and standardised, penalty per indicator by leave-one-out, R² per fold and indicator; the style of
`musecl.evaluation`, which a fusion module may not import, so sklearn is called directly). Rows: the latents themselves
(the linear ceiling), each ideal encoder alone, [RS;SV] concatenation (also of the L2-normalised encoders: dividing
a region's vector by its norm is itself a per-region rescaling), and the repo's own fusion trainer
(:func:`musecl.fusion.fuse_regions`, the configured `fusion` settings with output `image`) with the MSE alignment
(MuseCL), InfoNCE, no training (Fusion-svrv), one global attention pair, and L2-normalised inputs. A second table shows
each fusion's attention: mean and spread of α_SV and its correlation with ‖e_RS‖ − ‖e_SV‖.

Command line (prints both tables as Markdown): `python -m musecl.fusion.ideal [--params params.yaml] [--bundle PATH]`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from musecl.embeddings import to_frame
from musecl.fusion.model import FusionConfig
from musecl.fusion.train import fuse_regions

GROUPS: dict[str, tuple[str, ...]] = {
    "rs": ("residential", "green", "water", "land_fraction"),
    "sv": ("commercial", "affluence", "nightlife"),
    "text": ("commercial", "residential", "nightlife"),
}
ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))  # the evaluation's ridge grid (params evaluation.ridge.alphas)
# The fusion rows: name -> overrides of the configured fusion (output is always `image`: the fused vector alone).
FUSIONS: dict[str, dict[str, Any]] = {
    "MSE fusion (MuseCL)": {"loss": "mse"},
    "InfoNCE fusion": {"loss": "infonce"},
    "untrained attention (Fusion-svrv)": {"loss": "none"},
    "MSE fusion, global α": {"loss": "mse", "attention": "global"},
    "MSE fusion, L2-normalised inputs": {"loss": "mse", "normalize_inputs": True},
}
LATENT_ROW, CONCAT_ROW, L2_CONCAT_ROW = "latents (linear ceiling)", "[RS;SV] concat", "[RS;SV] L2-normalised concat"


@dataclass(frozen=True)
class IdealSettings:
    """How the ideal encoders are built and scored (see the module docstring)."""

    groups: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(GROUPS))
    dim: int = 128  # dimension of every ideal encoder (MuseCL's 128)
    k: int = 5  # folds per repeat
    repeats: int = 2
    alphas: Sequence[float] = ALPHAS
    clip: bool = True  # clip features to the fitting rows' range (the evaluation's clip_quantile: 0)
    seed: int = 0

    def __post_init__(self) -> None:
        missing = {"rs", "sv", "text"} - set(self.groups)
        if missing:
            raise ValueError(f"ideal-encoder groups lack {sorted(missing)} (need rs, sv and text latents)")
        if int(self.dim) < 1 or int(self.k) < 2 or int(self.repeats) < 1:
            raise ValueError(f"ideal-encoder settings: dim >= 1, k >= 2, repeats >= 1 (got {self.dim}, {self.k}, "
                             f"{self.repeats})")


@dataclass
class IdealResult:
    """Per-fold R² of every representation and the attention of every fusion."""

    r2: pd.DataFrame  # long: representation, fold (repeat * k + fold), indicator, r2
    attention: pd.DataFrame  # index fusion row: alpha_sv_mean, alpha_sv_std, corr_norm_gap
    settings: IdealSettings
    fusion: FusionConfig  # the configured fusion the rows start from
    seconds: dict[str, float]  # wall time: each fusion's training, and the whole experiment ("total")

    def table(self) -> pd.DataFrame:
        """Mean R² over folds: one row per representation (in run order), one column per indicator, and their mean."""
        order = list(dict.fromkeys(self.r2["representation"]))
        wide = self.r2.pivot_table(index="representation", columns="indicator", values="r2", aggfunc="mean")
        wide = wide.reindex(index=order, columns=list(dict.fromkeys(self.r2["indicator"])))
        wide.columns.name = "indicator"
        wide["mean"] = wide.mean(axis=1)
        return wide

    def markdown(self, digits: int = 3) -> str:
        """Both tables as Markdown, with a line naming the settings."""
        s = self.settings
        groups = "; ".join(f"{m}: {', '.join(g)}" for m, g in s.groups.items())
        head = (f"ideal encoders: dim {s.dim}, seed {s.seed}; {groups}. Ridge R², {s.repeats} x {s.k}-fold, mean over "
                f"folds. Fusion: epochs {self.fusion.epochs}, lr {self.fusion.lr}, batch {self.fusion.batch_size}, "
                f"temperature {self.fusion.temperature}.")
        return "\n\n".join([head, self.table().round(digits).to_markdown(),
                            self.attention.round(digits).to_markdown()])


def standardised_latents(latents: pd.DataFrame) -> pd.DataFrame:
    """Every latent as a z-score over the regions (a constant latent becomes zeros)."""
    values = latents.astype(np.float64)
    std = values.std(ddof=0).replace(0.0, 1.0)
    return (values - values.mean()) / std


def ideal_encoders(latents: pd.DataFrame, settings: IdealSettings) -> dict[str, pd.DataFrame]:
    """The ideal RS, SV and text tables: z-scored latents of each group times a seeded Gaussian (k x dim) matrix with
    entries N(0, 1/k). Each group draws from its own stream of `settings.seed`, so changing one group leaves the
    others' projections unchanged."""
    z = standardised_latents(latents)
    tables = {}
    for i, (name, group) in enumerate(settings.groups.items()):
        unknown = [c for c in group if c not in z.columns]
        if unknown or not group:
            raise ValueError(f"ideal-encoder group {name!r}: latents {unknown or '(none)'} not in latents.parquet "
                             f"(columns: {list(z.columns)})")
        rng = np.random.default_rng(np.random.SeedSequence([int(settings.seed), i]))
        projection = rng.normal(scale=1 / np.sqrt(len(group)), size=(len(group), int(settings.dim)))
        tables[name] = to_frame(z.index, z[list(group)].to_numpy() @ projection)
    return tables


def unit_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Every row divided by its L2 norm (a zero row stays zero): what `fusion.normalize_inputs` feeds the attention."""
    norms = np.linalg.norm(table.to_numpy(np.float64), axis=1, keepdims=True)
    return table / np.where(norms > 0, norms, 1.0)


def ridge_fold_r2(features: pd.DataFrame, targets: pd.DataFrame, settings: IdealSettings) -> pd.DataFrame:
    """R² of ridge regression per fold and indicator (long table: fold, indicator, r2). The folds depend only on the
    seed and the region order, so every representation is scored on the same folds (paired)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import RepeatedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from musecl.oracle import RangeClipper

    x = features.reindex(targets.index).to_numpy(np.float64)
    y = targets.to_numpy(np.float64)
    splitter = RepeatedKFold(n_splits=int(settings.k), n_repeats=int(settings.repeats),
                             random_state=int(settings.seed) % 2**32)
    rows = []
    for fold, (fit, test) in enumerate(splitter.split(x)):
        steps = ([RangeClipper()] if settings.clip else []) + [
            StandardScaler(), RidgeCV(alphas=np.asarray(settings.alphas, dtype=np.float64), alpha_per_target=True)]
        model = make_pipeline(*steps).fit(x[fit], y[fit])
        pred = model.predict(x[test]).reshape(len(test), y.shape[1])
        scores = r2_score(y[test], pred, multioutput="raw_values")
        rows += [(fold, indicator, float(r2)) for indicator, r2 in zip(targets.columns, scores)]
    return pd.DataFrame(rows, columns=["fold", "indicator", "r2"])


def attention_diagnostics(attention: pd.DataFrame, rs: pd.DataFrame, sv: pd.DataFrame) -> dict[str, float]:
    """Mean and spread of α_SV over the regions and its Pearson correlation with ‖e_RS‖ − ‖e_SV‖ (NaN when α_SV is
    the same everywhere, as with a global attention)."""
    alpha = attention["alpha_sv"].to_numpy(np.float64)
    gap = (np.linalg.norm(rs.reindex(attention.index).to_numpy(np.float64), axis=1)
           - np.linalg.norm(sv.reindex(attention.index).to_numpy(np.float64), axis=1))
    spread = float(alpha.std())
    corr = float(np.corrcoef(alpha, gap)[0, 1]) if spread > 1e-12 and gap.std() > 0 else float("nan")
    return {"alpha_sv_mean": float(alpha.mean()), "alpha_sv_std": spread, "corr_norm_gap": corr}


def run_ideal_experiment(latents: pd.DataFrame, indicators: pd.DataFrame, fusion: FusionConfig,
                         settings: IdealSettings | None = None) -> IdealResult:
    """The whole experiment on one city (see the module docstring). `latents`, `indicators`: tables indexed by region
    id (the indicators already transformed as the evaluation predicts them); the regions are those of both, sorted.
    `fusion`: the configured fusion (`FusionConfig.from_params(params["fusion"], seed)`); each fusion row overrides
    only its loss, attention and input normalisation (:data:`FUSIONS`), with output `image`."""
    settings = settings or IdealSettings(seed=fusion.seed)
    start = time.perf_counter()
    regions = latents.index.intersection(indicators.index).sort_values()
    if len(regions) < 2 * int(settings.k):
        raise ValueError(f"only {len(regions)} regions have both latents and indicators; {settings.k}-fold ridge "
                         "needs at least twice as many regions as folds")
    targets = indicators.reindex(regions).astype(np.float64)
    bad = [c for c in targets.columns if not np.isfinite(targets[c]).all()]
    if bad:
        raise ValueError(f"indicators {bad} have missing or infinite values; the ideal-encoder experiment needs "
                         "every indicator in every region")
    latent_table = latents.reindex(regions)
    encoders = ideal_encoders(latent_table, settings)
    features = {LATENT_ROW: standardised_latents(latent_table), "RS": encoders["rs"], "SV": encoders["sv"],
                "text": encoders["text"], CONCAT_ROW: pd.concat([encoders["rs"], encoders["sv"]], axis=1),
                L2_CONCAT_ROW: pd.concat([unit_rows(encoders["rs"]), unit_rows(encoders["sv"])], axis=1)}
    seconds, attention = {}, {}
    for name, overrides in FUSIONS.items():
        config = replace(fusion, **{"output": "image", "attention": "per_region", "normalize_inputs": False,
                                    **overrides})
        result = fuse_regions(encoders["rs"], encoders["sv"], encoders["text"], config)
        features[name], seconds[name] = result.embeddings, result.seconds
        attention[name] = attention_diagnostics(result.attention, encoders["rs"], encoders["sv"])
    parts = [ridge_fold_r2(table, targets, settings).assign(representation=name) for name, table in features.items()]
    r2 = pd.concat(parts, ignore_index=True)[["representation", "fold", "indicator", "r2"]]
    seconds["total"] = time.perf_counter() - start
    return IdealResult(r2, pd.DataFrame.from_dict(attention, orient="index").rename_axis("fusion"), settings, fusion,
                       seconds)


def ideal_experiment_from_params(params: Mapping[str, Any], bundle: Any | None = None,
                                 **settings: Any) -> IdealResult:
    """The experiment on `bundle` (default: the bundle at params `paths.bundle`) with params.yaml's `fusion` section,
    seed, `evaluation.indicators` and `evaluation.ridge.alphas`; `settings` override :class:`IdealSettings` fields."""
    from musecl.data import CityBundle

    bundle = bundle if bundle is not None else CityBundle(params["paths"]["bundle"])
    latents = bundle.latents()
    if latents is None:
        raise ValueError(f"{bundle.root}: no latents.parquet; the ideal-encoder experiment needs a synthetic city's "
                         "latent variables (data.source: synthetic)")
    indicators = bundle.indicators()
    wanted = (params.get("evaluation") or {}).get("indicators")
    if wanted:
        unknown = sorted(set(wanted) - set(indicators.columns))
        if unknown:
            raise ValueError(f"evaluation.indicators names {unknown}, not in {bundle.root}/indicators.parquet")
        indicators = indicators[list(wanted)]
    alphas = ((params.get("evaluation") or {}).get("ridge") or {}).get("alphas") or ALPHAS
    values = {"seed": int(params["seed"]), "alphas": tuple(float(a) for a in alphas), **settings}
    fusion = FusionConfig.from_params(params["fusion"], params["seed"])
    return run_ideal_experiment(latents, indicators, fusion, IdealSettings(**values))


def main(argv: Sequence[str] | None = None) -> IdealResult:
    """`python -m musecl.fusion.ideal`: run the experiment and print its tables and run time."""
    import argparse

    from musecl.config import load_params

    parser = argparse.ArgumentParser(prog="python -m musecl.fusion.ideal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file (default: the repository's params.yaml)")
    parser.add_argument("--bundle", default=None, help="city bundle folder (default: params paths.bundle)")
    parser.add_argument("--dim", type=int, default=IdealSettings.dim, help="dimension of the ideal encoders")
    parser.add_argument("--k", type=int, default=IdealSettings.k, help="folds per repeat")
    parser.add_argument("--repeats", type=int, default=IdealSettings.repeats, help="repeats of the K-fold")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    bundle = None
    if args.bundle is not None:
        from musecl.data import CityBundle

        bundle = CityBundle(args.bundle)
    result = ideal_experiment_from_params(params, bundle, dim=args.dim, k=args.k, repeats=args.repeats)
    print(result.markdown())
    print(f"\nrun time: {result.seconds['total']:.1f} s (fusion training: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items() if k != "total") + ")")
    return result


if __name__ == "__main__":
    main()
