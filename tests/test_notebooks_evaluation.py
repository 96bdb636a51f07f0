"""Notebooks 06 (evaluation) and 07 (paper tables and figures) on the tiny configuration."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from musecl.evaluation.protocol import RESULT_COLUMNS, shared_test_sets
from musecl.evaluation.splits import Folds

pytestmark = pytest.mark.notebook


def test_evaluation_notebook(tiny_pipeline):
    tiny_pipeline.run("06_evaluation")
    out = tiny_pipeline.paths["work"] / "evaluation"
    results = pd.read_parquet(out / "results.parquet")
    predictions = pd.read_parquet(out / "predictions.parquet")
    status = pd.read_parquet(out / "representations.parquet")
    info = json.loads((out / "run_info.json").read_text())
    assert list(results.columns) == RESULT_COLUMNS
    # the pipeline's own representations are all there on tiny (nothing is silently missing)
    expected = {"RS", "SV", "POI-text", "Add-svrv", "Concat", "POI-counts", "MuseCL", "MuseCL+text", "Oracle",
                "UrbanCLIP", "UrbanLN+SI", "UrbanLN+SV", "UrbanLN+SV w/o IPSI", "UrbanLN+SV w/o MSD",
                "UrbanLN+SV w/o consensus", "UrbanLN+SV w/o refinement"}
    assert expected <= set(results["method"])
    assert set(status.loc[status["available"], "method"]) == set(results["method"])
    assert set(results["protocol"]) == {"paper", "kfold", "spatial", "urbanclip"}
    assert set(results.loc[results["protocol"] == "urbanclip", "regressor"]) == {"mlp_urbanclip"}
    assert results[["r2", "rmse", "mae"]].notna().all().all()
    assert shared_test_sets(predictions)
    assert Folds.load(out / "folds.parquet").fingerprint() == info["folds_fingerprint"]
    metrics = json.loads((tiny_pipeline.paths["reports"] / "metrics.json").read_text())
    indicators = set(results["indicator"])
    assert set(metrics["kfold"]["ridge"]["MuseCL"]) == indicators
    assert set(metrics["paper"]["mlp"]["MuseCL"]["poi_count"]) == {"r2", "rmse"}
    assert (tiny_pipeline.paths["reports"] / "06_evaluation" / "folds.png").is_file()
    # the checks cell ran and printed its flags (or that there are none)
    cells = json.loads(tiny_pipeline.executed["06_evaluation"].read_text())["cells"]
    printed = "".join("".join(o.get("text", "")) for c in cells if c.get("id") == "c3e1a0f3" for o in c["outputs"])
    assert "Above the ceiling" in printed or "Blown-up folds" in printed or "no representation above the ceiling" in printed


def test_paper_figures_notebook(tiny_pipeline):
    tiny_pipeline.run("07_paper_figures")
    out = tiny_pipeline.paths["reports"] / "07_paper_figures"
    for name in ("table1_paper_mlp", "table1_kfold_ridge", "table1_spatial_ridge", "table2_kfold_ridge",
                 "table1_urbanclip_mlp_urbanclip", "paper_vs_ours", "significance", "rank_agreement",
                 "paired_comparisons"):
        assert (out / "tables" / f"{name}.md").stat().st_size > 0
        assert (out / "tables" / f"{name}.tex").read_text().startswith(r"\begin{table}")
    table1 = (out / "tables" / "table1_kfold_ridge.md").read_text()
    assert "| UrbanLN+SV |" in table1 and "| UrbanCLIP |" in table1
    assert "| Impr. |" in table1 and "| p (corrected t) |" in table1 and "| *Oracle* |" in table1
    paper = (out / "tables" / "paper_vs_ours.md").read_text()
    # every row of the paper's tables has a counterpart here now (baselines and variants stages)
    assert "| PD | Inception v3 | SV ImageNet (Lite0) |" in paper and "not evaluated here yet" not in paper
    summary = (out / "summary.md").read_text()  # the README's block on the tiny city: the table and the findings
    assert "| MuseCL |" in summary and "| best baseline |" in summary and "| *ceiling: oracle* |" in summary
    assert "What the numbers show:" in summary and "**MuseCL** vs **UrbanLN+SV**" in summary
    for png in ("r2_bars_paper_protocol.png", "r2_bars_robust_protocol.png", "ablation_bars.png",
                "predicted_vs_true.png", "indicator_maps.png", "sensitivity.png"):
        assert (out / png).stat().st_size > 10_000
