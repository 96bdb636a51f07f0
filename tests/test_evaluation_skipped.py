"""The evaluation with representations that were not run (skipped input tables), small cities and undefined scores:
each case a warning naming what and why, and "not run: <reason>" cells in the tables (musecl/evaluation/skipped.py)."""
from __future__ import annotations

import warnings
from pathlib import Path

import h3
import numpy as np
import pandas as pd
import pytest

from musecl.config import repo_root
from musecl.embeddings import to_frame, write_embeddings, write_skipped
from musecl.evaluation import EvaluationSettings, ProtocolSpec, RepresentationRegistry, RepresentationSkipped, SplitSpec
from musecl.evaluation import evaluate, make_folds
from musecl.evaluation.findings import evaluation_findings
from musecl.evaluation.headline import headline_markdown, headline_metrics, mean_r2_table
from musecl.evaluation.paper import city_label_of, figure_plan, paper_tables, registry_roles
from musecl.evaluation.representations import RepresentationSpec
from musecl.evaluation.skipped import (feasible_settings, not_run_of, small_fold_warnings, undefined_note,
                                       warn_undefined)
from musecl.evaluation.stats import paired_tests, summarise
from musecl.evaluation.tables import load_reference

NO_POIS = "the city has no POIs"
INDICATORS = ["population_density", "crime"]


def compact_regions(n: int = 15, resolution: int = 8) -> list[str]:
    """`n` neighbouring H3 cells (a small compact city: they fall in few parent cells)."""
    centre = h3.latlng_to_cell(39.9, 116.4, resolution)
    return sorted(h3.grid_disk(centre, 3))[:n]


def scattered_regions(n: int = 15, resolution: int = 8) -> list[str]:
    """`n` H3 cells far apart (a scattered city: no region has a neighbour)."""
    return sorted(h3.latlng_to_cell(39.0 + 0.2 * i, 116.0 + 0.2 * i, resolution) for i in range(n))


def make_registry(folder: Path, regions: list[str], ours_skipped: bool = True) -> RepresentationRegistry:
    rng = np.random.default_rng(0)
    for name in ("rs", "sv"):
        write_embeddings(to_frame(regions, rng.normal(size=(len(regions), 4))), folder / f"{name}.parquet")
    write_skipped(folder / "poi_text.parquet", NO_POIS)
    if ours_skipped:
        write_skipped(folder / "musecl.parquet", NO_POIS)
    else:
        write_embeddings(to_frame(regions, rng.normal(size=(len(regions), 4))), folder / "musecl.parquet")
    specs = [
        RepresentationSpec("RS", "baseline", ("rs.parquet",)),
        RepresentationSpec("SV", "baseline", ("sv.parquet",)),
        RepresentationSpec("Add-svrv", "baseline", ("rs.parquet", "sv.parquet"), combine="sum", paper_name="Add-svrv"),
        RepresentationSpec("Concat", "baseline", ("rs.parquet", "sv.parquet", "poi_text.parquet"), paper_name="Concat"),
        RepresentationSpec("POI-text", "baseline", ("poi_text.parquet",)),
        RepresentationSpec("MuseCL", "ours", ("musecl.parquet",), paper_name="MuseCL"),
    ]
    return RepresentationRegistry(specs, folder)


def settings(k: int = 3, spatial_k: int | None = None) -> EvaluationSettings:
    protocols = [ProtocolSpec(SplitSpec("kfold", "kfold", repeats=2, k=k), ("ridge",))]
    if spatial_k:
        protocols.append(ProtocolSpec(SplitSpec("spatial", "spatial", repeats=1, k=spatial_k), ("ridge",)))
    return EvaluationSettings(protocols=tuple(protocols))


def targets(regions: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(rng.normal(size=(len(regions), len(INDICATORS))), index=pd.Index(regions, name="region_id"),
                        columns=INDICATORS)


def evaluated(tmp_path: Path, ours_skipped: bool = True):
    regions = compact_regions()
    registry = make_registry(tmp_path, regions, ours_skipped)
    with pytest.warns(UserWarning, match="not run"):
        features, status = registry.load_available()
    s = settings()
    folds = make_folds(regions, s.split_specs, s.seed, 8)
    return evaluate(features, targets(regions), folds, s, progress=False).results, status, registry


# ---- the registry -----------------------------------------------------------------------------------------------------
def test_registry_leaves_out_skipped_tables_and_combinations_with_a_reason(tmp_path: Path) -> None:
    registry = make_registry(tmp_path, compact_regions())
    with pytest.warns(UserWarning) as caught:
        features, status = registry.load_available(on_missing="error")  # skipped is not "missing": no error
    assert set(features) == {"RS", "SV", "Add-svrv"}
    messages = [str(w.message) for w in caught]
    assert "representation 'POI-text' is not evaluated: not run: the city has no POIs" in messages
    assert any(m.startswith("representation 'Concat' is not evaluated: not run: its part poi_text.parquet was not "
                            "run (the city has no POIs)") for m in messages)
    assert not_run_of(status) == {
        "Concat": "its part poi_text.parquet was not run (the city has no POIs)",
        "POI-text": NO_POIS,
        "MuseCL": NO_POIS,
    }
    with pytest.raises(RepresentationSkipped, match="representation 'MuseCL': not run: the city has no POIs"):
        registry.load("MuseCL")


def test_seed_tables_skip_representations_that_were_not_run(tmp_path: Path) -> None:
    regions = compact_regions()
    registry = make_registry(tmp_path / "main", regions)
    seed = tmp_path / "seeds" / "s1" / "embeddings"
    write_embeddings(to_frame(regions, np.ones((len(regions), 4))), seed / "rs.parquet")
    write_skipped(seed / "musecl.parquet", NO_POIS)
    registry.seeds_dir = tmp_path / "seeds"
    tables = registry.seed_tables(1)
    assert set(tables) == {"RS", "Add-svrv"}  # Concat and MuseCL have a skipped part


# ---- the tables, findings and headline --------------------------------------------------------------------------------
def test_tables_show_not_run_rows_and_skip_impr_when_ours_was_not_run(tmp_path: Path) -> None:
    results, status, _ = evaluated(tmp_path)
    reference = load_reference(repo_root() / "reports" / "reference" / "musecl_paper_results.csv")
    tables = paper_tables(results, status, reference, "tinytown", {"protocol": "kfold", "regressor": "ridge"},
                          city_label="tinytown")
    t1 = tables["table1_kfold_ridge"].to_markdown()
    assert "| MuseCL | not run: the city has no POIs |" in t1
    assert "| Concat | not run: its part poi_text.parquet was not run (the city has no POIs) |" in t1
    assert "| Impr. |" not in t1
    assert "- Note: Impr. and the paired tests are not computed: MuseCL (ours) was not run (the city has no POIs)" in t1
    assert "| POI-text | not run: the city has no POIs |" in t1
    assert "MuseCL & not run: the city has no POIs &" in tables["table1_kfold_ridge"].to_latex()
    t2 = tables["table2_kfold_ridge"]
    assert "MuseCL" in t2.columns and "not run: the city has no POIs" in t2.to_markdown()
    cmp = tables["paper_vs_ours"].to_markdown()
    assert "Ours (tinytown)" in cmp and "Ours (synthetic)" not in cmp
    assert "| not run: the city has no POIs |" in cmp  # the paper's MuseCL row
    plan = figure_plan(status, {k: {"protocol": "kfold", "regressor": "ridge"} for k in ("headline", "robust", "maps")},
                       results)
    assert plan["maps"]["method"] == "RS"  # ours not run: the first evaluated baseline


def test_findings_and_headline_say_what_was_not_run(tmp_path: Path) -> None:
    results, status, _ = evaluated(tmp_path)
    robust = {"protocol": "kfold", "regressor": "ridge"}
    roles, not_run = registry_roles(status), not_run_of(status)
    text = evaluation_findings(results, roles, robust, not_run=not_run)
    assert "MuseCL (ours) was not run (the city has no POIs), so nothing is compared against it" in text
    assert "Not run in this city (3 representations, left out of every table's numbers): Concat (its part" in text
    summary = summarise(results)
    numbers = headline_metrics(summary, roles, "kfold", "ridge", not_run=not_run)
    assert numbers["ours"] is None and numbers["rank"] == "not run: the city has no POIs"
    md = headline_markdown(numbers, mean_r2_table(summary, roles, "kfold", "ridge"), "MuseCL", "kfold", "ridge")
    assert "**MuseCL n/a**, not run: the city has no POIs" in md


def test_with_ours_evaluated_only_the_skipped_rows_are_added(tmp_path: Path) -> None:
    results, status, _ = evaluated(tmp_path, ours_skipped=False)
    reference = load_reference(repo_root() / "reports" / "reference" / "musecl_paper_results.csv")
    tables = paper_tables(results, status, reference, "synthetic-tiny", {"protocol": "kfold", "regressor": "ridge"})
    t1 = tables["table1_kfold_ridge"].to_markdown()
    assert "| Impr. |" in t1 and "| POI-text | not run: the city has no POIs |" in t1
    assert "Ours (synthetic)" in tables["paper_vs_ours"].to_markdown()  # the default label is unchanged
    text = evaluation_findings(results, registry_roles(status), {"protocol": "kfold", "regressor": "ridge"},
                               not_run=not_run_of(status))
    assert "MuseCL's R² averaged over the 2 indicators" in text and "Not run in this city" in text


def test_city_label() -> None:
    assert city_label_of({"name": "synthetic-default", "generator": {}}) == "synthetic"
    assert city_label_of({"name": "helsinki-centre"}) == "helsinki-centre"


# ---- small and scattered cities ---------------------------------------------------------------------------------------
def test_spatial_protocol_skipped_with_a_warning_when_parents_are_too_few() -> None:
    regions = compact_regions()
    with pytest.warns(UserWarning, match=r"protocol 'spatial': spatial k = 5 folds need at least 5 H3 parent cells "
                                         r"\(resolution 7\) holding the 15 regions, the city has \d"):
        kept, dropped = feasible_settings(settings(k=3, spatial_k=5), regions, 8)
    assert [p.name for p in kept.protocols] == ["kfold"] and set(dropped) == {"spatial"}
    with pytest.warns(UserWarning, match="protocol 'kfold': k = 20 folds need at least 20 regions, the city has 15"):
        with pytest.raises(ValueError, match="no evaluation protocol can split this city's regions"):
            feasible_settings(settings(k=20), regions, 8)


def test_scattered_city_keeps_a_feasible_spatial_protocol_silently() -> None:
    regions = scattered_regions()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept, dropped = feasible_settings(settings(k=3, spatial_k=3), regions, 8)
    assert not dropped and kept == settings(k=3, spatial_k=3)


def test_small_folds_warn_naming_protocol_k_and_regions_per_fold() -> None:
    regions = compact_regions()
    s = settings(k=5)
    folds = make_folds(regions, s.split_specs, s.seed, 8)
    with pytest.warns(UserWarning, match=r"protocol 'kfold': 15 regions in k = 5 folds leave 3 test regions per fold"):
        small_fold_warnings(folds.to_frame())


def test_undefined_scores_are_named_and_left_out(tmp_path: Path) -> None:
    regions = compact_regions()
    y = targets(regions)
    y["crime"] = 1.0
    y.iloc[0, 1] = 2.0  # constant on every test fold but one: R² undefined there
    s = settings(k=5)
    features = {"RS": to_frame(regions, np.random.default_rng(2).normal(size=(15, 3))).astype(float)}
    results = evaluate(features, y, make_folds(regions, s.split_specs, s.seed, 8), s, progress=False).results
    with pytest.warns(UserWarning, match=r"r2 undefined for indicator 'crime', protocol 'kfold', regressor 'ridge', "
                                         r"seed 0, repeat \d, fold \d \(3 test regions\), methods RS"):
        bad = warn_undefined(results)
    assert len(bad) >= 1 and set(bad["indicator"]) == {"crime"}
    note = undefined_note(results, "kfold", "ridge")
    assert note and note[0].startswith(f"{len(bad)} of {len(results)} fold scores undefined")
    p = paired_tests(np.array([0.1, np.nan, 0.3, 0.2]), np.array([0.0, 0.1, 0.1, 0.1]), test_train_ratio=0.25)
    assert p["n_pairs"] == 3 and np.isfinite(p["p_corrected_ttest"])


# ---- 06b and the explorer run only what the city has ------------------------------------------------------------------
class StubBundle:
    """A bundle with only the modalities named (has / has_modality as musecl.data.CityBundle)."""

    def __init__(self, modalities: tuple[str, ...]) -> None:
        self.modalities = modalities
        self.tables = {"rs": "remote_sensing", "sv": "street_view", "poi": "pois"}

    def has_modality(self, modality: str) -> bool:
        return modality in self.modalities

    def has(self, table: str) -> bool:
        return any(self.tables.get(m) == table for m in self.modalities)


def test_sensitivity_and_budget_curve_plan_only_the_modalities_present(tmp_path: Path) -> None:
    from musecl.stages import budget, sensitivity

    params = {"paths": {"work": str(tmp_path)}, "sensitivity": {"budget_curve": {"epochs": [0, 1], "runs": ["rs", "sv"]}}}
    write_skipped(tmp_path / "embeddings" / "musecl.parquet", NO_POIS)
    methods, skipped = sensitivity.plan(params, StubBundle(("rs", "sv")))
    assert methods == ["RS", "SV"] and skipped == {"MuseCL": NO_POIS}
    methods, skipped = sensitivity.plan(params, StubBundle(("sv", "poi")))
    assert methods == ["SV"]
    assert skipped == {"RS": "the city has no rs images", "MuseCL": NO_POIS}
    assert budget.skipped_runs(params, StubBundle(("sv", "poi"))) == {"RS": "the city has no rs images"}


def test_explorer_reads_no_pois_or_images_the_city_lacks() -> None:
    from musecl.stages.explorer import ExplorerSettings, region_thumbnails, region_top_pois

    assert region_top_pois(StubBundle(("rs",)), ["a", "b"], 5) == {"a": [], "b": []}
    assert region_thumbnails(StubBundle(()), ["a"], ExplorerSettings()) == {"a": {"rs": None, "sv": []}}
