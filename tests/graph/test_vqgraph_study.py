import numpy as np
import pytest

pytest.importorskip("torch_geometric")

from bottlenecks.data.graphs import make_csbm  # noqa: E402
from bottlenecks.studies.base import nan_equal  # noqa: E402
from bottlenecks.studies.vqgraph import VQGraphConfig, VQGraphResults, run  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def graph_file(tmp_path):
    g = make_csbm(n_per_class=40, n_classes=3, n_features=12, seed=0)
    path = tmp_path / "csbm.npz"
    np.savez(path, x=g.x, edge_index=g.edge_index, y=g.labels)
    return path


def _tiny(path, **kw):
    base = dict(dataset=str(path), seeds=1, n_train=5, n_val=5, hidden=16, num_codes=16, epochs=6, patience=6,
                teacher_dropouts=(0.0,), glnn_label_weights=(1.0,), vq_grid=((0.1, 1.0),), timing_repeats=1,
                view_points=50)
    base.update(kw)
    return VQGraphConfig(**base)


def test_study_runs_both_settings_and_writes_the_report(graph_file, tmp_path):
    out = tmp_path / "run"
    res = run(_tiny(graph_file), out=out, progress=False)
    for setting in ("transductive", "inductive"):
        for m in ("SAGE", "MLP", "GLNN", "tokenizer", "VQGraph"):
            r = res.runs[setting][m]
            assert len(r["test"]) == 1 and 0 <= r["test"][0] <= 1
            if setting == "inductive":
                assert 0 <= r["ind"][0] <= 1
            assert 1 <= r["epoch"][0] <= 6
        for m in ("SAGE", "tokenizer"):  # the teachers' soft labels: mean top probability in [1/C, 1]
            assert 1 / 3 - 1e-6 <= res.runs[setting][m]["confidence"][0] <= 1
    assert set(res.timing) == {"SAGE", "tokenizer", "MLP student"}
    assert abs(sum(res.usage) - 1) < 1e-3 and len(res.view["xy"]) == 50
    for f in ("results.json", "report.md", "accuracy.png", "usage.png", "embeddings.png"):
        assert (out / f).exists()
    back = VQGraphResults.from_json(out / "results.json")
    assert nan_equal(back.to_dict(), res.to_dict())
    assert "| VQGraph (MLP student) |" in (out / "report.md").read_text()


@pytest.mark.parametrize("passes", ["joint", "alternating"])
def test_same_seed_same_numbers(graph_file, passes):
    a = run(_tiny(graph_file, settings=("transductive",), view_points=0, student_passes=passes), progress=False)
    b = run(_tiny(graph_file, settings=("transductive",), view_points=0, student_passes=passes), progress=False)
    for m in a.runs["transductive"]:
        assert a.runs["transductive"][m]["test"] == b.runs["transductive"][m]["test"]
    assert a.config["student_passes"] == passes


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="settings"):
        VQGraphConfig(settings=("semi",))
    with pytest.raises(ValueError, match="vq_grid"):
        VQGraphConfig(vq_grid=((0.0, 1.0),))
    with pytest.raises(ValueError, match="teacher_select"):
        VQGraphConfig(teacher_select="f1")
    with pytest.raises(ValueError, match="student_passes"):
        VQGraphConfig(student_passes="both")
    with pytest.raises(ValueError, match="unknown key.*'sedes'.*did you mean 'seeds'"):
        VQGraphConfig.from_dict({"sedes": 3})


def test_cli_runs_the_study_and_refuses_bad_files(graph_file, tmp_path, capsys):
    from bottlenecks.cli import main

    out = tmp_path / "cli"
    rc = main(["graph", "vqgraph", "--dataset", str(graph_file), "--seeds", "1", "--n-train", "5", "--n-val", "5",
               "--hidden", "16", "--num-codes", "16", "--epochs", "4", "--patience", "4", "--settings",
               "transductive", "--timing-repeats", "1", "--view-points", "0", "--quiet", "--out", str(out)])
    assert rc == 0 and (out / "report.md").exists()
    assert "VQGraph" in capsys.readouterr().out
    assert main(["graph", "vqgraph", "--dataset", str(tmp_path / "absent.npz"), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err
