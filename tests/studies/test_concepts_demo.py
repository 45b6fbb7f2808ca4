"""The demo end to end on a small run, and the concept plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bottlenecks.report.concept_plots import save_concept_weights, save_intervention_curve
from bottlenecks.studies.concepts_demo import ConceptsDemoConfig, ConceptsDemoResults, run


@pytest.mark.slow
def test_small_demo_writes_report_metrics_and_pngs_and_ignores_thread_count(tmp_path):
    before = torch.get_num_threads()
    cfg = ConceptsDemoConfig(n_train=300, n_test=120, encoder="pixels", compare=False)
    m = run(cfg, out=tmp_path, progress=False)
    for name in ("report.md", "metrics.json", "intervention_curve.png", "concept_weights.png", "samples.png",
                 "model/model.safetensors", "model/config.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_accuracy"] == m["test_accuracy"] and set(saved["targets"]) == set(m["targets"])
    curve = m["intervention_curves"]["uncertain"]["accuracy"]
    assert len(curve) == 10 and curve[-1] == pytest.approx(m["intervened_accuracy"])
    assert m["edit_log"][0]["concepts"] == ["tinted background"]
    assert np.all(np.asarray(m["edited_weights"])[:, -1] == 0)
    report = (tmp_path / "report.md").read_text()
    assert "concept accuracy >= 95%" in report and "intervention_curve.png" in report
    assert m["config"]["glm_selection"] == "1se" and "rule '1se'" in report
    assert m["config"]["glm_val_accuracy"] >= m["config"]["glm_best_val_accuracy"] - 0.1
    # the same seed at another thread count: the same numbers (without pinning the solvers to one
    # thread, the CAVs and the chosen lambda moved here, measured)
    m2 = run(cfg.replace(threads=2), out=tmp_path / "threads2", progress=False)
    assert torch.get_num_threads() == before
    assert ConceptsDemoResults.from_json(tmp_path / "metrics.json") == m  # the JSON round trip
    m.seconds = m2.seconds = None
    assert m2 == m


def test_plots_check_their_inputs(tmp_path):
    with pytest.raises(ValueError, match="at least one curve"):
        save_intervention_curve({}, tmp_path / "c.png")
    with pytest.raises(ValueError, match="class names"):
        save_concept_weights(np.ones((2, 3)), ["a", "b", "c"], ["x"], tmp_path / "w.png")
    p = save_concept_weights(np.arange(6.0).reshape(2, 3), ["a", "b", "c"], ["x", "y"], tmp_path / "w.png",
                             highlight=["c"], edited=np.zeros((2, 3)))
    assert p.stat().st_size > 1000
