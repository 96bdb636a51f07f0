"""Shared fixtures. `tiny_pipeline` runs the numbered notebooks on the tiny configuration, each at most once."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from musecl.config import deep_merge, repo_root

ROOT = repo_root(Path(__file__).parent)

# Pipeline order: running a notebook first runs every earlier one that has not run yet in this test session.
NOTEBOOK_ORDER = [
    "01_data_preparation",
    "02_contrastive_pairs",  # needs the bundle (01)
    "03_encoder_training",  # needs the triplets (02)
    "03b_baseline_encoders",  # needs the encoders' image caches (03)
    "04_poi_word2vec",  # needs only the bundle (01)
    "04b_captions",  # needs only the bundle (01)
    "04c_image_text",  # needs the encoders' image caches (03) and the selected captions (04b)
    "05_fusion",  # needs the encoders' rs/sv embeddings (03) and the text embeddings (04): keep 02-03 before it
    "05b_fusion_variants",  # needs 03b's random-positive encoders and 04-05's inputs
    "05c_training_seeds",  # retrains 03-05b's trained representations with other seeds (their inputs: 02-04b)
    "06_evaluation",  # every embedding table above (and any baseline stage): keep it after all of them
    "06b_sensitivity",  # the encoders' caches and triplets (02-03), the text vectors (04); folds as 06 makes them
    "07_paper_figures",  # only 06's stored results: always last
]


class TinyPipeline:
    """The numbered notebooks executed on the tiny configuration, with every output under one temporary folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        tiny = yaml.safe_load((ROOT / "tests" / "tiny_params.yaml").read_text()) or {}
        paths = {key: str(workdir / key) for key in ("bundle", "work", "models", "reports")}
        self.overrides: dict[str, Any] = deep_merge(tiny, {"paths": paths})
        self.executed: dict[str, Path] = {}
        self.allowed_paths: list[Path] = [workdir]  # temporary folders a test's notebooks may name (its own data)

    @property
    def paths(self) -> dict[str, Path]:
        return {key: Path(value) for key, value in self.overrides["paths"].items()}

    def run(self, name: str) -> Path:
        import nbformat

        from musecl.notebooks import hygiene_problems, run_notebook

        for earlier in NOTEBOOK_ORDER[: NOTEBOOK_ORDER.index(name) + 1]:
            if earlier not in self.executed:
                out = self.workdir / "executed" / f"{earlier}.ipynb"
                self.executed[earlier] = run_notebook(
                    earlier, ROOT / "params.yaml", self.overrides, output=out, progress=False
                )
                # every executed notebook reads cleanly (the tiny data's own folder is the one path allowed)
                problems = hygiene_problems(nbformat.read(out, as_version=4), allowed_paths=self.allowed_paths)
                assert not problems, f"{earlier}:\n  " + "\n  ".join(problems)
        return self.executed[name]


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> TinyPipeline:
    return TinyPipeline(tmp_path_factory.mktemp("tiny_pipeline"))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory):
    """A tiny synthetic city bundle generated directly (no notebook), shared by unit tests."""
    from musecl.synthetic import generate_city
    from musecl.synthetic.presets import preset

    out = tmp_path_factory.mktemp("tiny_city") / "city"
    generate_city(preset("tiny"), out, seed=7)
    from musecl.data import CityBundle

    return CityBundle(out)
