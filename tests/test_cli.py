import json
import re

import numpy as np
import pytest

from bottlenecks.cli import main


def test_help_lists_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("kmeans", "continual", "codebook", "info"))


@pytest.mark.slow
def test_kmeans_command_on_digits(tmp_path, capsys):
    assert main(["kmeans", "--dataset", "digits", "-k", "10", "--quiet", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["k"] == 10 and 0.5 < metrics["purity"] <= 1.0
    assert (tmp_path / "centroids.png").stat().st_size > 1000
    assert "purity" in capsys.readouterr().out


@pytest.mark.slow
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


@pytest.mark.slow
def test_continual_toy2d_preset(tmp_path):
    out = tmp_path / "toy"
    assert main(["continual", "toy2d", "--epochs", "2", "--codebooks", "16", "--keys", "64", "--no-joint",
                 "--quiet", "--out", str(out)]) == 0
    assert (out / "decision_regions.png").exists()


@pytest.mark.slow
def test_continual_on_an_npz_of_embeddings(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 20)
    x = rng.normal(size=(10, 8))[y] * 5 + rng.normal(size=(200, 8))  # well-separated class means
    np.savez(tmp_path / "emb.npz", x=x.astype(np.float32), y=y)
    out = tmp_path / "run"
    assert main(["continual", "--dataset", str(tmp_path / "emb.npz"), "--methods", "linear", "--no-joint",
                 "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"linear"}
    assert "embeddings" in (out / "report.md").read_text()


@pytest.mark.slow
def test_continual_on_an_image_folder(tmp_path):
    image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c, name in enumerate(("a", "b", "c")):
        (root / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(40 + 80 * c + rng.integers(-20, 20, size=(8, 8)), 0, 255).astype(np.uint8)
            image.fromarray(pixels).save(root / name / f"{i}.png")
    out = tmp_path / "run"
    assert main(["continual", "--dataset", str(root), "--encoder", "pixels", "--methods", "dkvb,linear",
                 "--no-joint", "--tasks", "3", "--epochs", "1", "--codebooks", "4", "--keys", "8", "--dim-key", "4",
                 "--quiet", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"dkvb", "linear"} <= set(metrics["methods"])
    assert str(root.resolve()) in (out / "report.md").read_text()


@pytest.mark.parametrize("argv, match", [
    (["kmeans", "--dataset", "nope"], "nope"),
    (["continual", "--dataset", "nope", "--quiet"], "nope"),
    (["continual", "--dataset", "digits", "--encoder", "nope", "--quiet"], "nope"),
    (["continual", "--dataset", "digits", "--encoder", "pixels", "--tasks", "11", "--quiet"], "task"),
    (["continual", "--dataset", "fashion-mnist", "--data-dir", "/no/such/dir", "--quiet"], "does not exist"),
    (["continual", "--dataset", "/no/such/emb.npz", "--quiet"], "no such file"),
    (["continual", "--dataset", "/no/such/folder", "--quiet"], "no such file or folder"),
    (["continual", "--dataset", "cifar10", "--data-dir", "/no/such/dir", "--quiet"], "torchvision|--download"),
])
def test_bad_input_is_a_clear_error(argv, match, tmp_path, capsys):
    code = main(argv + (["--out", str(tmp_path)] if argv[0] == "kmeans" else ["--out", str(tmp_path), "--cache-dir",
                                                                               str(tmp_path)]))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert re.search(match, err), err


@pytest.mark.slow
def test_continual_keys_from_another_data_set(tmp_path):
    out = tmp_path / "kf"
    assert main(["continual", "--dataset", "digits", "--encoder", "pixels", "--keys-from", "digits", "--epochs", "1",
                 "--codebooks", "4", "--keys", "16", "--dim-key", "4", "--methods", "dkvb", "--no-joint", "--quiet",
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "keys fitted on the unlabelled training inputs of digits" in (out / "report.md").read_text()


@pytest.mark.slow
def test_info_plane_command(tmp_path, capsys):
    assert main(["info", "plane", "--activation", "tanh", "--epochs", "3", "--quiet", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "tanh" in json.dumps(metrics)
    assert (tmp_path / "info-plane-tanh.png").stat().st_size > 1000
    assert "report.md" in capsys.readouterr().out


def test_family_commands_need_a_subcommand():
    with pytest.raises(SystemExit):
        main(["info"])
    with pytest.raises(SystemExit):
        main(["codebook"])


@pytest.mark.slow
def test_concepts_demo_command(tmp_path, capsys):
    argv = ["concepts", "demo", "--encoder", "pixels", "--n-train", "200", "--n-test", "100", "--no-compare",
            "--quiet", "--out", str(tmp_path)]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["targets"]) >= {"concept_accuracy", "edit_gain_shifted"}
    assert (tmp_path / "intervention_curve.png").stat().st_size > 1000
    assert "target concept_accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_concepts_select_command(tmp_path, capsys):
    path = tmp_path / "concepts.json"
    path.write_text(json.dumps({"cat": ["whiskers", "fur", "a cat", "pointed ears"],
                                "car": ["wheels", "headlights", "metal body", "windshield"]}))
    assert main(["concepts", "select", str(path), "-k", "2", "--quiet", "--out", str(tmp_path)]) == 0
    chosen = json.loads((tmp_path / "selected_concepts.json").read_text())["selected"]
    assert set(chosen) == {"cat", "car"} and all(len(v) <= 2 for v in chosen.values())
    assert "a cat" not in chosen["cat"]  # too close to its class name: Label-free's filter


def test_concepts_cub_command(tmp_path, capsys):
    from bottlenecks.data.cub import write_tiny_cub

    root = write_tiny_cub(tmp_path)
    assert main(["concepts", "cub", str(root), "--min-classes", "2"]) == 0
    assert "attributes kept" in capsys.readouterr().out
    assert main(["concepts", "cub", str(tmp_path / "no_such")]) == 2
    assert "no_such" in capsys.readouterr().err


@pytest.mark.slow
def test_codebook_tokfsm_command(tmp_path, capsys):
    argv = ["codebook", "tokfsm", "--steps", "3", "--batch-size", "2", "--num-codes", "16", "--models",
            "original,codebook_attn", "--eval-sequences", "4", "--analysis-sequences", "8",
            "--prompts-per-state", "1", "--num-states", "10", "--num-successors", "2", "--length", "8",
            "--prompt-states", "4", "--hidden", "32", "--intermediate", "64", "--layers", "1", "--heads", "2",
            "--quiet", "--out", str(tmp_path)]  # a tiny machine and model: the command's logic, not the paper's size
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["models"]) == {"original", "codebook_attn"}
    assert 0.0 <= metrics["models"]["codebook_attn"]["transition_accuracy"] <= 1.0
    gap = metrics["models"]["codebook_attn"]["gap_to_original"]  # paired over the same 4 prompts
    accs = [metrics["models"][n]["transition_accuracy"] for n in ("original", "codebook_attn")]
    assert gap["points"] == pytest.approx(100 * (accs[0] - accs[1])) and gap["paired_se"] >= 0
    assert "gap_to_original" not in metrics["models"]["original"]
    assert "± paired SE" in (tmp_path / "report.md").read_text()
    assert "transition accuracy" in capsys.readouterr().out
    assert main(argv[:-2] + ["--models", "codebook_attn", "--out", str(tmp_path)]) == 2
    assert "--models" in capsys.readouterr().err
    # --reuse: the saved weights come back (same metrics, no training); other settings train again
    saved = (tmp_path / "models" / "codebook_attn.safetensors").read_bytes()
    assert main(argv + ["--reuse"]) == 0
    again = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("original", "codebook_attn"):
        assert again["models"][name]["train_loss"] == metrics["models"][name]["train_loss"]
        assert again["models"][name]["transition_accuracy"] == metrics["models"][name]["transition_accuracy"]
    assert again["analysis"]["state"] == metrics["analysis"]["state"]
    floors = again["analysis"]["recall_floors"]["state"]
    assert [f["min_recall"] for f in floors] == [0.25, 0.5, 0.75]
    assert all(0.0 <= f["code_precision"] <= 1.0 and 0 <= f["states"] <= 100 for f in floors)
    assert all(f["code_recall"] >= f["min_recall"] for f in floors if f["states"])
    assert "recall floor" in (tmp_path / "report.md").read_text()
    assert set(again["analysis"]["steering"]) == {"codebook_attn: replace, precise codes",
                                                  "codebook_attn: add, precise codes",
                                                  "codebook_attn: replace, frequent codes",
                                                  "codebook_attn: add, frequent codes",
                                                  "codebook_attn: replace, frequent codes, next codes by state only"}
    assert main(argv[:3] + ["4"] + argv[4:] + ["--reuse"]) == 0  # --steps 4: trained afresh
    assert (tmp_path / "models" / "codebook_attn.safetensors").read_bytes() != saved
    saved = (tmp_path / "models" / "codebook_attn.safetensors").read_bytes()
    assert main(argv[:3] + ["4"] + argv[4:] + ["--reuse", "--code-gradient"]) == 0  # another setting: afresh
    assert (tmp_path / "models" / "codebook_attn.safetensors").read_bytes() != saved
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["code_gradient"] is True
    assert "public aeloss" in (tmp_path / "report.md").read_text()
    # the model without codebooks depends on none of the codebook settings: it is reused
    original = (tmp_path / "models" / "original.safetensors").read_bytes()
    saved = (tmp_path / "models" / "codebook_attn.safetensors").read_bytes()
    assert main(argv[:3] + ["4"] + argv[4:] + ["--reuse", "--code-gradient", "--codebook-warmup", "0.5"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["models"]["original"]["reused"] and not metrics["models"]["codebook_attn"]["reused"]
    assert (tmp_path / "models" / "original.safetensors").read_bytes() == original
    assert (tmp_path / "models" / "codebook_attn.safetensors").read_bytes() != saved
    assert "bypassed for the first 50% of the steps" in (tmp_path / "report.md").read_text()
    capsys.readouterr()
    assert main(argv + ["--codebook-warmup", "1.0"]) == 2
    assert "--codebook-warmup" in capsys.readouterr().err


def test_info_mi_command(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 2))
    y = 0.8 * x + 0.6 * rng.standard_normal((2000, 2))
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    assert main(["info", "mi", str(tmp_path / "xy.npz"), "--method", "gaussian"]) == 0
    value = float(capsys.readouterr().out.split("=")[1].split()[0])
    assert abs(value - (-np.log(1 - 0.64))) < 0.05  # 2 * -0.5 log(1 - rho^2), rho = 0.8
    assert main(["info", "mi", str(tmp_path / "xy.npz"), "--units", "bits", "--ci", "0.9", "--n-resamples",
                 "20"]) == 0
    assert "90% interval" in capsys.readouterr().out
    assert main(["info", "mi", str(tmp_path / "xy.npz"), "--y-key", "z"]) == 2
    assert "expected 'z'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, match", [
    (["continual", "toy2d", "--tasks", "5"], r"^error: --n-tasks: toy2d has 8 classes.*got 5$"),
    (["continual", "--dataset", "digits", "--num-codebooks", "0"], r"^error: --num-codebooks: expected an"),
    (["continual", "--dataset", "digits", "--methods", "dkvb,ewc"], r"^error: --methods: unknown method"),
    (["codebook", "tokfsm", "--num-states", "200"], r"^error: --num-states: expected an integer in \[1, 100\]"),
    (["info", "plane", "--activation", "gelu"], r"^error: --activation: expected one of"),
    (["concepts", "demo", "--n-train", "3"], r"^error: --n-train: expected an integer >= 50"),
    (["kmeans", "--dataset", "/no/such.npz"], r"^error: --dataset /no/such.npz: no such file"),
])
def test_config_errors_are_one_line_before_any_work(argv, match, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert re.match(match, err.strip()) and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing written: no work started


def test_flags_use_the_library_names_and_keep_the_old_spellings(tmp_path):
    from bottlenecks.cli import build_parser, config_from
    from bottlenecks.studies.continual import ContinualConfig

    parse = build_parser().parse_args
    new = config_from(parse(["continual", "--num-codebooks", "8", "--keys-per-codebook", "32", "--n-tasks", "2",
                             "--n-seeds", "2", "--buffer-size", "9", "--no-joint"]), ContinualConfig)
    old = config_from(parse(["continual", "--codebooks", "8", "--keys", "32", "--tasks", "2", "--seeds", "2",
                             "--buffer", "9", "--no-joint"]), ContinualConfig)
    assert new == old and (new.num_codebooks, new.keys_per_codebook, new.n_tasks, new.n_seeds) == (8, 32, 2, 2)
    assert not new.joint and new.epochs is None  # flags not given keep the config's defaults
    with pytest.raises(SystemExit) as exit_:  # a typo is not silently taken as the flag it prefixes
        parse(["continual", "--num-codebook", "8"])
    assert exit_.value.code == 2
