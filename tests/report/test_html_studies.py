"""Every study writes report.html (and the page's second file) beside report.md, at tiny sizes;
`bottlenecks browse` rebuilds it from a saved run."""

import json

import numpy as np
import pytest

from bottlenecks.cli import main


def _kind(path) -> str:
    html = path.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count('id="bn-plotly"') == 1
    return html.split('data-kind="', 1)[1].split('"', 1)[0]


def test_continual_writes_key_usage_per_task(tmp_path, one_thread):
    from bottlenecks.studies.continual import ContinualConfig, load_data, run

    cfg = ContinualConfig(dataset="toy2d", epochs=2, batch_size=50, methods=("dkvb",), joint=False, num_codebooks=4,
                          keys_per_codebook=16)
    data = load_data(cfg)
    run(cfg, out=tmp_path, progress=False, data=data)
    assert _kind(tmp_path / "report.html") == "continual"
    ku = json.loads((tmp_path / "key_usage.json").read_text())
    usage = np.array(ku["usage"])  # (heads, tasks, keys)
    assert usage.shape == (4, 4, 16) and ku["heads"] == [0, 1, 2, 3]
    # each head picks one key per training input of the task, every epoch (topk 1)
    per_task = np.bincount(np.searchsorted(np.unique(data.y_train), data.y_train), minlength=8).reshape(4, 2).sum(1)
    assert (usage.sum(2) == 2 * per_task).all()


def test_tokfsm_writes_the_code_browser(tmp_path, one_thread):
    from bottlenecks.studies.tokfsm import TokFSMConfig, run

    cfg = TokFSMConfig(num_states=10, num_successors=2, length=8, hidden=32, intermediate=64, layers=1, heads=2,
                       prompt_states=4, steps=10, batch_size=8, num_codes=16, eval_sequences=16,
                       analysis_sequences=16, prompts_per_state=1, models=("original", "codebook_attn"))
    run(cfg, out=tmp_path, progress=False)
    assert _kind(tmp_path / "report.html") == "codebook"
    codes = json.loads((tmp_path / "codes.json").read_text())["codes"]
    assert codes and {c["site"] for c in codes} == {"layers.0.attn_heads"}
    assert {c["group"] for c in codes} == {0, 1}  # one codebook per head
    for c in codes:  # 16 sequences of 16 tokens; the firing token is a digit or the start token
        assert 0 < c["usage"] <= 16 * 16 and all(x["tokens"][x["at"]].strip() in "0123456789⏎" for x in c["contexts"])


def test_concepts_demo_writes_explanations(tmp_path, one_thread):
    from bottlenecks.studies.concepts_demo import ConceptsDemoConfig, run

    res = run(ConceptsDemoConfig(n_train=60, n_test=24, encoder="pixels", image_size=8, compare=False),
              out=tmp_path, progress=False)
    assert _kind(tmp_path / "report.html") == "concepts"
    ex = json.loads((tmp_path / "explanations.json").read_text())
    assert 0 < len(ex) <= 4 * len(res.class_names)
    for e in ex:
        assert np.array(e["image"]).shape == (3, 8, 8) and len(e["concepts"]) == len(res.concept_names)
        assert e["true_class"] in res.class_names and len(e["true_concepts"]) == len(res.concept_names)


def test_info_plane_and_kmeans_write_pages(tmp_path):
    from bottlenecks.studies.info_plane import InfoPlaneConfig
    from bottlenecks.studies.info_plane import run as run_plane

    run_plane(InfoPlaneConfig(activation="tanh", epochs=4, n_points=2), out=tmp_path / "plane", progress=False)
    assert _kind(tmp_path / "plane" / "report.html") == "info"
    assert main(["kmeans", "--dataset", "digits", "-k", "4", "--out", str(tmp_path / "km"), "--quiet"]) == 0
    assert _kind(tmp_path / "km" / "report.html") == "generic"


def test_browse_command_rebuilds_and_refuses_a_missing_run(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text(json.dumps({"inertia": 1.5}))
    assert main(["browse", str(tmp_path), "--out", str(tmp_path / "page.html")]) == 0
    assert f"report: {tmp_path / 'page.html'}" in capsys.readouterr().out
    assert _kind(tmp_path / "page.html") == "generic"
    assert main(["browse", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["browse"])
