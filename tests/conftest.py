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


WORKER_MEMORY_GB = 3.5  # a worker's peak with its notebook kernel (2 workers: 6.3 GB used, ~0.5 GB of it at rest)


def auto_workers(cores: int, available_gb: float | None) -> int:
    """Workers for `-n auto`: one per core, as many as the available memory holds (at least one)."""
    by_memory = cores if available_gb is None else int(available_gb // WORKER_MEMORY_GB)
    return max(1, min(cores, by_memory))


def available_memory_gb() -> float | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: `-n auto`
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    import os

    from musecl.synthetic.generate import usable_cpus

    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    available = available_memory_gb()
    workers = auto_workers(cores := usable_cpus(), available)
    if workers < cores:
        print(f"pytest-xdist: {workers} worker(s) for {cores} cores: {available:.1f} GB of memory available, "
              f"about {WORKER_MEMORY_GB} GB per worker (tests/conftest.py)")
    return workers


def pytest_configure(config: pytest.Config) -> None:
    """In a pytest-xdist worker (`make test` runs `pytest -n auto --dist loadgroup`), every process it starts shares
    the cores with the other workers: torch, OpenMP and BLAS get cores // workers threads (at least 1), inherited by the
    notebooks' kernels and any subprocess. Left at torch's default (all cores in every worker) two workers on 2 cores
    ran test_encoders.py 4x slower than one worker alone (266 s for two copies vs 96 s with one thread each)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    import os

    from musecl.synthetic.generate import usable_cpus

    threads = str(max(1, usable_cpus() // int(workerinput.get("workercount", 1))))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads


# ---- pytest-xdist: `make test` runs `pytest -n auto --dist loadgroup` (one worker per core) -------------------------
# Tests that share an expensive fixture run in one worker, so that each tiny pipeline runs its notebooks once per session
# (as without xdist) and module fixtures are built once; the pipelines start first, the unit tests fill in around them.
# The groups are computed from test ids (the controller that schedules sees nothing else); every worker checks them
# against the fixtures each test really uses (`check_groups`).
TINY_PIPELINE_FILES = {  # the files with tests that use the session's `tiny_pipeline` fixture
    "test_notebooks_baselines.py", "test_notebooks_evaluation.py", "test_notebooks_imagetext.py",
    "test_notebooks_pairs_encoders.py", "test_notebooks_prepare.py", "test_notebooks_text_fusion.py",
    "test_seeds.py", "test_sensitivity.py",
}
MODALITY_CITIES = ("no_poi", "no_mobility", "images_only")  # test_notebooks_modalities.CITIES: one group per city
FIRST = ["tiny_pipeline", "tests/test_notebooks_build.py", "modalities_images_only", "modalities_no_poi",
         "modalities_no_mobility", "tests/test_oracle_zoo.py"]  # the longest groups, started first


def xdist_group(nodeid: str) -> str:
    """The group of a test id: `tiny_pipeline`, `modalities_<city>` or the test's file."""
    path, _, rest = nodeid.partition("::")
    if Path(path).name in TINY_PIPELINE_FILES:
        return "tiny_pipeline"
    if Path(path).name == "test_notebooks_modalities.py" and "[" in rest:
        cities = [p for p in rest[rest.index("[") + 1:-1].split("-") if p in MODALITY_CITIES]
        if cities:
            return f"modalities_{cities[0]}"
    return path


def check_groups(items: list[pytest.Item]) -> None:
    """Every test that uses a tiny pipeline is in that pipeline's group (else it would run the pipeline again)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if "tiny_pipeline" in item.fixturenames:
            expected = "tiny_pipeline"
        elif callspec is not None and "city_pipeline" in callspec.params:
            expected = f"modalities_{callspec.params['city_pipeline']}"
        else:
            continue
        if xdist_group(item.nodeid) != expected:
            raise pytest.UsageError(
                f"{item.nodeid} uses the {expected.split('_')[0]} pipeline but tests/conftest.py puts it in group "
                f"{xdist_group(item.nodeid)!r}: add its file to TINY_PIPELINE_FILES (or the city to MODALITY_CITIES)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    check_groups(items)
    if getattr(config, "workerinput", None) is not None:  # an xdist worker: the longest groups first (stable sort)
        items.sort(key=lambda item: FIRST.index(g) if (g := xdist_group(item.nodeid)) in FIRST else len(FIRST))


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup` (and plain `-n N`, whose default `load` would run a pipeline in every worker) with the groups
    of `xdist_group`, sent to the workers in collection order (`FIRST` first).

    pytest-xdist's own loadgroup reads `xdist_group` marks by renaming the test ids, which pytest 9 no longer allows
    (every test became its own group): this scheduler groups by id instead."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class PipelineGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    config.option.loadscopereorder = False  # keep the collection order (pipelines first), not the largest count first
    return PipelineGroups(config, log)


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
