"""Result tables in the layout of the paper's Tables 1 and 2, rendered as Markdown and LaTeX (booktabs).

* :func:`table1`: methods as rows, indicator × (R², RMSE) as columns, mean ± std over (training seeds ×) repeats ×
  folds, the best non-reference value of each column in bold, then the paper's "Impr." row, the best baseline it
  refers to and the p-values of the paired tests; reference rows (floors such as the pixel statistics, the oracle ceiling) come last,
  apart, in italics and in the registry's order.
* :func:`table2`: the paper's Table 2 layout: (city, task, metric) as rows, methods as columns, an Impr. column.
* :func:`paper_comparison`: the paper's published R² (reports/reference/) beside ours for the methods both have, and
  :func:`rank_agreement`, the Spearman correlation of the two method rankings. The default city is synthetic (a
  real city is labelled with its city.json name): compare the patterns (which method is ahead, by roughly how much),
  not the values.
* A representation that was not run (skipped: its input is missing in this city) has a "not run: <reason>" row
  (Table 1), column (Table 2) or cell (the comparison with the paper).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from musecl.data.schema import PAPER_INDICATORS
from musecl.evaluation.metrics import HIGHER_IS_BETTER
from musecl.storage import write_text

METRIC_LABELS = {"r2": "R²", "rmse": "RMSE", "mae": "MAE", "mape": "MAPE"}
LATEX_METRIC_LABELS = {"r2": "$R^2$", "rmse": "RMSE", "mae": "MAE", "mape": "MAPE"}
P_ROWS = (("p_ttest", "p (paired t)"), ("p_corrected_ttest", "p (corrected t)"), ("p_wilcoxon", "p (Wilcoxon)"))


@dataclass
class Cell:
    text: str
    bold: bool = False
    italic: bool = False


@dataclass
class Table:
    """A rendered-agnostic table: column groups (label, span) over column labels, rows of cells, rules before rows."""

    columns: list[str]
    rows: list[list[Cell]]
    groups: list[tuple[str, int]] = field(default_factory=list)
    rules: set[int] = field(default_factory=set)
    caption: str = ""
    latex_columns: list[str] | None = None
    notes: list[str] = field(default_factory=list)  # printed under the table (e.g. the evaluation's check flags)

    def to_markdown(self) -> str:
        header = self.columns
        if self.groups:
            labels, i = [], 0
            for group, span in self.groups:
                for j in range(span):
                    col = header[i + j]
                    labels.append(f"{group} {col}".strip() if group else col)
                i += span
            header = labels
        lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        for row in self.rows:
            cells = []
            for c in row:
                text = _md_escape(c.text)
                text = f"**{text}**" if c.bold and text else text
                text = f"*{text}*" if c.italic and text else text
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        out = "\n".join(lines) + "\n"
        if self.notes:
            out += "\n" + "".join(f"- Note: {_md_escape(n)}\n" for n in self.notes)
        return (f"{self.caption}\n\n{out}" if self.caption else out)

    def to_latex(self) -> str:
        cols = self.latex_columns or self.columns
        spec = "l" + "r" * (len(cols) - 1)
        lines = [r"\begin{table}[t]", r"\centering", r"\small"]
        if self.caption:
            lines.append(r"\caption{" + _tex_escape(self.caption) + "}")
        lines += [r"\begin{tabular}{" + spec + "}", r"\toprule"]
        if self.groups:
            parts, rules, start = [], [], 1
            for group, span in self.groups:
                parts.append(r"\multicolumn{%d}{c}{%s}" % (span, _tex_escape(group)) if span > 1 else _tex_escape(group))
                if group and span > 1:
                    rules.append(r"\cmidrule(lr){%d-%d}" % (start, start + span - 1))
                start += span
            lines.append(" & ".join(parts) + r" \\")
            if rules:
                lines.append(" ".join(rules))
        lines.append(" & ".join(c if c.startswith("$") else _tex_escape(c) for c in cols) + r" \\")
        lines.append(r"\midrule")
        for i, row in enumerate(self.rows):
            if i in self.rules:
                lines.append(r"\midrule")
            cells = []
            for c in row:
                text = _tex_escape(c.text).replace("±", r"$\pm$")
                text = r"\textbf{" + text + "}" if c.bold and text else text
                text = r"\textit{" + text + "}" if c.italic and text else text
                cells.append(text)
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [r"\par\footnotesize Note: " + _tex_escape(n).replace("±", r"$\pm$") for n in self.notes]
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path, stem: str) -> dict[str, Path]:
        """Write `<stem>.md` and `<stem>.tex` atomically; returns their paths."""
        out_dir = Path(out_dir)
        paths = {"md": out_dir / f"{stem}.md", "tex": out_dir / f"{stem}.tex"}
        write_text(self.to_markdown(), paths["md"])
        write_text(self.to_latex(), paths["tex"])
        return paths


def _md_escape(text: str) -> str:
    return str(text).replace("|", r"\|")


def _tex_escape(text: str) -> str:
    out = str(text)
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("²", r"$^2$"), ("<", r"$<$"), (">", r"$>$")):
        out = out.replace(a, b)
    return out


def indicator_label(name: str) -> str:
    """The paper's abbreviation (PD, HD, MC, NP, NC, CR) or the name itself."""
    return PAPER_INDICATORS.get(name, name)


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if np.isfinite(std) else f"{mean:.{digits}f}"


def format_p(p: float) -> str:
    if not np.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def format_pct(x: float) -> str:
    return f"{100 * x:.2f}%" if np.isfinite(x) else "–"


def _order_methods(methods: Sequence[str], roles: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Main rows (baselines, variants, ours: the paper's order, ours last) and reference rows."""
    rank = {"baseline": 0, "variant": 1, "ours": 2}
    main = sorted([m for m in methods if roles.get(m, "baseline") != "reference"],
                  key=lambda m: rank.get(roles.get(m, "baseline"), 0))  # stable: keeps the registry order inside a role
    return main, [m for m in methods if roles.get(m) == "reference"]


def _table_inputs(
    summary: pd.DataFrame,
    comparison: pd.DataFrame,
    roles: Mapping[str, str],
    protocol: str,
    regressor: str,
    indicators: Sequence[str] | None,
) -> tuple[list[str], list[str], list[str], pd.DataFrame, pd.DataFrame]:
    """What Tables 1 and 2 share: the indicators, the methods (main, references), the summary indexed by
    (method, indicator) and the comparison indexed by (indicator, metric), for one protocol and regressor."""
    part = summary[(summary["protocol"] == protocol) & (summary["regressor"] == regressor)]
    if part.empty:
        raise ValueError(f"no results for protocol '{protocol}' with regressor '{regressor}'")
    indicators = list(indicators or dict.fromkeys(part["indicator"]))
    main, refs = _order_methods(list(dict.fromkeys(part["method"])), roles)
    cell = part.set_index(["method", "indicator"])
    comp = comparison
    if not comparison.empty:
        comp = comparison[(comparison["protocol"] == protocol) & (comparison["regressor"] == regressor)]
        comp = comp.set_index(["indicator", "metric"]) if not comp.empty else comp
    return indicators, main, refs, cell, comp


def table1(
    summary: pd.DataFrame,
    comparison: pd.DataFrame,
    roles: Mapping[str, str],
    protocol: str,
    regressor: str,
    indicators: Sequence[str] | None = None,
    metrics: Sequence[str] = ("r2", "rmse"),
    caption: str = "",
    not_run: Mapping[str, str] | None = None,
) -> Table:
    """The paper's Table 1 for one protocol and regressor (see the module docstring). Each representation of
    `not_run` ({method: reason}: skipped, its input missing in this city) gets a last row "not run: <reason>"."""
    indicators, main, refs, cell, comp = _table_inputs(summary, comparison, roles, protocol, regressor, indicators)
    columns = ["Method"] + [METRIC_LABELS[m] for _ in indicators for m in metrics]
    groups = [("", 1)] + [(indicator_label(i), len(metrics)) for i in indicators]
    best: dict[tuple[str, str], float] = {}
    for ind in indicators:
        for m in metrics:
            vals = [cell.loc[(meth, ind), f"{m}_mean"] for meth in main if (meth, ind) in cell.index]
            vals = [v for v in vals if np.isfinite(v)]
            if vals:
                best[(ind, m)] = max(vals) if HIGHER_IS_BETTER[m] else min(vals)
    rows: list[list[Cell]] = []
    for meth in main + refs:
        row = [Cell(meth, italic=meth in refs)]
        for ind in indicators:
            for m in metrics:
                if (meth, ind) not in cell.index:
                    row.append(Cell("–"))
                    continue
                mean, std = cell.loc[(meth, ind), f"{m}_mean"], cell.loc[(meth, ind), f"{m}_std"]
                row.append(Cell(format_mean_std(mean, std), bold=meth in main and best.get((ind, m)) == mean,
                                italic=meth in refs))
        rows.append(row)
    rules = {len(main)} if refs else set()
    if not comp.empty:
        stat_rows = [("Impr.", "improvement", format_pct), ("best baseline", "best_baseline", str)]
        stat_rows += [(label, key, format_p) for key, label in P_ROWS]
        body = []
        for label, key, fmt in stat_rows:
            row = [Cell(label)]
            for ind in indicators:
                for m in metrics:
                    row.append(Cell(fmt(comp.loc[(ind, m), key]) if (ind, m) in comp.index else "–"))
            body.append(row)
        # statistics rows go right after the main block, before the references
        rows = rows[: len(main)] + body + rows[len(main):]
        rules = {len(main)} | ({len(main) + len(body)} if refs else set())
    if not_run:
        rules = rules | {len(rows)}
        blank = [Cell("") for _ in range(len(columns) - 2)]
        rows += [[Cell(meth), Cell(f"not run: {why}"), *blank] for meth, why in not_run.items()]
    latex_cols = ["Method"] + [LATEX_METRIC_LABELS[m] for _ in indicators for m in metrics]
    return Table(columns, rows, groups, rules, caption, latex_columns=latex_cols)


def table2(
    summary: pd.DataFrame,
    comparison: pd.DataFrame,
    roles: Mapping[str, str],
    protocol: str,
    regressor: str,
    city: str,
    indicators: Sequence[str] | None = None,
    metrics: Sequence[str] = ("r2", "rmse"),
    caption: str = "",
    not_run: Mapping[str, str] | None = None,
) -> Table:
    """The paper's Table 2 layout: rows (city, task, metric), columns the methods (references last) and Impr.; a
    method of `not_run` ({method: reason}) has a column after the references, "not run: <reason>" in its first row."""
    indicators, main, refs, cell, comp = _table_inputs(summary, comparison, roles, protocol, regressor, indicators)
    skipped = dict(not_run or {})
    columns = ["City", "Task", "Metric", *main, *refs, *skipped, "Impr.", "p (corrected t)"]
    rows = []
    first = True
    for ind in indicators:
        for m in metrics:
            means = {meth: cell.loc[(meth, ind), f"{m}_mean"] for meth in main + refs if (meth, ind) in cell.index}
            finite = [means[x] for x in main if x in means and np.isfinite(means[x])]
            best = (max(finite) if HIGHER_IS_BETTER[m] else min(finite)) if finite else None
            row = [Cell(city if first else ""), Cell(indicator_label(ind) if m == metrics[0] else ""),
                   Cell(METRIC_LABELS[m])]
            first = False
            for meth in main + refs:
                if meth not in means:
                    row.append(Cell("–"))
                    continue
                row.append(Cell(f"{means[meth]:.4f}", bold=meth in main and means[meth] == best, italic=meth in refs))
            row += [Cell(f"not run: {why}" if len(rows) == 0 else "") for why in skipped.values()]
            has = not comp.empty and (ind, m) in comp.index
            row.append(Cell(format_pct(comp.loc[(ind, m), "improvement"]) if has else "–"))
            row.append(Cell(format_p(comp.loc[(ind, m), "p_corrected_ttest"]) if has else "–"))
            rows.append(row)
    return Table(columns, rows, [], set(), caption)


# ---- the paper's published numbers beside ours ------------------------------------------------------------------------
def load_reference(path: str | Path) -> pd.DataFrame:
    """The paper's Tables 1-2 (city, indicator, method, r2, rmse), as copied into reports/reference/."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the paper's published results are missing (reports/reference/ in the repository)")
    table = pd.read_csv(path)
    missing = [c for c in ("city", "indicator", "method", "r2", "rmse") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return table


def paper_comparison(
    summary: pd.DataFrame,
    reference: pd.DataFrame,
    paper_names: Mapping[str, str],
    protocol: str,
    regressor: str,
    indicators: Sequence[str] | None = None,
    metric: str = "r2",
    city_label: str = "synthetic",
    not_run: Mapping[str, str] | None = None,
) -> tuple[Table, pd.DataFrame]:
    """Paper R² per city beside our R² (mean ± std), one block per indicator the paper also reports.

    Rows are the paper's methods in its order (with ours where a registered representation has that `paper_name`,
    "not evaluated" otherwise, "not run: <reason>" for a paper name of `not_run` ({paper name: reason}: skipped in
    this city)) followed by our methods that have no counterpart in the paper. `city_label` names our city in the
    column and caption (the synthetic city: "synthetic"; a real one: its name). Also returns the long DataFrame
    behind the table.
    """
    not_run = dict(not_run or {})
    part = summary[(summary["protocol"] == protocol) & (summary["regressor"] == regressor)]
    ours_by_paper = {v: k for k, v in paper_names.items()}
    cities = list(dict.fromkeys(reference["city"]))
    indicators = list(indicators or dict.fromkeys(part["indicator"]))
    cell = part.set_index(["method", "indicator"])
    records = []
    for ind in indicators:
        abbr = indicator_label(ind)
        ref = reference[reference["indicator"] == abbr]
        paper_methods = list(dict.fromkeys(ref["method"]))
        extra = [m for m in dict.fromkeys(part["method"]) if m not in paper_names]
        for pm in paper_methods + extra:
            ours = ours_by_paper.get(pm) if pm in paper_methods else pm
            rec = {"indicator": ind, "abbr": abbr, "paper_method": pm if pm in paper_methods else "",
                   "our_method": ours or ""}
            for city in cities:
                hit = ref[(ref["method"] == pm) & (ref["city"] == city)]
                rec[f"paper_{city}"] = float(hit[metric].iloc[0]) if len(hit) else float("nan")
            if ours and (ours, ind) in cell.index:
                rec["ours_mean"] = float(cell.loc[(ours, ind), f"{metric}_mean"])
                rec["ours_std"] = float(cell.loc[(ours, ind), f"{metric}_std"])
            else:
                rec["ours_mean"] = rec["ours_std"] = float("nan")
            records.append(rec)
    frame = pd.DataFrame(records)
    label = METRIC_LABELS[metric]
    columns = ["Task", "Method (paper)", "Ours as", *[f"{c} (paper)" for c in cities], f"Ours ({city_label})"]
    rows, rules, last = [], set(), None
    for rec in records:
        if last is not None and rec["indicator"] != last:
            rules.add(len(rows))
        row = [Cell(rec["abbr"] if rec["indicator"] != last else ""), Cell(rec["paper_method"] or "–"),
               Cell(rec["our_method"] or "–")]
        row += [Cell(f"{rec[f'paper_{c}']:.4f}" if np.isfinite(rec[f"paper_{c}"]) else "–") for c in cities]
        if np.isfinite(rec["ours_mean"]):
            row.append(Cell(format_mean_std(rec["ours_mean"], rec["ours_std"])))
        elif rec["paper_method"] in not_run:
            row.append(Cell(f"not run: {not_run[rec['paper_method']]}"))
        else:
            row.append(Cell("not evaluated here yet"))
        rows.append(row)
        last = rec["indicator"]
    where = "the synthetic city" if city_label == "synthetic" else city_label
    caption = (f"{label}: the paper's published values (Yong & Zhou, IJCAI 2024, Tables 1-2) beside ours on "
               f"{where} ({protocol} protocol, {regressor}). Compare patterns, not values.")
    return Table(columns, rows, [], rules, caption), frame


def rank_agreement(frame: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation between the paper's and our ranking of the methods both evaluated, per task and city."""
    from scipy.stats import spearmanr

    rows = []
    cities = [c[len("paper_"):] for c in frame.columns if c.startswith("paper_") and c != "paper_method"]
    for ind, part in frame.groupby("indicator", sort=False):
        for city in cities:
            both = part[np.isfinite(part[f"paper_{city}"]) & np.isfinite(part["ours_mean"])]
            rho = float(spearmanr(both[f"paper_{city}"], both["ours_mean"]).statistic) if len(both) >= 3 else float("nan")
            rows.append({"indicator": ind, "city": city, "methods_in_common": len(both),
                         "methods": ", ".join(both["paper_method"]), "spearman_rho": rho})
    return pd.DataFrame(rows)


def frame_table(frame: pd.DataFrame, caption: str = "", digits: int = 4) -> Table:
    """Any small DataFrame as a Table (floats rounded), for the supporting tables."""
    columns = [str(c) for c in frame.columns]
    rows = []
    for rec in frame.itertuples(index=False):
        cells = []
        for v in rec:
            if isinstance(v, (float, np.floating)):
                cells.append(Cell(f"{v:.{digits}f}" if np.isfinite(v) else "–"))
            else:
                cells.append(Cell(str(v)))
        rows.append(cells)
    return Table(columns, rows, [], set(), caption)
