"""The explorer's page: one HTML file with BokehJS and every datum inside it (no network needed; opens from
`file://`), drawn from :class:`musecl.stages.explorer.ExplorerData`.

Bokeh draws the hexagons in Web Mercator with hover and tap; the page's behaviour is one CustomJS callback
(:data:`UPDATE_JS`) that recolours the regions and fills the side panel from a JSON payload embedded in the page. An
OpenStreetMap basemap (params.yaml `explorer.basemap`) is switched on when the browser says it is online
(`navigator.onLine`) and can be toggled; nothing else is fetched.
"""
from __future__ import annotations

import json
import math
import re
import uuid
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID
from musecl.stages.explorer import ExplorerData, most_similar

PAYLOAD_ID = "musecl-explorer-data"
SOURCE_NAME = "regions"
FIGURE_NAME = "map"
KINDS = ("indicator", "prediction", "residual", "cluster")

_TEMPLATE = """{% extends base %}
{% block postamble %}<script type="application/json" id="PAYLOAD_ID">{{ payload | safe }}</script>
<style>.musecl-panel img{image-rendering:auto;margin:1px;border:1px solid #ccc}
.musecl-panel ol{padding-left:1.4em;margin:.2em 0}.musecl-panel a{cursor:pointer;color:#1565c0}</style>
{% endblock %}""".replace("PAYLOAD_ID", PAYLOAD_ID)

# One callback for every control and for a tap: reads the payload once, recolours, fills the panel.
UPDATE_JS = """
const P = window.museclData || (window.museclData = JSON.parse(
  document.getElementById('%(payload)s').textContent));
if (!window.museclLinks) {  // a click on a similar region in the panel (inside Bokeh's shadow roots) selects it
  window.museclLinks = true;
  document.addEventListener('click', (e) => {
    const a = e.composedPath().find(el => el.dataset && el.dataset.region !== undefined);
    if (a) { source.selected.indices = [parseInt(a.dataset.region)]; }
  });
}
const kind = kind_select.value, ind = ind_select.value, rep = rep_select.value;
const n = P.ids.length;
const quant = (v, q) => { const s = v.filter(Number.isFinite).sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.max(0, Math.floor(q * (s.length - 1))))] : 0; };
const truth = P.indicators[ind];
let value = new Array(n).fill(NaN), palette = seq, low = quant(truth, 0.02), high = quant(truth, 0.98);
let label = ind;
if (kind === 'indicator') { value = truth.map(v => v === null ? NaN : v); }
else if (kind === 'cluster') {
  value = P.clusters[rep].map(c => c < 0 ? NaN : c); palette = cat; low = -0.5; high = cat.length - 0.5;
  label = 'k-means cluster of ' + rep;
} else {
  const pred = (P.pred[rep] || {})[ind];
  if (pred) {
    value = pred.map((v, i) => v === null ? NaN : (kind === 'prediction' ? v : v - truth[i]));
  }
  label = (kind === 'prediction' ? 'out-of-fold prediction of ' : 'residual (prediction - true) of ') + ind +
    ' by ' + rep + (pred ? '' : ' (not evaluated)');
  if (kind === 'residual') { palette = div; const m = quant(value.map(Math.abs), 0.98) || 1; low = -m; high = m; }
}
if (!(high > low)) { high = low + 1; }
mapper.palette = palette; mapper.low = low; mapper.high = high;
const data = source.data;
data.value = value; data.line_color = new Array(n).fill('#ffffff'); data.line_width = new Array(n).fill(0.5);
const sel = source.selected.indices.length ? source.selected.indices[0] : -1;
const fmt = (v, d) => (v === null || v === undefined || !Number.isFinite(v)) ? 'n/a' : v.toFixed(d);
let html = '<div class="musecl-panel"><b>' + P.city + '</b>: colour = ' + label + '<br>';
if (sel < 0) {
  html += '<p>Click a region to see its images, its POIs and its most similar regions by the chosen ' +
    'representation.</p>';
} else {
  const nb = (P.nbr[rep] || [])[sel] || [], sm = (P.sim[rep] || [])[sel] || [];
  nb.forEach(j => { if (j >= 0) { data.line_color[j] = '#ff6f00'; data.line_width[j] = 3; } });
  html += '<h3 style="margin:.3em 0">Region ' + P.ids[sel] + '</h3>';
  html += 'value shown: ' + fmt(value[sel], 3) + '<br><table style="font-size:90%%">';
  for (const name of Object.keys(P.indicators)) {
    const pr = (P.pred[rep] || {})[name];
    html += '<tr><td>' + name + '</td><td>' + fmt(P.indicators[name][sel], 2) + '</td><td>' +
      (pr ? 'pred ' + fmt(pr[sel], 2) : '') + '</td></tr>';
  }
  html += '</table>';
  if (P.rs[sel]) { html += '<div>remote sensing<br><img alt="remote-sensing tile" src="' + P.rs[sel] + '"></div>'; }
  if (P.sv[sel].length) {
    html += '<div>street views<br>' + P.sv[sel].map(u => '<img alt="street view" src="' + u + '">').join('') +
      '</div>';
  }
  html += '<div>top POI categories<ol>' + P.pois[sel].map(c => '<li>' + c[0] + ' (' + c[1] + ')</li>').join('') +
    '</ol></div>';
  html += '<div id="similar">' + nb.filter(j => j >= 0).length + ' most similar regions by <b>' + rep +
    '</b> (cosine)<ol class="similar-list">' + nb.map((j, r) => j < 0 ? '' :
      '<li><a data-region="' + j + '">' + P.ids[j] + '</a> ' + fmt(sm[r], 3) + '</li>').join('') + '</ol></div>';
}
html += '</div>';
source.change.emit();
panel.text = html;
"""

# The basemap's renderer is kept out of the figure until it is switched on: an unloaded tile layer would keep the
# document from ever becoming ready offline.
BASEMAP_JS = """const rest = fig.renderers.filter(r => r !== tiles);
fig.renderers = basemap.active.includes(0) ? [tiles, ...rest] : rest;"""
READY_JS = "if (navigator.onLine) { basemap.active = [0]; }"


def _clean(values: Any, digits: int) -> list[Any]:
    """Floats rounded to `digits` significant digits for the payload; NaN and inf become null."""
    out = []
    for v in np.asarray(values, dtype=np.float64).tolist():
        out.append(None if not math.isfinite(v) else float(f"{v:.{digits}g}"))
    return out


def payload(data: ExplorerData) -> dict[str, Any]:
    """The JSON the page's script reads: ids, indicators, predictions, clusters, similar regions, images, POIs."""
    ids = data.region_ids
    s = data.settings
    pred: dict[str, dict[str, list[Any]]] = {}
    if data.predictions is not None and len(data.predictions):
        for (method, ind), rows in data.predictions.groupby(["method", "indicator"], sort=True):
            if method in data.features:
                pred.setdefault(method, {})[ind] = _clean(rows.set_index(REGION_ID)["y_pred"].reindex(ids), 4)
    nbr, sim, clus = {}, {}, {}
    for name, table in data.features.items():
        idx, val = most_similar(table, ids, s.k_similar, s.standardize)
        nbr[name] = idx.tolist()
        sim[name] = [[None if not math.isfinite(v) else round(v, 3) for v in row] for row in val.tolist()]
        clus[name] = data.clusters[name].tolist()
    return {
        "city": data.city, "ids": ids,
        "indicators": {c: _clean(data.indicators[c], 4) for c in data.indicators.columns},
        "reps": list(data.features), "roles": data.roles, "pred": pred, "clusters": clus, "nbr": nbr, "sim": sim,
        "rs": [data.thumbnails[r]["rs"] for r in ids], "sv": [data.thumbnails[r]["sv"] for r in ids],
        "pois": [[list(p) for p in data.top_pois[r]] for r in ids],
    }


def _mercator(regions: Any) -> tuple[list[list[float]], list[list[float]]]:
    merc = regions.set_crs("EPSG:4326", allow_override=True).to_crs("EPSG:3857").geometry
    xs, ys = [], []
    for poly in merc:
        x, y = poly.exterior.coords.xy
        xs.append(np.round(np.asarray(x), 1).tolist())
        ys.append(np.round(np.asarray(y), 1).tolist())
    return xs, ys


def default_representation(data: ExplorerData) -> str:
    """The representation shown first: the one with role `ours` (MuseCL), else the first."""
    return next((n for n, r in data.roles.items() if r == "ours"), next(iter(data.features)))


def build_layout(data: ExplorerData) -> tuple[Any, Any]:
    """The Bokeh layout and the document-ready callback (both need the same models)."""
    from bokeh.layouts import column, row
    from bokeh.models import (CheckboxGroup, ColorBar, ColumnDataSource, CustomJS, Div, HoverTool,
                              LinearColorMapper, Select, TapTool)
    from bokeh.palettes import Category10_10, RdBu11, Viridis256
    from bokeh.plotting import figure

    ids = data.region_ids
    xs, ys = _mercator(data.regions)
    first_ind = str(data.indicators.columns[0])
    source = ColumnDataSource(
        {"xs": xs, "ys": ys, REGION_ID: ids, "value": _clean(data.indicators[first_ind], 4),
         "line_color": ["#ffffff"] * len(ids), "line_width": [0.5] * len(ids)}, name=SOURCE_NAME)
    seq = list(Viridis256)
    mapper = LinearColorMapper(palette=seq, nan_color="#d0d0d0")
    fig = figure(name=FIGURE_NAME, x_axis_type="mercator", y_axis_type="mercator", match_aspect=True,
                 width=720, height=640, tools="pan,wheel_zoom,box_zoom,reset,save", active_scroll="wheel_zoom",
                 title=f"{data.city}: {len(ids)} regions")
    tiles = None
    if data.settings.basemap:
        import xyzservices.providers as providers

        tiles = fig.add_tile(providers.query_name(data.settings.basemap), retina=False)
        fig.renderers.remove(tiles)
    patches = fig.patches("xs", "ys", source=source, fill_color={"field": "value", "transform": mapper},
                          fill_alpha=0.85, line_color="line_color", line_width="line_width")
    patches.selection_glyph = patches.glyph.clone(line_color="#000000", line_width=3.5)
    patches.nonselection_glyph = patches.glyph.clone()
    fig.add_tools(HoverTool(renderers=[patches], tooltips=[("region", f"@{REGION_ID}"), ("value", "@value{0.000}")]),
                  TapTool(renderers=[patches]))
    fig.add_layout(ColorBar(color_mapper=mapper, width=12), "right")
    fig.xgrid.visible = fig.ygrid.visible = False

    reps = list(data.features)
    kind_select = Select(title="Colour regions by", value="indicator", options=list(KINDS), width=140)
    ind_select = Select(title="Indicator", value=first_ind, options=[str(c) for c in data.indicators.columns],
                        width=180)
    rep_select = Select(title="Representation (predictions, clusters, similar regions)",
                        value=default_representation(data), options=reps, width=330)
    basemap = CheckboxGroup(labels=["OpenStreetMap basemap (needs the network)"], active=[],
                            visible=tiles is not None)
    panel = Div(text="", width=420, name="panel")
    args = dict(source=source, mapper=mapper, kind_select=kind_select, ind_select=ind_select, rep_select=rep_select,
                panel=panel, seq=seq, div=list(reversed(RdBu11)), cat=list(Category10_10))
    update = CustomJS(args=args, code=UPDATE_JS % {"payload": PAYLOAD_ID})
    for widget in (kind_select, ind_select, rep_select):
        widget.js_on_change("value", update)
    source.selected.js_on_change("indices", update)
    ready = [update]
    if tiles is not None:
        basemap.js_on_change("active", CustomJS(args=dict(fig=fig, tiles=tiles, basemap=basemap), code=BASEMAP_JS))
        ready.append(CustomJS(args=dict(basemap=basemap), code=READY_JS))
    intro = Div(width=1150, text=(
        f"<h2 style='margin:.2em 0'>musecl explorer: {data.city}</h2>Colour the regions by an indicator, the "
        f"out-of-fold prediction of a representation ({data.settings.predictions['protocol']} protocol, "
        f"{data.settings.predictions['regressor']}), its residual, or a k-means cluster of its embedding. Click a "
        f"region: its images, POIs and the {data.settings.k_similar} most similar regions (outlined in orange)."
        + "".join(f"<br>{escape(name)}: not run ({escape(why)})" for name, why in data.not_run.items())))
    layout = column(intro, row(fig, column(row(kind_select, ind_select), rep_select, basemap, panel)))
    return layout, ready


def render_page(data: ExplorerData) -> str:
    """The page as one HTML string (BokehJS inline)."""
    from bokeh.core.templates import get_env
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.events import DocumentReady
    from bokeh.resources import INLINE

    layout, ready = build_layout(data)
    doc = Document()
    doc.add_root(layout)
    for callback in ready:
        doc.js_on_event(DocumentReady, callback)
    text = json.dumps(payload(data), separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    template = get_env().from_string(_TEMPLATE)
    html = file_html(doc, resources=INLINE, title=f"musecl explorer: {data.city}", template=template,
                     template_variables={"payload": text})
    return stable_ids(html)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_MODEL_ID = re.compile(r'(?<=")p\d+(?=")')


def stable_ids(html: str) -> str:
    """Bokeh names the page's document and root elements with random UUIDs and its models with a process-wide
    counter (`p1071`); renumber both (in the body, after the library's scripts) in order of appearance, so that the
    same data gives the same bytes in any process."""
    head, sep, body = html.rpartition("<body>")
    if not sep:
        return html
    uuids: dict[str, str] = {}
    models: dict[str, str] = {}
    body = _UUID.sub(lambda m: uuids.setdefault(
        m.group(0), str(uuid.uuid5(uuid.NAMESPACE_URL, f"musecl-explorer/{len(uuids)}"))), body)
    body = _MODEL_ID.sub(lambda m: models.setdefault(m.group(0), f"p{1000 + len(models)}"), body)
    return head + sep + body


def write_page(data: ExplorerData, path: str | Path) -> Path:
    """Write the page atomically; returns its path."""
    from musecl.storage import write_text

    path = Path(path)
    write_text(render_page(data), path)
    return path


def similar_table(data: ExplorerData, representation: str) -> pd.DataFrame:
    """The similar regions the page lists, as a table (region_id, rank, similar_id, similarity), for notebooks."""
    ids = data.region_ids
    idx, val = most_similar(data.features[representation], ids, data.settings.k_similar, data.settings.standardize)
    rank = np.tile(np.arange(1, idx.shape[1] + 1), len(ids))
    flat = idx.ravel()
    table = pd.DataFrame({REGION_ID: np.repeat(ids, idx.shape[1]), "rank": rank,
                          "similar_id": np.where(flat >= 0, np.asarray(ids, dtype=object)[np.maximum(flat, 0)], None),
                          "similarity": val.ravel()})
    return table[flat >= 0].reset_index(drop=True)
