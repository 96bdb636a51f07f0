"""Config sections built from params.yaml refuse keys they do not know, naming the key and the known ones (the
fusion's refusal is in tests/test_fusion.py, the evaluation's in tests/test_mlp_targets.py)."""
from __future__ import annotations

import pytest

from musecl.encoders import LossSpec, TrainConfig


def test_encoder_loss_refuses_unknown_keys():
    assert LossSpec.from_dict({"kind": "triplet", "margin": 10.0}) == LossSpec("triplet", margin=10.0)
    with pytest.raises(ValueError, match=r"unknown encoder loss setting\(s\) \['marign'\]; known: \["):
        LossSpec.from_dict({"kind": "triplet", "marign": 10.0})
    with pytest.raises(ValueError, match=r"unknown encoder loss setting\(s\) \['temp'\]"):
        TrainConfig.from_dict({"loss": {"kind": "ntxent", "temp": 0.1}})


def test_encoder_settings_from_params_refuse_a_misspelt_loss_key():
    from musecl.methods.image import config_from_spec

    params = {"seed": 0, "encoders": {}}
    assert config_from_spec({"loss": {"margin": 3.0}}, params, None).loss.margin == 3.0
    with pytest.raises(ValueError, match=r"unknown encoder loss setting\(s\) \['margn'\]"):
        config_from_spec({"loss": {"margn": 3.0}}, params, None)
