"""The README's results summary is the committed run's (reports/07_paper_figures/summary.md, written by the `figures`
stage), and the summary table follows the numbers (small synthetic result frames)."""
from __future__ import annotations

import pytest

from musecl import readme
from musecl.config import repo_root
from musecl.evaluation.summary import summary_markdown, summary_table
from tests.test_findings import ROLES, levels, scores


def test_readme_holds_the_committed_summary():
    root = repo_root()
    summary = (root / readme.SUMMARY).read_text()
    assert readme.embedded((root / "README.md").read_text()) == summary.strip("\n") + "\n", (
        "README.md's results summary is not reports/07_paper_figures/summary.md: run `python -m musecl.readme`")
    assert readme.main(["--check"]) == 0


def test_embed_replaces_only_the_block_and_is_idempotent():
    text = f"# title\n\nbefore\n\n{readme.BEGIN}\n\nold table\n\n{readme.END}\n\nafter\n"
    once = readme.embed(text, "| a |\n|---|\n| 1 |\n")
    assert once.startswith("# title\n\nbefore\n\n") and once.endswith(f"{readme.END}\n\nafter\n")
    assert "old table" not in once and readme.embedded(once) == "| a |\n|---|\n| 1 |\n"
    assert readme.embed(once, "| a |\n|---|\n| 1 |\n") == once


def test_embed_refuses_a_readme_without_its_markers():
    with pytest.raises(ValueError, match="expected one line"):
        readme.embed("# no markers\n", "x")
    with pytest.raises(ValueError, match="expected one line"):
        readme.embedded(f"{readme.END}\n{readme.BEGIN}\n")


def test_summary_table_follows_the_numbers():
    res = scores(levels(0.70, 0.20), noise=0.05)
    table = summary_table(res, ROLES, "kfold", "ridge", {"*ceiling: oracle*": ["Oracle"], "floor / none": ["Pixels",
                                                                                                          "Missing"]})
    lines = table.splitlines()
    assert lines[0] == "| | PD | CR |"
    ours = res[res["method"] == "Ours"].groupby("indicator")["r2"].mean()
    assert lines[2] == f"| Ours | {ours['population_density']:.3f} | {ours['crime']:.3f} |"
    b1 = res[(res["method"] == "B1") & (res["indicator"] == "population_density")]["r2"].mean()
    b2 = res[(res["method"] == "B2") & (res["indicator"] == "crime")]["r2"].mean()
    assert lines[3] == f"| best baseline | {b1:.3f} B1 | {b2:.3f} B2 |"  # the best baseline of each indicator, named
    p_pd, p_cr = lines[4].split(" | ")[1:3]
    assert p_pd == "<0.001" or float(p_pd) < 0.05  # 0.70 against 0.50: significant
    assert float(p_cr.rstrip(" |").replace("<", "")) < 0.05  # 0.20 against 0.35: significant the other way
    assert lines[5].startswith("| *ceiling: oracle* | 0.9") and lines[6].endswith(" / n/a |")
    # a row whose methods have no results at all (a city without that modality) is left out
    assert "none at all" not in summary_table(res, ROLES, "kfold", "ridge", {"none at all": ["Missing"]})


def test_summary_without_ours_says_so():
    res = scores(levels(0.70, 0.20))
    res = res[res["method"] != "Ours"]
    text = summary_markdown(res, ROLES, {"protocol": "kfold", "regressor": "ridge"}, None, "- findings")
    assert "No table" in text and text.endswith("- findings\n")
