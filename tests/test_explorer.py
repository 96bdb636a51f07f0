"""The explorer (musecl/stages/explorer.py, explorer_page.py): similar regions, clusters, out-of-fold predictions, the
GeoPackage, and the page itself in a real headless browser (Debian's chromium and chromedriver, which `make test`
installs when absent): it loads from file:// offline without console errors, a click on a region lists its similar
regions, and a screenshot is taken."""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musecl.data.schema import REGION_ID
from musecl.embeddings import to_frame
from musecl.evaluation.representations import poi_category_counts
from musecl.stages.explorer import (ExplorerSettings, assemble, layer_name, most_similar, oof_predictions,
                                    write_gis)
from musecl.stages.explorer_page import PAYLOAD_ID, render_page, similar_table, write_page

SCREENSHOT = Path("/tmp/explorer.png")  # also kept outside the test's folder, for a person to look at


@pytest.fixture(scope="module")
def explorer_data(tiny_bundle):
    """The tiny city with two representations (a seeded random table as "MuseCL", the POI counts) and synthetic
    out-of-fold predictions (the truth plus seeded noise) for one of them."""
    ids = tiny_bundle.regions()[REGION_ID].sort_values().to_numpy()
    rng = np.random.default_rng(0)
    features = {"MuseCL": to_frame(ids, rng.normal(size=(len(ids), 16)).astype(np.float32)),
                "POI-counts": poi_category_counts(tiny_bundle)}
    truth = tiny_bundle.indicators(transformed=True).stack().rename("y_true").reset_index()
    truth.columns = [REGION_ID, "indicator", "y_true"]
    rows = []
    for repeat in range(2):
        rows.append(truth.assign(method="MuseCL", regressor="ridge", protocol="kfold", repeat=repeat, fold=0,
                                 y_pred=truth["y_true"] + rng.normal(scale=0.3, size=len(truth))))
    predictions = oof_predictions(pd.concat(rows, ignore_index=True), "kfold", "ridge")
    settings = ExplorerSettings(k_similar=5, clusters=3)
    return assemble(tiny_bundle, features, predictions, settings, roles={"MuseCL": "ours", "POI-counts": "baseline"})


def test_most_similar_is_the_cosine_ranking():
    rng = np.random.default_rng(1)
    ids = [f"r{i}" for i in range(12)]
    table = pd.DataFrame(rng.normal(size=(11, 4)), index=ids[1:])  # r0 has no row
    idx, val = most_similar(table, ids, k=3, standardize=False)
    unit = table.to_numpy() / np.linalg.norm(table.to_numpy(), axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    for row in range(11):
        best = np.argsort(-sim[row])[:3]
        assert [ids[i] for i in idx[row + 1]] == [ids[1 + b] for b in best]
        np.testing.assert_allclose(val[row + 1], sim[row, best])
    assert (idx[0] == -1).all() and np.isnan(val[0]).all()


def test_oof_predictions_average_the_repeats_and_refuse_unknown_settings():
    table = pd.DataFrame({"method": "m", "indicator": "i", "regressor": "ridge", "protocol": "kfold",
                          REGION_ID: ["a", "a", "b"], "y_true": [1.0, 1.0, 2.0], "y_pred": [0.0, 1.0, 3.0]})
    out = oof_predictions(table, "kfold", "ridge").set_index(REGION_ID)
    assert out.loc["a", "y_pred"] == 0.5 and out.loc["b", "y_pred"] == 3.0
    with pytest.raises(ValueError, match="protocol 'paper'"):
        oof_predictions(table, "paper", "ridge")


def test_settings_refuse_unknown_keys():
    with pytest.raises(KeyError, match="explorer: unknown keys"):
        ExplorerSettings.from_params({"explorer": {"k_similar": 5, "colour": "red"}})


def test_page_data_and_determinism(explorer_data):
    html = render_page(explorer_data)
    assert html == render_page(explorer_data), "the same data must give the same page bytes"
    assert '<script type="text/javascript" src=' not in html, "every script must be inside the page"
    payload = json.loads(re.search(rf'id="{PAYLOAD_ID}">(.*?)</script>', html, re.S).group(1))
    n = len(explorer_data.region_ids)
    assert payload["ids"] == explorer_data.region_ids and set(payload["reps"]) == {"MuseCL", "POI-counts"}
    assert all(len(v) == n for v in payload["indicators"].values())
    assert set(payload["pred"]) == {"MuseCL"}
    assert all(len(row) == 5 for row in payload["nbr"]["MuseCL"])
    assert sum(u is not None for u in payload["rs"]) == n and all(u.startswith("data:image/jpeg") for u in payload["rs"])
    table = similar_table(explorer_data, "MuseCL")
    assert len(table) == 5 * n and (table[REGION_ID] != table["similar_id"]).all()


def test_gis_export_has_a_layer_per_representation(explorer_data, tmp_path):
    import geopandas as gpd
    import pyogrio

    path = write_gis(explorer_data, tmp_path / "embeddings.gpkg")
    layers = [name for name, _ in pyogrio.list_layers(path)]
    assert layers == ["regions", layer_name("MuseCL"), layer_name("POI-counts")]
    musecl = gpd.read_file(path, layer="musecl")
    assert musecl.crs.to_epsg() == 4326 and len(musecl) == len(explorer_data.region_ids)
    assert [c for c in musecl.columns if c.startswith("e")][:2] == ["e000", "e001"]
    regions = gpd.read_file(path, layer="regions")
    assert "cluster_musecl" in regions and set(regions["cluster_musecl"]) <= {0, 1, 2}
    again = write_gis(explorer_data, tmp_path / "again.gpkg")
    assert again.read_bytes() == path.read_bytes(), "the same data must give the same GeoPackage bytes"


def _browser():
    """Headless Debian chromium through its chromedriver; fails (never skips) when they are missing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("the explorer's browser test needs Debian's chromium and chromium-driver: `make test` installs "
                    "them (as root), or run `apt-get install chromium chromium-driver`")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


# The screen position of a region's centre: Bokeh's own scales map data to canvas pixels.
_REGION_XY = """
const doc = Bokeh.documents[0];
const fig = doc.get_model_by_name('map'), src = doc.get_model_by_name('regions');
const view = Object.values(Bokeh.index)[0].owner.get_one(fig);
const xs = src.data.xs[arguments[0]].slice(0, -1), ys = src.data.ys[arguments[0]].slice(0, -1);
const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;
const box = view.canvas_view.el.getBoundingClientRect();
return [box.left + view.frame.x_scale.compute(mean(xs)), box.top + view.frame.y_scale.compute(mean(ys))];
"""
# Text of every element matching a selector, also inside Bokeh's shadow roots.
_DEEP_TEXT = """
const out = [];
const walk = (root) => { root.querySelectorAll(arguments[0]).forEach(e => out.push(e.textContent));
  root.querySelectorAll('*').forEach(e => { if (e.shadowRoot) walk(e.shadowRoot); }); };
walk(document);
return out;
"""


def _wait(predicate, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


@pytest.mark.slow
def test_page_in_a_headless_browser(explorer_data, tmp_path):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    page = write_page(explorer_data, tmp_path / "index.html")
    browser = _browser()
    try:
        # No network: the page must work from file:// alone (the basemap stays off when the browser is offline).
        browser.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
        browser.get(page.resolve().as_uri())
        ready = _wait(lambda: browser.execute_script(
            "return typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0 && "
            "Bokeh.documents[0].get_model_by_name('panel').text.includes('Click a region')"))
        assert ready, "the page did not render its panel (is BokehJS inside the page?)"
        assert browser.execute_script("return navigator.onLine") is False

        target = 3
        x, y = browser.execute_script(_REGION_XY, target)
        click = ActionBuilder(browser)
        click.pointer_action.move_to_location(int(round(x)), int(round(y)))
        click.pointer_action.click()
        click.perform()
        similar = _wait(lambda: browser.execute_script(_DEEP_TEXT, ".similar-list li"))
        assert browser.execute_script("return Bokeh.documents[0].get_model_by_name('regions').selected.indices") \
            == [target], "the click did not select the region under it"
        expected = similar_table(explorer_data, "MuseCL")
        expected = expected[expected[REGION_ID] == explorer_data.region_ids[target]]["similar_id"].tolist()
        assert [s.split()[0] for s in similar] == expected, "the page lists other similar regions than the data"
        images = browser.execute_script(
            "const out=[]; const walk=(r)=>{r.querySelectorAll('.musecl-panel img').forEach(i=>out.push("
            "i.naturalWidth)); r.querySelectorAll('*').forEach(e=>{if(e.shadowRoot) walk(e.shadowRoot);});};"
            "walk(document); return out;")
        assert images and all(w > 0 for w in images), f"thumbnails did not decode: widths {images}"

        shot = tmp_path / "explorer.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        shutil.copyfile(shot, SCREENSHOT)
        errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert not errors, f"console errors: {errors}"
    finally:
        browser.quit()
