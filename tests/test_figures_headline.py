"""The R² panels (one per indicator, fixed method colours, clipped values marked), the headline metrics that DVC
shows, the dvc.yaml metrics/plots declarations, and the offline `dvc plots show` template."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
INDICATORS = ["population_density", "housing_density", "mobility_count", "poi_count", "comment_count", "crime"]
LEVELS = {"Oracle": 0.9, "Pixel stats RS": 0.2, "Pixel stats SV": 0.3, "Tile2Vec": 0.35, "POI-counts": 0.5,
          "MuseCL": 0.45, "MuseCL+text": 0.5, "Broken": -5.0}
ROLES = {"Oracle": "reference", "Pixel stats RS": "reference", "Pixel stats SV": "reference", "Tile2Vec": "baseline",
         "POI-counts": "baseline", "MuseCL": "ours", "MuseCL+text": "variant", "Broken": "baseline"}


def _summary() -> pd.DataFrame:
    rows = [{"protocol": "kfold", "regressor": "ridge", "method": m, "indicator": ind, "r2_mean": level + 0.01 * i,
             "r2_std": 0.05, "rmse_mean": 1 - level, "rmse_std": 0.01}
            for m, level in LEVELS.items() for i, ind in enumerate(INDICATORS)]
    return pd.DataFrame(rows)


def test_method_colours_are_fixed_and_cover_every_configured_representation():
    from musecl.plots import METHOD_COLORS, OURS_COLOR, method_color, method_colors

    names = list(yaml.safe_load((ROOT / "params.yaml").read_text())["evaluation"]["representations"])
    missing = [n for n in names if n not in METHOD_COLORS]
    assert not missing, f"give these representations a colour in musecl.plots.METHOD_COLORS: {missing}"
    assert len({METHOD_COLORS[n] for n in names}) == len(names), "two representations share a colour"
    # the same method keeps its colour whatever else is drawn; unknown names get a colour from their name alone
    assert method_colors(["MuseCL", "Tile2Vec"])["Tile2Vec"] == method_colors(["Tile2Vec"])["Tile2Vec"]
    assert method_color("Something new", "baseline") == method_color("Something new", "baseline")
    assert method_color("Our new method", "ours") == OURS_COLOR
    grey = method_color("A new floor", "reference")
    assert grey[1:3] == grey[3:5] == grey[5:7]


def test_r2_panels_one_per_indicator_grouped_readable_and_clipped_values_marked():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.colors import to_hex

    from musecl.evaluation.figures import FONT, metric_bars, panel_rows
    from musecl.plots import method_color

    summary = _summary()
    fig = metric_bars(summary, ROLES, "kfold", "ridge", ceiling="Oracle")
    assert len(fig.axes) == len(INDICATORS)
    assert fig.get_figwidth() <= 6.75 + 1e-9
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    assert min(sizes) >= FONT >= 8, "every text is at least 8 pt"
    # rows grouped references / baselines / ours / ablations, best first within a group
    groups = panel_rows(summary.groupby("method")["r2_mean"].mean(), ROLES)
    assert [g for g, _ in groups] == ["References", "Baselines", "Ours", "Ablations, variants"]
    assert groups[1][1] == ["POI-counts", "Tile2Vec", "Broken"]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels.index("References") < labels.index("Oracle") < labels.index("Baselines") < labels.index("MuseCL")
    # each bar in its method's fixed colour
    colours = {c.get_label(): to_hex(c.patches[0].get_facecolor()) for c in fig.axes[0].containers
               if hasattr(c, "patches")}
    assert all(colours[m] == method_color(m, ROLES[m]) for m in LEVELS)
    # the -5 mean is drawn at the axis limit, marked, and its value written out on every panel
    lo = fig.axes[0].get_xlim()[0]
    assert lo == -1.0 and colours and fig.axes[0].containers
    written = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum(t.startswith("\u22125.0") or t.startswith("\u22124.9") for t in written) == len(INDICATORS)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "ceiling: Oracle" in legend and any("floor" in t for t in legend) and any("below" in t for t in legend)
    # the ceiling and the best floor are vertical lines on every panel
    for ax, ind in zip(fig.axes, INDICATORS):
        xs = {round(float(line.get_xdata()[0]), 4) for line in ax.lines if len(line.get_xdata()) == 2}
        row = summary[summary["indicator"] == ind].set_index("method")["r2_mean"]
        assert round(row["Oracle"], 4) in xs and round(row["Pixel stats SV"], 4) in xs
    matplotlib.pyplot.close(fig)


def test_headline_metrics_are_a_handful_of_numbers_from_the_summary():
    from musecl.evaluation.headline import headline_markdown, headline_metrics, mean_r2_table, write_headline

    summary = _summary()
    table = mean_r2_table(summary, ROLES, "kfold", "ridge")
    assert list(table["method"][:3]) == ["Oracle", "Pixel stats SV", "Pixel stats RS"]
    assert table.set_index("method").at["MuseCL", "mean_r2"] == pytest.approx(0.45 + 0.025)
    h = headline_metrics(summary, ROLES, "kfold", "ridge", ceiling="Oracle")
    assert h["best_name"] == "POI-counts" and h["best_baseline"] == pytest.approx(0.525)
    assert h["gap_best"] == pytest.approx(-0.05) and h["gap_oracle"] == pytest.approx(-0.45)
    assert h["floor"] == pytest.approx(0.325) and h["rank"] == "2/4"  # POI-counts, MuseCL, Tile2Vec, Broken
    assert all(not isinstance(v, dict) for v in h.values()), "flat keys: one short column each in dvc metrics show"
    assert "**MuseCL 0.475**" in headline_markdown(h, table, "MuseCL", "kfold", "ridge")
    with pytest.raises(ValueError, match="no results for protocol 'paper'"):
        headline_metrics(summary, ROLES, "paper", "mlp")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git for a scratch DVC repository")
def test_dvc_metrics_show_fits_a_terminal(tmp_path):
    """The headline file as DVC prints it, with the longest baseline name of params.yaml as the best baseline."""
    from musecl.evaluation.headline import headline_metrics, mean_r2_table, write_headline

    reps = yaml.safe_load((ROOT / "params.yaml").read_text())["evaluation"]["representations"]
    longest = max((n for n, spec in reps.items() if spec.get("role") == "baseline"), key=len)
    summary = _summary()
    summary.loc[summary["method"] == "POI-counts", "method"] = longest
    roles = {**ROLES, longest: "baseline"}
    h = headline_metrics(summary, roles, "kfold", "ridge", ceiling="Oracle")
    h["gap_best"], h["rank"] = -10.1234, "30/30"  # the widest values they can take
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([str(dvc), "init", "-q"], cwd=tmp_path, check=True)
    write_headline(h, mean_r2_table(summary, roles, "kfold", "ridge"), tmp_path / "reports" / "headline.json",
                   tmp_path / "mean_r2.csv")
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - reports/headline.json\n")
    out = subprocess.run([str(dvc), "metrics", "show"], cwd=tmp_path, check=True, capture_output=True, text=True)
    width = max(len(line) for line in out.stdout.splitlines())
    assert longest in out.stdout and width < 120, out.stdout


def test_dvc_yaml_declares_the_headline_as_the_only_metrics_and_every_training_curve_as_plots():
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    declared = [(name, m) for name, stage in spec["stages"].items() for m in (stage.get("do", stage).get("metrics") or [])]
    assert [(n, next(iter(m)) if isinstance(m, dict) else m) for n, m in declared] == [("figures", "reports/headline.json")]
    assert "metrics" not in spec, "no top-level metrics: the headline file is the pipeline's metrics"
    plots = {next(iter(p)) if isinstance(p, dict) else p: (p[next(iter(p))] if isinstance(p, dict) else {})
             for p in spec["plots"]}
    overlaid = [set((cfg.get("y") or {}).keys()) for cfg in plots.values() if isinstance(cfg.get("y"), dict)]
    curves = sorted(ROOT.glob("reports/**/dvclive/plots/metrics/train/*.tsv"))
    assert curves, "no committed DVCLive curves to check"
    for train in curves:
        rel = str(train.relative_to(ROOT))
        val = rel.replace("/train/", "/val/")
        group = next((g for g in overlaid if rel in g), None)
        assert group is not None, f"{rel}: a training curve not declared in dvc.yaml plots"
        assert not (ROOT / val).exists() or val in group, f"{rel}: its validation curve is not overlaid"
    for png in ("r2_bars_robust_protocol.png", "r2_bars_paper_protocol.png", "ablation_bars.png"):
        assert f"reports/07_paper_figures/{png}" in plots
    config = (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"html_template = \.\./reports/dvc_plots_template\.html", config)
    figures = spec["stages"]["figures"]["outs"]
    assert "reports/dvc_plots_template.html" in [next(iter(o)) if isinstance(o, dict) else o for o in figures]


def test_the_plots_template_works_offline(tmp_path):
    """The template inlines Vega; a page DVC renders with it loads no script from the network."""
    from dvc_render.html import render_html
    from dvc_render.vega import VegaRenderer

    from musecl.stages.plots_page import write_template

    template = write_template(tmp_path / "template.html")
    text = template.read_text()
    assert "{plot_divs}" in text and "{scripts}" not in text and "window.vegaEmbed" in text
    renderer = VegaRenderer([{"step": i, "loss": 1.0 / (i + 1), "rev": "workspace", "filename": "train/loss.tsv",
                              "field": "loss"} for i in range(5)], "loss", x="step", y="loss")
    page = tmp_path / "index.html"
    render_html([renderer], page, html_template=str(template))
    html = page.read_text()
    assert "vegaEmbed('#" in html
    assert not re.search(r"<script[^>]*\ssrc\s*=\s*[\"']?https?:", html, flags=re.I), "a script loads from the network"
    assert "cdn.jsdelivr" not in html
