"""The paper's MLP both ways: targets as they are (`mlp`, the authors' code) and standardised on the training rows
(`mlp_std`), and the settings that choose between them."""
from __future__ import annotations

import numpy as np
import pytest

from musecl.evaluation.metrics import r2_score
from musecl.evaluation.protocol import EvaluationSettings, ProtocolSpec
from musecl.evaluation.regressors import MLP_REGRESSORS, MLPConfig, MLPJob, fit_predict_mlp

@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is faster than several (and the evaluation runs each task on one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = MLPConfig(hidden=(32, 16), lr=1e-3, batch_size=16, max_epochs=100, patience=10, stack_size=4)


def _linear_problem(seed: int, mean: float, scale: float, n: int = 120, d: int = 6):
    """y = mean + scale * (0.8 x.w + 0.3 noise), |w| = 1: R² about 0.88 is reachable; four 60/20/20 splits."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=d)
    y = mean + scale * (0.8 * x @ (w / np.linalg.norm(w)) + 0.3 * rng.normal(size=n))
    order = rng.permutation(n)
    jobs = []
    for k in range(4):
        p = np.roll(order, 24 * k)
        jobs.append(MLPJob(k, np.sort(p[:72]), np.sort(p[72:96]), np.sort(p[96:]), target=0, seed=k))
    return x, y[:, None], jobs


def _test_r2(x, y, jobs, standardize: bool) -> np.ndarray:
    results = fit_predict_mlp(x, y, jobs, TINY, standardize_targets=standardize)
    return np.array([r2_score(y[j.test, 0], r.prediction) for j, r in zip(jobs, results)])


def test_standardised_mlp_predicts_on_the_target_scale():
    x, y, jobs = _linear_problem(0, mean=1000.0, scale=50.0)
    results = fit_predict_mlp(x, y, jobs, TINY, standardize_targets=True)
    for job, res in zip(jobs, results):
        truth = y[job.test, 0]
        assert abs(res.prediction.mean() - truth.mean()) < 0.5 * truth.std()  # mapped back: near 1000, not near 0
        assert r2_score(truth, res.prediction) > 0.5
        # the early-stopping MSE is reported in target units too (a standardised-scale MSE would be ~1e-3 of this)
        assert 0.01 < res.best_val_mse / y[job.val, 0].var() < 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_standardised_targets_beat_raw_targets_with_a_large_mean(seed):
    """Target mean 6, standard deviation ~1, 72 training rows: the same MLP, seeds and early stopping, only the
    targets' scaling differs. Fails if standardisation were a no-op (then both would give the same predictions)."""
    x, y, jobs = _linear_problem(seed, mean=6.0, scale=1.0)
    raw, std = _test_r2(x, y, jobs, False), _test_r2(x, y, jobs, True)
    assert std.mean() > 0.7
    assert std.mean() > raw.mean() + 0.4
    assert (std > raw).all()


def test_both_mlps_are_regressors_and_the_old_switch_is_refused():
    assert set(MLP_REGRESSORS) == {"mlp", "mlp_std", "mlp_urbanclip"}
    assert not MLP_REGRESSORS["mlp"] and MLP_REGRESSORS["mlp_std"] and MLP_REGRESSORS["mlp_urbanclip"]
    spec = ProtocolSpec.from_config("paper", {"split": "holdout", "regressors": ["mlp", "mlp_std", "ridge"]})
    assert spec.regressors == ("mlp", "mlp_std", "ridge")
    with pytest.raises(ValueError, match="regressors"):
        ProtocolSpec.from_config("paper", {"split": "holdout", "regressors": ["mlp_standardised"]})
    with pytest.raises(ValueError, match=r"standardize_targets is gone: list the regressor `mlp` .* `mlp_std`"):
        MLPConfig.from_config({"standardize_targets": True})
    with pytest.raises(ValueError, match=r"evaluation.mlp: unknown keys \['patiance'\]"):
        MLPConfig.from_config({"patiance": 3})


def test_evaluation_section_refuses_unknown_keys():
    base = {"seed": 0, "evaluation": {"protocols": {"paper": {"split": "holdout", "regressors": ["mlp"]}}}}
    assert EvaluationSettings.from_params(base).protocols[0].regressors == ("mlp",)
    typo = {**base, "evaluation": {**base["evaluation"], "n_job": 2}}
    with pytest.raises(ValueError, match=r"params.yaml evaluation: unknown setting\(s\) \['n_job'\]; known: \["):
        EvaluationSettings.from_params(typo)
    ridge = {**base, "evaluation": {**base["evaluation"], "ridge": {"alpha": [1.0]}}}
    with pytest.raises(ValueError, match=r"params.yaml evaluation.ridge: unknown setting\(s\) \['alpha'\]; known: "
                                         r"\['alphas'\]"):
        EvaluationSettings.from_params(ridge)


def test_urbanclip_head_trains_fixed_epochs_with_its_own_settings():
    """UrbanCLIP's head: one hidden layer of 256, AdamW with decay, dropout drawn per model from its own seed, no early
    stopping (every fit runs max_epochs and keeps its best validation epoch); same seeds give the same predictions."""
    from musecl.evaluation.regressors import URBANCLIP_MLP, fit_predict_mlp

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5))
    y = (x[:, :1] * 2 + 5 + 0.1 * rng.normal(size=(120, 1)))
    config = MLPConfig.from_config(URBANCLIP_MLP)
    assert config.hidden == (256,) and config.optimizer == "adamw" and config.patience is None
    jobs = [MLPJob(key=i, train=np.arange(0, 80), val=np.arange(80, 100), test=np.arange(100, 120), target=0, seed=i)
            for i in range(3)]
    first = fit_predict_mlp(x, y, jobs, config, standardize_targets=True)
    again = fit_predict_mlp(x, y, jobs, config, standardize_targets=True)
    assert all(r.epochs == 100 for r in first)
    assert all(np.array_equal(a.prediction, b.prediction) for a, b in zip(first, again))
    r2 = 1 - ((first[0].prediction - y[100:, 0]) ** 2).sum() / ((y[100:, 0] - y[100:, 0].mean()) ** 2).sum()
    assert r2 > 0.8
    with pytest.raises(ValueError, match="optimizer"):
        MLPConfig.from_config({"optimizer": "sgd"})
