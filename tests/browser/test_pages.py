"""Every page kind in a real browser: it loads with no console error, renders the right number
of codes / concepts / methods, and its controls work (search, click, toggles, sorting)."""

from __future__ import annotations

import pytest
from html_data import codebook_results, concepts_results, continual_results, info_results

pytest.importorskip("plotly")

from bottlenecks.report.html_codebook import codebook_page  # noqa: E402
from bottlenecks.report.html_concepts import concepts_page  # noqa: E402
from bottlenecks.report.html_continual import continual_page  # noqa: E402
from bottlenecks.report.html_info import info_page  # noqa: E402


def open_page(browser, page, tmp_path):
    """Write the page, load it from file://, wait until it has drawn; fail on any console error."""
    from selenium.webdriver.support.ui import WebDriverWait

    path = page.write(tmp_path / f"{page.kind}.html")
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(path.resolve().as_uri())
    WebDriverWait(browser, 60).until(lambda d: d.execute_script("return document.body.dataset.ready") == "1")
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert browser.find_element("id", "bn-status").text == ""  # no "could not draw" message
    return path


def screenshot(browser, shots, name):
    browser.execute_script("window.scrollTo(0, 0)")
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1400, min(height + 40, 2400))
    path = shots / f"html-{name}.png"
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000
    browser.set_window_size(1400, 1000)


def js(browser, script):
    return browser.execute_script(script)


def test_codebook_page_search_and_contexts(browser, shots, tmp_path):
    metrics, codes = codebook_results()
    records = codes["codes"]
    open_page(browser, codebook_page(metrics, codes), tmp_path)
    rows = lambda: js(browser, "return document.querySelectorAll('#code-list tbody tr').length")  # noqa: E731
    assert rows() == len(records)
    assert browser.find_element("id", "code-count").text == f"{len(records)} of {len(records)} codes"
    # typing a label filters the list to the codes whose best labels include it
    label = records[0]["top"][0]["label"]
    expected = sum(any(t["label"] == label for t in c["top"]) for c in records)
    box = browser.find_element("id", "code-search")
    box.send_keys(f"label:{label}")
    assert 0 < rows() == expected < len(records)
    box.clear()
    box.send_keys("token:7")
    fires_on_7 = sum(any(x["tokens"][x["at"]].strip() == "7" for x in c["contexts"]) for c in records)
    assert rows() == fires_on_7
    box.clear()
    js(browser, "document.getElementById('code-search').dispatchEvent(new Event('input'))")
    assert rows() == len(records)
    # sorted by usage (the default): the first row is the most used code; clicking shows its contexts
    top = max(records, key=lambda c: c["usage"])
    first = browser.find_element("css selector", "#code-list tbody tr")
    assert first.find_elements("tag name", "td")[0].text == top["name"]
    first.click()
    detail = browser.find_element("id", "code-detail")
    assert top["name"] in detail.text
    marks = detail.find_elements("css selector", ".bn-context mark")
    assert [m.text.strip() for m in marks] == [x["tokens"][x["at"]].strip() for x in top["contexts"]]
    assert len(marks) == len(top["contexts"]) > 0
    screenshot(browser, shots, "codebook")


def test_concepts_page_weights_and_explanations(browser, shots, tmp_path):
    res = concepts_results()
    open_page(browser, concepts_page(res), tmp_path)
    n = len(res["concept_names"])
    assert js(browser, "return document.querySelectorAll('#weights-table tbody tr').length") == n
    visible = "return Array.from(document.querySelectorAll('#weights-table tbody tr')).filter(r => !r.hidden).length"
    import numpy as np

    used = int((np.abs(np.asarray(res["weights"])) > 1e-9).any(0).sum())
    assert js(browser, visible) == used < n  # the sparse view hides the concepts no class uses
    browser.find_element("id", "sparse-view").click()
    assert js(browser, visible) == n
    thumbs = browser.find_elements("css selector", "#gallery .bn-thumb")
    assert len(thumbs) == len(res["explanations"])
    thumbs[2].click()
    sample = res["explanations"][2]
    bars = js(browser, "return document.getElementById('explain-plot').data.map(t => t.x)")
    order = {c: i for i, c in enumerate(res["concept_names"])}
    by_concept = sorted(sample["concepts"], key=lambda c: order[c["concept"]])
    assert np.allclose(bars[1], [c["contribution"] for c in by_concept])
    assert sample["true_class"] in browser.find_element("id", "explain-image").text
    screenshot(browser, shots, "concepts")


def test_continual_page_toggles_and_sorting(browser, shots, tmp_path):
    res = continual_results()
    open_page(browser, continual_page(res, title="Class-incremental fashion-mnist"), tmp_path)
    methods = list(res["methods"])
    boxes = browser.find_elements("css selector", ".bn-toggles[data-fig='curves'] input")
    assert [b.get_attribute("value") for b in boxes] == methods
    shown = ("return document.getElementById('curves').data.filter(t => t.legendgroup === 'mlp' && "
             "t.visible !== 'legendonly').length")
    assert js(browser, shown) == 2  # the mean line and its band
    boxes[methods.index("mlp")].click()
    assert js(browser, shown) == 0
    assert js(browser, "return document.getElementById('matrices').data.length") == 4
    assert js(browser, "return document.getElementById('key-usage').data.length") == 3
    # sorting the summary by final accuracy (descending) puts the best method first
    browser.find_element("css selector", "#summary thead th:nth-child(2)").click()
    best = max(methods, key=lambda m: res["methods"][m]["summary"]["final_accuracy"]["mean"])
    assert browser.find_element("css selector", "#summary tbody tr td").text == best
    screenshot(browser, shots, "continual")


def test_info_page_plane(browser, shots, tmp_path):
    res = info_results()
    open_page(browser, info_page(res), tmp_path)
    n_layers = sum(len(r["layers"]) for r in res["runs"].values())
    assert js(browser, "return document.getElementById('plane').data.length") == n_layers
    # hovering a point names its epoch and layer
    text = js(browser, "const d = document.getElementById('plane').data[0]; return [d.hovertemplate, d.customdata[3]]")
    assert "epoch" in text[0] and text[1][1] == "act0"
    assert len(browser.find_elements("css selector", ".bn-toggles[data-fig='plane'] input")) == 5
    screenshot(browser, shots, "info")
