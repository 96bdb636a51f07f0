"""Attentive fusion (eqs. 8-11): attention weights, batched = per-region, losses, training, outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from musecl.embeddings import read_embeddings, to_frame, write_embeddings
from musecl.fusion import (
    AttentiveFusion,
    FusionConfig,
    alignment_loss,
    attention_summary,
    describe_inputs,
    evaluate_loss,
    fuse_regions,
    load_fusion_model,
    save_fusion_model,
    write_attention,
)

DIM = 8


def _tables(n: int = 40, dim: int = DIM, seed: int = 0, gate_scale: float = 3.0):
    """RS, SV and a text table that is a region-dependent mix of the two (so attention has something to learn)."""
    rng = np.random.default_rng(seed)
    ids = [f"r{i:03d}" for i in range(n)]
    rs = rng.normal(size=(n, dim))
    sv = rng.normal(size=(n, dim)) * 1.5
    gate = 1 / (1 + np.exp(-gate_scale * rs[:, 0]))
    text = gate[:, None] * rs + (1 - gate[:, None]) * sv
    return to_frame(ids, rs), to_frame(ids, sv), to_frame(ids, text), gate


def _reference_fusion(model: AttentiveFusion, e_rs: np.ndarray, e_sv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eqs. 8-10 for ONE region, written out in numpy as in the authors' per-region loop."""
    W = model.W.detach().numpy().astype(np.float64)
    b = model.b.detach().numpy().astype(np.float64)
    u = model.u.detach().numpy().astype(np.float64)[:, 0]
    s = np.array([np.tanh(e_rs @ W + b) @ u, np.tanh(e_sv @ W + b) @ u])
    alpha = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    return alpha[0] * e_rs + alpha[1] * e_sv, alpha


def test_attention_weights_sum_to_one_and_mask() -> None:
    torch.manual_seed(0)
    model = AttentiveFusion(DIM, torch.Generator().manual_seed(1))
    x = torch.randn(10, 2, DIM) * 3
    mask = torch.ones(10, 2, dtype=torch.bool)
    mask[3, 1] = False  # region 3 has no street view
    mask[7, 0] = False  # region 7 has no remote sensing
    fused, weights = model(x, mask)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(10))
    assert (weights >= 0).all()
    assert weights[3].tolist() == [1.0, 0.0] and weights[7].tolist() == [0.0, 1.0]
    torch.testing.assert_close(fused[3], x[3, 0])
    torch.testing.assert_close(fused[7], x[7, 1])


def test_batched_fusion_equals_per_region_computation() -> None:
    rs, sv, _, _ = _tables(n=25)
    model = AttentiveFusion(DIM, torch.Generator().manual_seed(3))
    x = torch.stack([torch.tensor(rs.to_numpy()), torch.tensor(sv.to_numpy())], dim=1)
    with torch.no_grad():
        fused, weights = model(x)
        for i in range(len(rs)):
            one_fused, one_weights = model(x[i:i + 1])  # the module on a batch of one region
            torch.testing.assert_close(one_fused[0], fused[i])
            ref_fused, ref_alpha = _reference_fusion(model, rs.to_numpy()[i].astype(np.float64),
                                                     sv.to_numpy()[i].astype(np.float64))
            np.testing.assert_allclose(fused[i].numpy(), ref_fused, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(weights[i].numpy(), ref_alpha, rtol=1e-4, atol=1e-6)


def test_batched_mse_gradient_is_mean_of_per_region_gradients() -> None:
    """A batched MSE step follows the average of the authors' per-region gradients (same objective, batched)."""
    rs, sv, text, _ = _tables(n=12)
    model = AttentiveFusion(DIM, torch.Generator().manual_seed(5))
    x = torch.stack([torch.tensor(rs.to_numpy()), torch.tensor(sv.to_numpy())], dim=1)
    t = torch.tensor(text.to_numpy())
    model.zero_grad()
    alignment_loss(model(x)[0], t, "mse").backward()
    batched = [p.grad.clone() for p in model.parameters()]
    summed = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(len(rs)):
        model.zero_grad()
        alignment_loss(model(x[i:i + 1])[0], t[i:i + 1], "mse").backward()
        summed = [s + p.grad for s, p in zip(summed, model.parameters())]
    for g_batch, g_sum in zip(batched, summed):
        torch.testing.assert_close(g_batch, g_sum / len(rs), rtol=1e-4, atol=1e-7)


def test_alignment_losses_by_hand() -> None:
    fused = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert float(alignment_loss(fused, text, "mse")) == pytest.approx((0 + 1 + 0 + 4) / 4)
    # cosine matrix [[1/sqrt2, 0], [1/sqrt2, 0]] (zero text vector -> cosine 0); tau = 0.5
    c = 1 / np.sqrt(2) / 0.5
    logits = np.array([[c, 0.0], [c, 0.0]])

    def ce(rows: np.ndarray) -> float:
        return float(np.mean([-(r[i] - np.log(np.exp(r).sum())) for i, r in enumerate(rows)]))

    expected = 0.5 * (ce(logits) + ce(logits.T))
    assert float(alignment_loss(fused, text, "infonce", 0.5)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="no alignment loss"):
        alignment_loss(fused, text, "cosine")


@pytest.mark.parametrize("loss", ["mse", "infonce"])
def test_training_decreases_the_loss_and_learns_the_gate(loss: str) -> None:
    rs, sv, text, gate = _tables(n=120, seed=1)
    config = FusionConfig(loss=loss, epochs=40, batch_size=32, lr=1e-2, seed=7)
    untrained = fuse_regions(rs, sv, text, FusionConfig(loss="none", seed=7))
    result = fuse_regions(rs, sv, text, config)
    before = evaluate_loss(untrained, rs, sv, text, loss)
    after = evaluate_loss(result, rs, sv, text, loss)
    # the best any attention can do: fused == text exactly (text is a convex mix of RS and SV)
    t = torch.tensor(text.to_numpy())
    optimum = float(alignment_loss(t, t, loss, config.temperature))
    assert after - optimum < 0.3 * (before - optimum)
    assert result.history["loss"].iloc[-1] < result.history["loss"].iloc[0]
    assert len(result.history) == 40
    # the learned RS weight follows the gate that generated the text vectors
    assert np.corrcoef(result.attention["alpha_rs"], gate)[0, 1] > 0.8
    np.testing.assert_allclose(result.attention[["alpha_rs", "alpha_sv"]].sum(axis=1), 1.0, rtol=1e-6)


def test_fusion_is_seeded() -> None:
    rs, sv, text, _ = _tables()
    a = fuse_regions(rs, sv, text, FusionConfig(epochs=3, batch_size=8, seed=1))
    b = fuse_regions(rs, sv, text, FusionConfig(epochs=3, batch_size=8, seed=1))
    c = fuse_regions(rs, sv, text, FusionConfig(epochs=3, batch_size=8, seed=2))
    pd.testing.assert_frame_equal(a.embeddings, b.embeddings)
    pd.testing.assert_frame_equal(a.history, b.history)
    assert not np.allclose(a.embeddings.to_numpy(), c.embeddings.to_numpy())


def test_loss_none_keeps_the_seeded_initial_attention() -> None:
    rs, sv, text, _ = _tables()
    none = fuse_regions(rs, sv, None, FusionConfig(loss="none", seed=4))
    assert none.history.empty and none.seconds < 1.0
    init = AttentiveFusion(DIM, torch.Generator().manual_seed(4))
    for name, value in init.state_dict().items():
        torch.testing.assert_close(none.state[name], value)
    trained = fuse_regions(rs, sv, text, FusionConfig(loss="mse", epochs=2, seed=4))
    assert not np.allclose(trained.attention["alpha_rs"], none.attention["alpha_rs"])
    with pytest.raises(ValueError, match="needs the POI text table"):
        fuse_regions(rs, sv, None, FusionConfig(loss="mse"))


def test_output_variants() -> None:
    rs, sv, text, _ = _tables()
    image = fuse_regions(rs, sv, text, FusionConfig(epochs=2, seed=0))
    joined = fuse_regions(rs, sv, text, FusionConfig(epochs=2, seed=0, output="image+text"))
    assert image.embeddings.shape == (40, DIM) and joined.embeddings.shape == (40, 2 * DIM)
    np.testing.assert_array_equal(joined.embeddings.to_numpy()[:, :DIM], image.embeddings.to_numpy())
    np.testing.assert_array_equal(joined.embeddings.to_numpy()[:, DIM:], text.to_numpy())
    # fused vectors are convex combinations of the two inputs
    a = image.attention["alpha_rs"].to_numpy()[:, None]
    np.testing.assert_allclose(image.embeddings.to_numpy(), a * rs.to_numpy() + (1 - a) * sv.to_numpy(),
                               rtol=1e-5, atol=1e-6)


def test_missing_modalities_and_empty_text() -> None:
    rs, sv, text, _ = _tables(n=30)
    sv_partial = sv.drop(index=["r003", "r004"])
    rs_partial = rs.drop(index=["r010"])
    text = text.copy()
    text.loc[["r020", "r021"]] = 0.0  # regions without POI tokens
    result = fuse_regions(rs_partial, sv_partial, text, FusionConfig(epochs=2, seed=0))
    att = result.attention
    assert len(att) == 30 and result.details["regions_without_sv"] == 2 and result.details["regions_without_rs"] == 1
    assert att.loc["r003", "alpha_sv"] == 0.0 and att.loc["r010", "alpha_rs"] == 0.0
    np.testing.assert_allclose(result.embeddings.loc["r010"].to_numpy(), sv.loc["r010"].to_numpy(), rtol=1e-6)
    assert not att.loc["r020", "in_loss"] and att["in_loss"].sum() == 28
    kept = fuse_regions(rs, sv, text, FusionConfig(epochs=1, seed=0, skip_empty_text=False))
    assert kept.attention["in_loss"].all()


def test_input_errors_name_the_problem() -> None:
    rs, sv, text, _ = _tables()
    wide_sv = to_frame(sv.index, np.zeros((len(sv), DIM + 1)))
    with pytest.raises(ValueError, match="remote-sensing embeddings have 8 dimensions, street-view 9"):
        fuse_regions(rs, wide_sv, text, FusionConfig())
    with pytest.raises(ValueError, match="lacks 2 of the 40 image regions"):
        fuse_regions(rs, sv, text.iloc[2:], FusionConfig())
    wide_text = to_frame(text.index, np.ones((len(text), 2 * DIM)))
    with pytest.raises(ValueError, match="vector_size"):
        fuse_regions(rs, sv, wide_text, FusionConfig())
    with pytest.raises(ValueError, match="fusion.loss"):
        FusionConfig(loss="triplet")
    with pytest.raises(ValueError, match="fusion.output"):
        FusionConfig(output="text")
    assert FusionConfig.from_params({"loss": "infonce", "batch_size": None}, seed=3) == FusionConfig(
        loss="infonce", batch_size=None, seed=3
    )


def test_fusion_config_refuses_unknown_keys() -> None:
    from dataclasses import asdict

    with pytest.raises(ValueError, match=r"params.yaml fusion: unknown setting\(s\) \['comment', 'epoch'\]; known: \["):
        FusionConfig.from_params({"loss": "infonce", "epoch": 3, "comment": 1}, seed=3)
    saved = asdict(FusionConfig(loss="mse", epochs=2, seed=9))  # a saved config carries its seed: the argument wins
    assert FusionConfig.from_params(saved, seed=3) == FusionConfig(loss="mse", epochs=2, seed=3)


def test_outputs_round_trip(tmp_path: Path) -> None:
    rs, sv, text, _ = _tables()
    result = fuse_regions(rs, sv, text, FusionConfig(epochs=2, seed=0, loss="infonce", batch_size=None))
    write_embeddings(result.embeddings, tmp_path / "musecl.parquet")
    pd.testing.assert_frame_equal(read_embeddings(tmp_path / "musecl.parquet"), result.embeddings,
                                  check_index_type=False)
    write_attention(result.attention, tmp_path / "att.parquet")
    att = pd.read_parquet(tmp_path / "att.parquet")
    assert list(att.columns) == ["region_id", "alpha_rs", "alpha_sv", "in_loss"] and len(att) == 40
    model, config = load_fusion_model(save_fusion_model(result, tmp_path / "fusion" / "fusion.pt"))
    assert config == result.config
    x = torch.stack([torch.tensor(rs.to_numpy()), torch.tensor(sv.to_numpy())], dim=1)
    with torch.no_grad():
        np.testing.assert_allclose(model(x)[0].numpy(), result.embeddings.to_numpy(), rtol=1e-6)


def test_summaries() -> None:
    att = pd.DataFrame({"alpha_rs": [0.2, 0.4, 0.6, 0.8], "alpha_sv": [0.8, 0.6, 0.4, 0.2]})
    summary = attention_summary(att)
    assert summary.loc["alpha_rs", "mean"] == pytest.approx(0.5)
    assert summary.loc["alpha_rs", "std"] == pytest.approx(np.std([0.2, 0.4, 0.6, 0.8]))
    assert summary.loc["alpha_sv", "q50"] == pytest.approx(0.5)
    assert summary.loc["alpha_rs", "share_above_half"] == 0.5
    rs, sv, text, _ = _tables()
    inputs = describe_inputs(rs, sv, text)
    assert inputs.loc["street_view", "dim"] == DIM and inputs.loc["poi_text", "zero_vectors"] == 0


def test_fusion_module_loads_without_geo_or_text_stack() -> None:
    """Training code must import on a bare GPU machine: torch, numpy, pandas only."""
    import subprocess
    import sys

    code = ("import sys, musecl.fusion; heavy = [m for m in ('geopandas', 'h3', 'shapely', 'gensim', 'matplotlib', "
            "'dvclive', 'sklearn') if m in sys.modules]; print(heavy); assert not heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
    from musecl.data.schema import REGION_ID
    from musecl.embeddings import embedding_columns
    from musecl import fusion

    assert fusion.REGION_ID == REGION_ID
    rs, sv, text, _ = _tables(n=5)
    result = fuse_regions(rs, sv, text, FusionConfig(epochs=1))
    assert list(result.embeddings.columns) == embedding_columns(DIM)
    assert result.embeddings.index.name == REGION_ID



def test_saved_parameters_are_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    """fusion.pt holds no timing or path: two runs with the same seed write the same bytes (DVC sees no change)."""
    rs, sv, text, _ = _tables()
    paths = []
    for run in ("a", "b"):
        result = fuse_regions(rs, sv, text, FusionConfig(epochs=2, seed=5))
        paths.append(save_fusion_model(result, tmp_path / run / "fusion.pt"))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    payload = torch.load(paths[0], weights_only=True)
    assert "seconds" not in payload and not any("second" in key for key in payload["details"])


def test_untrained_fusion_is_the_seeded_initialisation() -> None:
    from musecl.fusion import untrained_fusion

    rs, sv, text, _ = _tables()
    config = FusionConfig(loss="infonce", output="image+text", epochs=3, seed=6)
    untrained = untrained_fusion(rs, sv, text, config)
    assert untrained.config == FusionConfig(loss="none", output="image+text", seed=6) and untrained.history.empty
    expected = fuse_regions(rs, sv, text, FusionConfig(loss="none", output="image+text", seed=6))
    pd.testing.assert_frame_equal(untrained.embeddings, expected.embeddings)


def test_variant_tables(tmp_path: Path) -> None:
    import json
    from types import SimpleNamespace

    from musecl.stages import variants

    rs, sv, text, _ = _tables()
    specs = {"svrv": SimpleNamespace(rs="rs", sv="sv", fusion={"loss": "none", "output": "image"}, description="d1"),
                "nce": SimpleNamespace(rs="rs_random", sv="sv", fusion={"loss": "infonce", "output": "image"},
                                       description="d2")}
    table = variants.variant_table(specs)
    assert list(table.index) == ["svrv", "nce"] and list(table.columns) == ["rs", "sv", "loss", "output", "description"]
    assert table.loc["nce", "rs"] == "rs_random" and table.loc["svrv", "loss"] == "none"
    results = {"svrv": fuse_regions(rs, sv, None, FusionConfig(loss="none", seed=1)),
               "nce": fuse_regions(rs, sv, text, FusionConfig(loss="infonce", epochs=2, seed=1))}
    written = variants.write_variant_metrics(results, tmp_path / "variants")
    assert [p.name for p in written] == ["svrv.json", "nce.json"]
    assert json.loads(written[1].read_text())["config"]["loss"] == "infonce"
    metrics = variants.variant_metrics_table(results)
    assert list(metrics.index) == ["svrv", "nce"] and "config" not in metrics.columns and "attention" not in metrics
    assert pd.isna(metrics.loc["svrv", "final_loss"]) and metrics.loc["nce", "regions"] == 40
    summaries = variants.attention_summaries(results)
    pd.testing.assert_frame_equal(summaries.loc["nce"], attention_summary(results["nce"].attention))
    for name, result in results.items():
        write_embeddings(result.embeddings, tmp_path / f"{name}.parquet")
    checks = variants.variant_output_checks(results, tmp_path)
    assert list(checks.index) == ["svrv", "nce"] and checks.to_numpy().all()
    broken = results["nce"].embeddings.copy()
    broken.iloc[0, 0] = np.nan
    write_embeddings(broken, tmp_path / "nce.parquet")
    with pytest.raises(ValueError, match="nce.parquet: embedding table contains NaN"):  # read_embeddings refuses it
        variants.variant_output_checks(results, tmp_path)
    results["nce"].attention.loc["r000", "alpha_rs"] = 0.9  # weights no longer sum to one
    write_embeddings(results["nce"].embeddings, tmp_path / "nce.parquet")
    checks = variants.variant_output_checks(results, tmp_path)
    assert checks.loc["nce", "one row per region"] and not checks.loc["nce", "attention sums to 1"]


# ---- fusion options: one global attention pair, L2-normalised inputs (params.yaml fusion.attention / normalize_inputs)
def test_default_options_are_musecl() -> None:
    config = FusionConfig()
    assert config.attention == "per_region" and config.normalize_inputs is False
    with pytest.raises(ValueError, match="fusion.attention"):
        FusionConfig(attention="shared")
    with pytest.raises(ValueError, match="fusion.normalize_inputs"):
        FusionConfig(normalize_inputs="yes")
    assert FusionConfig.from_params({"attention": "global", "normalize_inputs": True}, seed=1) == FusionConfig(
        attention="global", normalize_inputs=True, seed=1)


def test_global_attention_is_one_weight_pair_for_every_region() -> None:
    from musecl.fusion.model import GlobalAttentionFusion

    rs, sv, text, _ = _tables()
    untrained = fuse_regions(rs, sv, None, FusionConfig(loss="none", attention="global", seed=2))
    assert set(untrained.state) == {"logits"}
    np.testing.assert_allclose(untrained.embeddings.to_numpy(), (rs.to_numpy() + sv.to_numpy()) / 2, rtol=1e-6)
    trained = fuse_regions(rs, sv, text, FusionConfig(attention="global", epochs=20, lr=1e-2, seed=2))
    alpha = trained.attention["alpha_sv"].to_numpy()
    assert np.ptp(alpha) == 0 and alpha[0] != 0.5  # shared by all regions, and it trained
    a = trained.attention["alpha_rs"].to_numpy()[:, None]
    np.testing.assert_allclose(trained.embeddings.to_numpy(), a * rs.to_numpy() + (1 - a) * sv.to_numpy(),
                               rtol=1e-5, atol=1e-6)
    # the masked softmax still gives a region without street view weight 1 on remote sensing
    model = GlobalAttentionFusion(DIM)
    mask = torch.ones(3, 2, dtype=torch.bool)
    mask[1, 1] = False
    _, weights = model(torch.randn(3, 2, DIM), mask)
    assert weights[1].tolist() == [1.0, 0.0] and weights[0].tolist() == [0.5, 0.5]


def test_normalised_inputs_make_the_fusion_blind_to_vector_norms() -> None:
    """With normalize_inputs, rescaling any region's RS, SV or text vector changes neither the attention nor the
    fused vector (both see only directions); without it, the attention moves."""
    rs, sv, text, _ = _tables(n=30)
    rng = np.random.default_rng(0)
    scaled = [t * rng.uniform(0.2, 5.0, size=(len(t), 1)) for t in (rs, sv, text)]
    for loss in ("none", "mse"):
        config = FusionConfig(loss=loss, normalize_inputs=True, epochs=3, batch_size=8, seed=3)
        a, b = fuse_regions(rs, sv, text, config), fuse_regions(*scaled, config)
        np.testing.assert_allclose(a.attention[["alpha_rs", "alpha_sv"]], b.attention[["alpha_rs", "alpha_sv"]],
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.embeddings.to_numpy(), b.embeddings.to_numpy(), rtol=1e-4, atol=1e-5)
        norms = np.linalg.norm(a.embeddings.to_numpy(), axis=1)
        assert (norms <= 1 + 1e-5).all()  # a convex combination of two unit vectors
    raw = FusionConfig(loss="none", seed=3)
    assert not np.allclose(fuse_regions(rs, sv, text, raw).attention["alpha_rs"],
                           fuse_regions(*scaled, raw).attention["alpha_rs"])
    joined = fuse_regions(rs, sv, text, FusionConfig(loss="none", normalize_inputs=True, output="image+text"))
    np.testing.assert_array_equal(joined.embeddings.to_numpy()[:, DIM:], text.to_numpy())  # the stored text vector


@pytest.mark.parametrize("options", [{"attention": "global"}, {"normalize_inputs": True},
                                     {"attention": "global", "normalize_inputs": True}])
def test_options_round_trip_and_score(tmp_path: Path, options: dict) -> None:
    from musecl.fusion import untrained_fusion
    from musecl.fusion.model import prepare_modalities

    rs, sv, text, _ = _tables()
    result = fuse_regions(rs, sv, text, FusionConfig(epochs=2, seed=0, **options))
    model, config = load_fusion_model(save_fusion_model(result, tmp_path / "fusion.pt"))
    assert config == result.config
    x = prepare_modalities(torch.stack([torch.tensor(rs.to_numpy()), torch.tensor(sv.to_numpy())], dim=1), config)
    with torch.no_grad():
        np.testing.assert_allclose(model(x)[0].numpy(), result.embeddings.to_numpy(), rtol=1e-6)
    untrained = untrained_fusion(rs, sv, text, result.config)
    assert untrained.config.attention == result.config.attention
    assert untrained.config.normalize_inputs == result.config.normalize_inputs
    assert evaluate_loss(result, rs, sv, text, "mse") <= evaluate_loss(untrained, rs, sv, text, "mse") + 1e-6
