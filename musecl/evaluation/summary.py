"""The results summary of a run, as one Markdown file the README embeds (`reports/07_paper_figures/summary.md`).

The `figures` stage writes it from the stored results; `python -m musecl.readme` copies it into README.md between
its markers, and tests/test_readme.py fails when the README's copy differs from the committed file, so the README's
numbers are always those of the committed run, never typed by hand.

* :func:`summary_table`: one column per indicator; the rows are ours, the best baseline of each indicator (with its
  name), the p-value of ours against it (corrected resampled t-test over the paired folds), then the rows configured
  in `evaluation.figures.summary_rows` (several methods in one row are shown "a / b"), for one protocol and regressor.
* :func:`summary_markdown`: the table, what its means run over, and the findings written from the same numbers
  (:func:`musecl.evaluation.findings.evaluation_findings`, the paired comparisons' sentences).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from musecl.evaluation.findings import averaged_over, combination_rows, indicator_order, label
from musecl.evaluation.stats import compare_to_best_baseline
from musecl.storage import write_text


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def summary_table(
    results: pd.DataFrame,
    roles: Mapping[str, str],
    protocol: str,
    regressor: str,
    rows: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The Markdown summary table (see the module docstring). A configured method without results shows "n/a"; a
    configured row whose methods all lack results is left out (a city without that modality)."""
    part = combination_rows(results, protocol, regressor)
    means = part.groupby(["method", "indicator"], sort=False)["r2"].mean().unstack("indicator")
    indicators = indicator_order(means.columns)
    ours = next((m for m, r in roles.items() if r == "ours" and m in means.index), None)
    if ours is None:
        raise ValueError(f"summary: no representation with role 'ours' has results for {protocol}/{regressor}")
    baselines = [m for m, r in roles.items() if r == "baseline" and m in means.index]

    def cell(method: str, indicator: str) -> str:
        value = means[indicator].get(method, np.nan) if method in means.index else np.nan
        return "n/a" if not np.isfinite(value) else f"{value:.3f}"

    table = [[ours] + [cell(ours, i) for i in indicators]]
    if baselines:
        cmp = compare_to_best_baseline(part, ours, baselines, metrics=("r2",)).set_index("indicator")
        table.append(["best baseline"] + [
            f"{cmp.loc[i, 'best_mean']:.3f} {cmp.loc[i, 'best_baseline']}" if i in cmp.index else "n/a"
            for i in indicators])
        table.append([f"p, {ours} vs best baseline"] + [
            _p(float(cmp.loc[i, "p_corrected_ttest"])) if i in cmp.index else "n/a" for i in indicators])
    for name, methods in (rows or {}).items():
        methods = [methods] if isinstance(methods, str) else list(methods)
        if not any(m in means.index for m in methods):
            continue
        table.append([name] + [" / ".join(cell(m, i) for m in methods) for i in indicators])
    head = "| | " + " | ".join(label(i) for i in indicators) + " |"
    rule = "|---" * (len(indicators) + 1) + "|"
    return "\n".join([head, rule] + ["| " + " | ".join(r) + " |" for r in table])


def summary_markdown(
    results: pd.DataFrame,
    roles: Mapping[str, str],
    robust: Mapping[str, str],
    rows: Mapping[str, Sequence[str]] | None,
    findings: str,
    comparisons: str | None = None,
) -> str:
    """The summary file: a sentence saying what the numbers are, the table, then `findings` (the evaluation's "What
    this shows" bullets) and `comparisons` (the paired comparisons' sentences), both written from the same results."""
    protocol, regressor = robust["protocol"], robust["regressor"]
    part = combination_rows(results, protocol, regressor)
    intro = (f"Mean R² per indicator, {protocol} protocol with {regressor}, over {averaged_over(part)}; p: the "
             f"corrected resampled t-test paired over the folds (and seeds). Written by the `figures` stage "
             f"(`reports/07_paper_figures/summary.md`) from the run's results.")
    ours_scored = any(r == "ours" and m in set(part["method"]) for m, r in roles.items())
    table = summary_table(results, roles, protocol, regressor, rows) if ours_scored else (
        "No table: the representation with role 'ours' was not run in this city (the findings below say why).")
    parts = [intro, table, "What the numbers show:", findings]
    if comparisons:
        parts += ["Paired comparisons (`tables/paired_comparisons.md`):", comparisons]
    return "\n\n".join(p.strip() for p in parts) + "\n"


def write_summary(text: str, path: str | Path) -> Path:
    write_text(text, path)
    return Path(path)
