"""The report writers on hand-made results: what they write is what the results say."""

import json
import math

from bottlenecks.report.continual_report import table, write_report
from bottlenecks.report.info_plane_report import info_plane_markdown
from bottlenecks.studies.base import write_json


def _continual_results():
    R = [[0.9, 0.0], [0.5, 0.8]]
    run = {"R": R, "final_accuracy": 0.65, "average_accuracy": 0.65, "forgetting": 0.4, "backward_transfer": -0.4,
           "curve": {"steps": [0, 10, 20], "accuracy": [0.1, 0.5, 0.65]}, "task_boundaries": [10, 20], "seconds": 1.5}
    joint = {"final_accuracy": 0.9, "curve": {"steps": [0, 20], "accuracy": [0.1, 0.9]}, "seconds": 2.0}
    return {"config": {"n_tasks": 2}, "n_classes": 4, "methods": {
        "dkvb": {"runs": [run], "summary": {"final_accuracy": {"mean": 0.65, "std": 0.05},
                                            "average_accuracy": {"mean": 0.65, "std": 0.0},
                                            "forgetting": {"mean": 0.4, "std": 0.0},
                                            "backward_transfer": {"mean": -0.4, "std": 0.0},
                                            "seconds": {"mean": 1.5, "std": 0.0}}},
        "dkvb-joint": {"runs": [joint], "summary": {"final_accuracy": {"mean": 0.9, "std": None},
                                                    "seconds": {"mean": 2.0, "std": None}}}}}


def test_continual_table_formats_mean_and_std_and_dashes_for_missing():
    lines = table(_continual_results()).splitlines()
    assert lines[0].startswith("| method | final acc. | avg acc. | forgetting | BWT | time s |")
    assert lines[2] == "| dkvb | 65.0 ± 5.0 | 65.0 | 40.0 | -40.0 | 1.5 |"
    assert lines[3] == "| dkvb-joint | 90.0 | – | – | – | 2.0 |"


def test_continual_report_writes_metrics_plots_and_markdown(tmp_path):
    results = _continual_results()
    report = write_report(results, tmp_path / "out", title="Toy", notes=["- a note"])
    text = report.read_text()
    assert text.startswith("# Toy\n\n- a note\n") and "| dkvb | 65.0 ± 5.0 |" in text
    assert "accuracy_curves.png" in text and "accuracy_matrices.png" in text
    assert (tmp_path / "out" / "accuracy_curves.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["methods"]["dkvb"]["runs"][0]["R"] == [[0.9, 0.0], [0.5, 0.8]]


def test_info_plane_markdown_tabulates_every_layer():
    layer = {"width": 10, "i_xt_peak": 9.5, "i_xt_peak_epoch": 3, "i_xt_final": 8.25, "compression_bits": 1.25,
             "i_ty_final": 0.75, "i_ty_max": 0.8, "degree_of_ib_bits": 7.5}
    m = {"config": {"activation": "tanh", "epochs": 5, "seed": 0, "estimator": "binning", "bins": 30, "lr": 1e-3,
                    "batch_size": 256, "widths": [10, 7]},
         "data": {"h_y_bits": 0.99916, "h_y_published_bits": 0.99916, "h_x_bits": 12.0, "n_train": 3482},
         "environment": {"python": "3.x", "torch": "2.x", "threads": 1},
         "runs": {"tanh": {"final": {"train_acc": 0.9, "test_acc": 0.8, "train_loss": 0.25, "test_loss": 0.5},
                           "seconds": 1.0, "layers": {"act0": layer}}}}
    text = info_plane_markdown(m)
    assert "network 12-10-7-2" in text and "![tanh](info-plane-tanh.png)" in text
    assert "| act0 | 10 | 9.500 (3) | 8.250 | 1.250 | 0.7500 | 0.8000 | 7.500 |" in text
    assert "final train / test accuracy 0.900 / 0.800" in text


def test_partial_results_are_written_whole(tmp_path):
    path = write_json({"a": (1, 2), "b": math.nan}, tmp_path / "deep" / "metrics.json")
    saved = json.loads(path.read_text())
    assert saved["a"] == [1, 2] and math.isnan(saved["b"]) and not list(path.parent.glob("*.tmp"))
