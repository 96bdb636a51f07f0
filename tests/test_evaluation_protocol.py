"""The evaluation end to end on synthetic feature tables, the batched MLP against plain torch, the registry, tables."""
from __future__ import annotations

import h3
import numpy as np
import pandas as pd
import pytest
import torch

from musecl.embeddings import to_frame, write_embeddings
from musecl.evaluation.protocol import EvaluationSettings, ProtocolSpec, evaluate, evaluation_regions
from musecl.evaluation.regressors import MLPConfig, MLPJob, _standardise, fit_predict_mlp, init_mlp_params
from musecl.evaluation.representations import RepresentationMissing, RepresentationRegistry, RepresentationSpec
from musecl.evaluation.splits import SplitSpec, make_folds
from musecl.evaluation.stats import compare_to_best_baseline, summarise
from musecl.evaluation.tables import table1, table2

RES = 8


@pytest.fixture(scope="module")
def city():
    """Regions on an H3 disc, two indicators driven by two latent factors, and three feature tables."""
    ids = np.array(sorted(h3.grid_disk(h3.latlng_to_cell(39.9, 116.4, RES), 6)), dtype=object)  # 127 regions
    rng = np.random.default_rng(0)
    z = rng.normal(size=(ids.size, 2))
    targets = pd.DataFrame({"population_density": 3 + z[:, 0] + 0.1 * rng.normal(size=ids.size),
                            "crime": 1 + np.abs(z[:, 1]) + 0.1 * rng.normal(size=ids.size)},
                           index=pd.Index(ids, name="region_id"))
    w = rng.normal(size=(2, 16))
    features = {
        "good": pd.DataFrame(np.tanh(z @ w) + 0.05 * rng.normal(size=(ids.size, 16)), index=ids),
        "half": pd.DataFrame(np.c_[z[:, :1], rng.normal(size=(ids.size, 7))], index=ids),
        "noise": pd.DataFrame(rng.normal(size=(ids.size, 8)), index=ids),
    }
    return ids, targets, features


def _settings(n_jobs: int = 1) -> EvaluationSettings:
    return EvaluationSettings(
        protocols=(
            ProtocolSpec(SplitSpec("paper", "holdout", repeats=2), ("mlp", "mlp_std", "ridge")),
            ProtocolSpec(SplitSpec("kfold", "kfold", repeats=2, k=3), ("ridge",)),
            ProtocolSpec(SplitSpec("spatial", "spatial", k=3, parent_resolution=RES - 1), ("ridge",)),
        ),
        mlp=MLPConfig(hidden=(32, 16), lr=0.01, max_epochs=100, patience=10, stack_size=4),
        seed=3,
        n_jobs=n_jobs,
    )


@pytest.fixture(scope="module")
def evaluated(city):
    ids, targets, features = city
    settings = _settings()
    region_ids, coverage = evaluation_regions(targets, features)
    assert (coverage["lacks"] == 0).all() and len(region_ids) == len(ids)
    folds = make_folds(region_ids, settings.split_specs, settings.seed, RES)
    return folds, evaluate(features, targets, folds, settings, progress=False)


def test_end_to_end_on_shared_folds(evaluated):
    res, pred = evaluated[1].results, evaluated[1].predictions
    # 3 methods x 2 indicators x (paper 2 folds x 3 regressors + kfold 6 + spatial 3)
    assert len(res) == 3 * 2 * (2 * 3 + 6 + 3)
    assert res[["r2", "rmse", "mae"]].notna().all().all()
    # the same test regions for every method in every fold
    keys = ["protocol", "regressor", "repeat", "fold", "indicator"]
    sets = pred.groupby(["method", *keys])["region_id"].apply(lambda s: tuple(sorted(s)))
    per_method = sets.unstack("method")
    assert (per_method["good"] == per_method["noise"]).all() and (per_method["good"] == per_method["half"]).all()
    s = summarise(res)
    r2 = s.set_index(["protocol", "regressor", "method", "indicator"])["r2_mean"]
    for protocol, regressor in (("paper", "mlp_std"), ("paper", "ridge"), ("kfold", "ridge"), ("spatial", "ridge")):
        assert r2[(protocol, regressor, "good", "population_density")] > 0.8
        assert r2[(protocol, regressor, "noise", "population_density")] < 0.2
    # ridge is linear: it gets the linear factor from "half" but not |z1| (crime)
    assert r2[("kfold", "ridge", "half", "population_density")] > 0.8
    assert r2[("kfold", "ridge", "half", "crime")] < 0.2
    mlp = res[res["regressor"].isin(["mlp", "mlp_std"])]
    assert len(mlp) == 3 * 2 * 2 * 2  # both MLPs: every method, indicator and fold
    assert (mlp["best_epoch"] >= 1).all() and (mlp["epochs"] <= 100).all() and (mlp["n_val"] > 0).all()
    both = pred[pred["regressor"].isin(["mlp", "mlp_std"])].pivot_table(
        index=["method", "indicator", "repeat", "fold", "region_id"], columns="regressor", values="y_pred")
    assert both.notna().all().all() and not np.allclose(both["mlp"], both["mlp_std"])  # same test regions, other fits
    comp = compare_to_best_baseline(res, "good", ["half", "noise"])
    kf = comp[(comp["protocol"] == "kfold") & (comp["metric"] == "r2")].set_index("indicator")
    assert kf.loc["population_density", "best_baseline"] == "half"  # the better of the two baselines
    vs_noise = compare_to_best_baseline(res, "good", ["noise"])
    kf = vs_noise[(vs_noise["protocol"] == "kfold") & (vs_noise["metric"] == "r2")].set_index("indicator")
    assert kf.loc["population_density", "improvement"] > 1 and kf.loc["population_density", "p_ttest"] < 1e-4


def test_results_do_not_depend_on_parallelism_or_other_methods(city, evaluated):
    ids, targets, features = city
    settings = _settings()
    folds, serial = evaluated[0], evaluated[1].results
    parallel = evaluate(features, targets, folds, _settings(n_jobs=2), progress=False).results
    pd.testing.assert_frame_equal(serial, parallel)
    alone = evaluate({"good": features["good"]}, targets, folds, settings, progress=False).results
    pd.testing.assert_frame_equal(alone, serial[serial["method"] == "good"].reset_index(drop=True))


def test_evaluate_rejects_regions_missing_from_a_representation(city):
    ids, targets, features = city
    settings = _settings()
    folds = make_folds(ids, settings.split_specs, settings.seed, RES)
    short = dict(features, noise=features["noise"].iloc[:-3])
    with pytest.raises(ValueError, match="'noise' lacks 3 of the fold regions"):
        evaluate(short, targets, folds, settings, progress=False)
    region_ids, coverage = evaluation_regions(targets, short)
    assert len(region_ids) == len(ids) - 3
    assert coverage.set_index("source").loc["noise", "lacks"] == 3


def test_batched_mlp_equals_plain_torch_training():
    """Every model in a stack follows the trajectory it would follow alone (nn.Linear + torch.optim.Adam)."""
    rng = np.random.default_rng(0)
    n, d = 70, 5
    x = rng.normal(size=(n, d))
    y = np.c_[2 * x[:, 0] + 0.3 * rng.normal(size=n), np.sin(x[:, 1]) + 3]
    config = MLPConfig(hidden=(12, 8), lr=0.01, max_epochs=80, patience=4, batch_size=16, stack_size=3)
    jobs = []
    for k in range(5):  # different training sizes, targets and seeds; models stop at different epochs
        p = np.random.default_rng(k).permutation(n)
        jobs.append(MLPJob(k, np.sort(p[: 40 + 3 * k]), np.sort(p[55:62]), np.sort(p[62:]), k % 2, seed=100 + k))
    batched = fit_predict_mlp(x, y, jobs, config)
    epochs = set()
    for job, res in zip(jobs, batched):
        pred, best_epoch, epoch = _plain_torch(x, y, job, config)
        assert res.key == job.key and res.best_epoch == best_epoch and res.epochs == epoch
        np.testing.assert_allclose(res.prediction, pred, atol=1e-4)
        epochs.add(epoch)
    assert len(epochs) > 1  # early stopping happened at different epochs (stack compaction exercised)


def _plain_torch(x, y, job, config):
    gen = torch.Generator().manual_seed(job.seed)
    layers = init_mlp_params([x.shape[1], *config.hidden, 1], gen)
    modules = []
    for i, (w, b) in enumerate(layers):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data, lin.bias.data = w.clone(), b.clone()
        modules += [lin, torch.nn.ReLU()] if i < len(layers) - 1 else [lin]
    net = torch.nn.Sequential(*modules)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    xs = torch.tensor(_standardise(x, job.train), dtype=torch.float32)
    ys = torch.tensor(y[:, job.target], dtype=torch.float32)
    best, since, best_epoch, state = float("inf"), 0, 0, None
    for epoch in range(1, config.max_epochs + 1):
        order = job.train[torch.randperm(len(job.train), generator=gen).numpy()]
        for s in range(0, len(order), config.batch_size):
            b = order[s : s + config.batch_size]
            loss = ((net(xs[b]).squeeze(-1) - ys[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = ((net(xs[job.val]).squeeze(-1) - ys[job.val]) ** 2).mean().item()
        if val < best:
            best, since, best_epoch = val, 0, epoch
            state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            since += 1
        if since >= config.patience:
            break
    net.load_state_dict(state)
    with torch.no_grad():
        return net(xs[job.test]).squeeze(-1).numpy(), best_epoch, epoch


def test_registry_builds_combined_tables_and_names_missing_inputs(tmp_path):
    emb = tmp_path / "embeddings"
    ids = [f"r{i}" for i in range(5)]
    write_embeddings(to_frame(ids, np.ones((5, 3))), emb / "rs.parquet")
    write_embeddings(to_frame(ids[::-1], 2 * np.ones((5, 3))), emb / "sv.parquet")
    write_embeddings(to_frame(ids, np.ones((5, 4))), emb / "poi_text.parquet")
    specs = [
        RepresentationSpec("Add", "baseline", ("rs.parquet", "sv.parquet"), combine="sum"),
        RepresentationSpec("Concat", "baseline", ("rs.parquet", "sv.parquet", "poi_text.parquet")),
        RepresentationSpec("Bad", "baseline", ("rs.parquet", "poi_text.parquet"), combine="sum"),
        RepresentationSpec("MuseCL", "ours", ("musecl.parquet",)),
    ]
    reg = RepresentationRegistry(specs, emb)
    assert (reg.load("Add").to_numpy() == 3).all()
    assert reg.load("Concat").shape == (5, 10)
    with pytest.raises(ValueError, match="equal dimensions"):
        reg.load("Bad")
    with pytest.raises(RepresentationMissing, match=r"musecl\.parquet \(not in the embeddings folder; made by stage `fusion`"):
        reg.load("MuseCL")
    features, status = reg.load_available(["Add", "MuseCL"])
    assert list(features) == ["Add"] and status.set_index("method").loc["MuseCL", "available"] == False  # noqa: E712
    with pytest.raises(RepresentationMissing, match="MuseCL"):
        reg.load_available(["Add", "MuseCL"], on_missing="error")
    with pytest.raises(ValueError, match="role"):
        RepresentationSpec.from_config("X", {"role": "winner", "embeddings": ["a.parquet"]})
    with pytest.raises(ValueError, match="exactly one of"):
        RepresentationSpec.from_config("X", {"role": "baseline"})


def test_bundle_sources(tiny_bundle):
    from musecl.data.regions import assign_points_to_regions

    reg = RepresentationRegistry(
        [RepresentationSpec("POI-counts", "baseline", source="poi_category_counts", options={"log1p": False}),
         RepresentationSpec("Oracle", "reference", source="latents")], "/nonexistent", tiny_bundle)
    counts = reg.load("POI-counts")
    pois = tiny_bundle.pois()
    regions = tiny_bundle.regions()["region_id"].astype(str)
    inside = assign_points_to_regions(pois["lon"].to_numpy(), pois["lat"].to_numpy(), regions, tiny_bundle.h3_resolution)
    assert counts.to_numpy().sum() == pd.notna(inside).sum()
    assert set(counts.index) == set(regions)
    level1 = sorted(pois["category"].astype(str).str.split(";").str[0].unique())
    assert list(counts.columns) == [f"poi_{c}" for c in level1]
    oracle = reg.load("Oracle")
    k = tiny_bundle.latents().shape[1]
    assert oracle.shape[1] == k + k * (k + 1) // 2


def test_table_layouts(evaluated):
    res = evaluated[1].results
    roles = {"noise": "baseline", "half": "baseline", "good": "ours"}
    s, comp = summarise(res), compare_to_best_baseline(res, "good", ["half", "noise"])
    t = table1(s, comp, roles, "kfold", "ridge")
    md = t.to_markdown()
    assert md.splitlines()[0].startswith("| Method | PD R² | PD RMSE | CR R² | CR RMSE |")
    half_row = next(line for line in md.splitlines() if line.startswith("| half"))
    assert half_row.count("**") == 8  # "half" holds z0 itself: ridge's best in all four columns
    assert "**" not in next(line for line in md.splitlines() if line.startswith("| good"))
    assert any(line.startswith("| Impr.") for line in md.splitlines())
    assert any(line.startswith("| p (Wilcoxon)") for line in md.splitlines())
    tex = t.to_latex()
    body = [line for line in tex.splitlines() if line.endswith(r"\\") and "multicolumn" not in line]
    assert all(line.count("&") == 4 for line in body)
    assert r"\textbf{" in tex and r"$\pm$" in tex
    t2 = table2(s, comp, roles, "kfold", "ridge", city="test city")
    assert len(t2.rows) == 4 and t2.columns[-2:] == ["Impr.", "p (corrected t)"]


def test_figures_draw_from_stored_tables(evaluated, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from musecl.data.regions import regions_frame
    from musecl.evaluation.figures import (
        ablation_bars, collect_sensitivity, fold_map, indicator_maps, metric_bars, predicted_vs_true, save_figure,
        sensitivity_plot,
    )

    folds, out = evaluated
    res, pred = out.results, out.predictions
    roles = {"noise": "baseline", "half": "variant", "good": "ours"}
    s = summarise(res)
    regions = regions_frame(list(folds.region_ids))
    figures = {
        "bars": metric_bars(s, roles, "kfold", "ridge"),
        "ablation": ablation_bars(s, roles, ["good", "half", "absent"], "kfold", "ridge"),
        "scatter": predicted_vs_true(pred, "good", "kfold", "ridge"),
        "maps": indicator_maps(regions, pred, "good", "kfold", "ridge"),
        "folds": fold_map(regions, folds.to_frame(), ["kfold", "spatial"]),
    }
    sens = collect_sensitivity({("embedding_dim", 64): res, ("embedding_dim", 128): res, ("margin", 1.0): res,
                                ("margin", 5.0): res})
    assert set(sens["parameter"]) == {"embedding_dim", "margin"} and len(sens) == 4 * len(res)
    figures["sensitivity"] = sensitivity_plot(sens, "good", "kfold", "ridge")
    assert len(figures["sensitivity"].axes) == 2
    for name, fig in figures.items():
        path = save_figure(fig, tmp_path / f"{name}.png")
        assert path.stat().st_size > 5_000
    with pytest.raises(ValueError, match="no predictions"):
        predicted_vs_true(pred, "absent", "kfold", "ridge")
    with pytest.raises(ValueError, match="lacks columns"):
        sensitivity_plot(res, "good", "kfold", "ridge")


def test_both_mlps_in_the_tables_and_the_target_scaling_note(evaluated):
    from musecl.evaluation.paper import paper_tables, target_scaling_note
    from musecl.evaluation.stats import target_scaling_effect
    from musecl.evaluation.store import metrics_summary

    res, pred = evaluated[1].results, evaluated[1].predictions
    status = pd.DataFrame({"method": ["noise", "half", "good"], "available": True,
                           "role": ["baseline", "baseline", "ours"], "paper_name": ["", "", "MuseCL"]})
    reference = pd.DataFrame({"city": "Beijing", "indicator": "PD", "method": "MuseCL", "r2": [0.5], "rmse": [1.0]})
    tables = paper_tables(res, status, reference, "test city", {"protocol": "paper", "regressor": "mlp"})
    assert {"table1_paper_mlp", "table1_paper_mlp_std", "table2_paper_mlp_std"} <= set(tables)
    assert "what the paper's Tables 1-2 report" in tables["table1_paper_mlp"].caption
    assert "standardised" in tables["table1_paper_mlp_std"].caption
    assert "Tables 1-2" not in tables["table1_paper_mlp_std"].caption
    assert set(metrics_summary(summarise(res))["paper"]) == {"mlp", "mlp_std", "ridge"}
    effect = target_scaling_effect(res, pred, "paper")
    assert list(effect["regressor"]) == ["mlp", "mlp_std"] * 3 and list(dict.fromkeys(effect["method"])) == [
        "good", "half", "noise"]
    mean_r2 = summarise(res).query("protocol == 'paper'").groupby(["method", "regressor"])["r2_mean"].mean()
    np.testing.assert_allclose(effect.set_index(["method", "regressor"])["r2"], mean_r2.loc[list(
        effect.set_index(["method", "regressor"]).index)], atol=1e-12)
    assert (effect["target_sd"] > 0).all() and effect["corr"].between(-1, 1).all()
    note = target_scaling_note(effect)
    assert note.startswith("On the `paper` protocol, 3 representation(s) were fitted by both MLPs")
    assert f"{effect['r2'][effect['regressor'] == 'mlp_std'].max():.2f}" in note
    assert "nothing to compare" in target_scaling_note(effect.iloc[:0])
