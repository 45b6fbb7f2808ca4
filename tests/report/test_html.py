"""The HTML page builders without a browser: what goes into the page, bad input, the size."""

import base64
import gzip
import json
import re

import numpy as np
import pytest
from html_data import codebook_results, concepts_results, continual_results, info_results

pytest.importorskip("plotly")

from bottlenecks.report.html import Page, _plotly_bundle, image_data_uri, plain_json  # noqa: E402
from bottlenecks.report.html_browse import build_html, page_kind  # noqa: E402
from bottlenecks.report.html_codebook import codebook_page  # noqa: E402
from bottlenecks.report.html_concepts import concepts_page  # noqa: E402
from bottlenecks.report.html_continual import continual_page  # noqa: E402
from bottlenecks.report.html_info import info_page  # noqa: E402


def _script(html: str, element_id: str):
    m = re.search(f'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def test_bundle_is_plotly_js_compressed():
    from plotly.offline import get_plotlyjs

    version, packed = _plotly_bundle()
    assert gzip.decompress(base64.b64decode(packed)).decode() == get_plotlyjs()
    assert len(packed) < 0.5 * len(get_plotlyjs())  # the point of compressing it


def test_plain_json_rounds_and_drops_nan():
    out = plain_json({"a": np.float32(0.123456789), "b": [float("nan"), np.int64(3)], "c": (1.0, float("inf"))})
    assert out == {"a": 0.123457, "b": [None, 3], "c": [1.0, None]}
    json.dumps(out, allow_nan=False)


def test_page_escapes_text_and_script_data():
    page = Page("<b>run</b>")
    page.text("a < b & c").data("evil", "</script><script>alert(1)</script>")
    html = page.render()
    assert "<h1>&lt;b&gt;run&lt;/b&gt;</h1>" in html and "a &lt; b &amp; c" in html
    assert "</script><script>alert" not in html
    assert _script(html, "bn-data") == {"evil": "</script><script>alert(1)</script>"}
    assert html.count('id="bn-plotly"') == 1


def test_table_cells_sort_as_numbers():
    page = Page("t")
    page.table(["name", "value"], [["a", 2.5], ["b", ("10 %", 10.0)], ["c", float("nan")]], table_id="t1")
    html = page.render()
    assert '<td data-v="2.5">2.5</td>' in html and '<td data-v="10.0">10 %</td>' in html
    assert '<td data-v="">–</td>' in html


def test_image_data_uri_takes_channels_first_and_rejects_other_shapes():
    from PIL import Image

    uri = image_data_uri(np.random.default_rng(0).random((3, 5, 7)))
    img = Image.open(__import__("io").BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert img.size == (7, 5)
    with pytest.raises(ValueError, match=r"expected shape \(H, W\)"):
        image_data_uri(np.zeros((2, 3, 4, 5)))


def test_continual_page_has_every_method_and_matrix():
    res = continual_results()
    page = continual_page(res, title="fm")
    html = page.render()
    figs = _script(html, "bn-figures")
    curves = [t for t in figs["curves"]["data"] if t.get("showlegend") is not False]
    assert [t["name"] for t in curves] == list(res["methods"])
    heat = figs["matrices"]["data"]
    assert [t["name"] for t in heat] == ["dkvb", "linear", "mlp", "replay"]
    # the matrix shown is the mean over seeds, in %
    R = np.mean([r["R"] for r in res["methods"]["dkvb"]["runs"]], axis=0)
    assert np.allclose(np.array(heat[0]["z"], dtype=float), np.round(100 * R, 1))
    assert len(figs["key-usage"]["data"]) == 3
    assert len(figs["key-usage"]["layout"]["updatemenus"][0]["buttons"]) == 3


def test_info_page_hover_has_epoch_and_layer():
    res = info_results()
    figs = _script(info_page(res).render(), "bn-figures")
    plane = figs["plane"]["data"]
    assert len(plane) == sum(len(r["layers"]) for r in res["runs"].values())
    first = [h for h in res["runs"]["tanh"]["history"] if h["layer"] == "act0"]
    assert [c[0] for c in plane[0]["customdata"]] == sorted(h["epoch"] for h in first)
    assert "epoch" in plane[0]["hovertemplate"] and "layer" in plane[0]["hovertemplate"]


def test_concepts_page_contributions_and_sparse_table():
    res = concepts_results()
    html = concepts_page(res).render()
    data = _script(html, "bn-data")
    assert len(data["samples"]) == 6 and all(s["src"].startswith("data:image/png;base64,") for s in data["samples"])
    assert data["concepts"] == res["concept_names"]
    assert html.count("<tr>") >= len(res["concept_names"])  # one weight-table row per concept
    figs = _script(html, "bn-figures")
    assert [t["name"] for t in figs["weights"]["data"]] == ["before the edit", "after the edit"]


def test_codebook_page_carries_the_code_records():
    metrics, codes = codebook_results()
    html = codebook_page(metrics, codes).render()
    data = _script(html, "bn-data")
    assert len(data["codes"]) == len(codes["codes"]) > 0
    figs = _script(html, "bn-figures")
    assert len(figs["steering-per-state"]["data"][0]["z"]) == len(metrics["analysis"]["steering"])


@pytest.mark.parametrize("builder", [continual_page, info_page, concepts_page])
def test_wrong_results_are_refused_with_the_keys_seen(builder):
    with pytest.raises(ValueError, match=r"got keys \['foo'\]"):
        builder({"foo": 1})


def test_codebook_page_refuses_malformed_codes():
    metrics, _ = codebook_results()
    with pytest.raises(ValueError, match=r"missing \['share', 'contexts'\]"):
        codebook_page(metrics, {"codes": [{"name": "a", "site": "s", "usage": 1}]})


def test_page_kind_and_build_html(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(info_results()))
    (tmp_path / "report.md").write_text("# Twelve-bit plane\n\ntext\n")
    assert page_kind(json.loads((tmp_path / "metrics.json").read_text())) == "info"
    assert page_kind(continual_results()) == "continual"
    assert page_kind(concepts_results(1)) == "concepts"
    assert page_kind(codebook_results()[0]) == "codebook"
    path = build_html(tmp_path)
    html = path.read_text()
    assert path == tmp_path / "report.html" and "<title>Twelve-bit plane</title>" in html
    assert 'data-kind="info"' in html
    # a size that scales with the data, not the bundle: a few MB at most
    assert path.stat().st_size < 3_000_000


def test_build_html_reads_the_second_files(tmp_path):
    res = continual_results()
    (tmp_path / "key_usage.json").write_text(json.dumps(res.pop("key_usage")))
    (tmp_path / "metrics.json").write_text(json.dumps(res))
    figs = _script(build_html(tmp_path).read_text(), "bn-figures")
    assert len(figs["key-usage"]["data"]) == 3
    conc = concepts_results(2)
    (tmp_path / "explanations.json").write_text(json.dumps(conc.pop("explanations")))
    (tmp_path / "metrics.json").write_text(json.dumps(conc))
    assert len(_script(build_html(tmp_path).read_text(), "bn-data")["samples"]) == 2


def test_build_html_generic_and_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        build_html(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no metrics.json or results.json or report.json or report.md"):
        build_html(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"k": 10, "inertia": 1.5, "nested": {"purity": 0.9}}))
    html = build_html(tmp_path).read_text()
    assert 'data-kind="generic"' in html and "nested.purity" in html
    (tmp_path / "metrics.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        build_html(tmp_path)
