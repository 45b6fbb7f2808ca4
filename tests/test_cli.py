import json

import pytest

from bottlenecks.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "kmeans" in out and "continual" in out


def test_kmeans_command_on_digits(tmp_path, capsys):
    assert main(["kmeans", "--dataset", "digits", "-k", "10", "--quiet", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["k"] == 10 and 0.5 < metrics["purity"] <= 1.0
    assert (tmp_path / "centroids.png").stat().st_size > 1000
    assert "purity" in capsys.readouterr().out


def test_continual_command_writes_a_report(tmp_path):
    out = tmp_path / "run"
    assert main(["continual", "--dataset", "digits", "--encoder", "pixels", "--epochs", "1", "--codebooks", "8",
                 "--keys", "32", "--dim-key", "8", "--methods", "dkvb,linear", "--quiet", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"dkvb", "linear", "dkvb-joint", "linear-joint"} <= set(metrics["methods"])
    report = (out / "report.md").read_text()
    assert "dkvb" in report and "accuracy_curves.png" in report
    assert (out / "accuracy_matrices.png").exists()


def test_continual_toy2d_preset(tmp_path):
    out = tmp_path / "toy"
    assert main(["continual", "toy2d", "--epochs", "2", "--codebooks", "16", "--keys", "64", "--no-joint",
                 "--quiet", "--out", str(out)]) == 0
    assert (out / "decision_regions.png").exists()


@pytest.mark.parametrize("argv, match", [
    (["kmeans", "--dataset", "nope"], "nope"),
    (["continual", "--dataset", "nope", "--quiet"], "nope"),
    (["continual", "--dataset", "digits", "--encoder", "nope", "--quiet"], "nope"),
    (["continual", "--dataset", "digits", "--encoder", "pixels", "--tasks", "11", "--quiet"], "task"),
    (["continual", "--dataset", "fashion-mnist", "--data-dir", "/no/such/dir", "--quiet"], "does not exist"),
])
def test_bad_input_is_a_clear_error(argv, match, tmp_path):
    with pytest.raises(SystemExit, match=match):
        main(argv + (["--out", str(tmp_path)] if argv[0] == "kmeans" else ["--out", str(tmp_path), "--cache-dir",
                                                                            str(tmp_path)]))
