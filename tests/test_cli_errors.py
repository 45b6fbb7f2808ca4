"""Every subcommand on bad files and flags: exit code 2 and one line ``error: ...`` naming the
flag or file, before any work starts (the runs below would take minutes if they started; a
run still going after a minute fails the test). Progress phase lines may come first: they
go to stderr too when it is not a terminal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from bottlenecks.cli import main


@pytest.fixture
def files(tmp_path):
    return make_files(tmp_path)


def make_files(tmp_path):
    """Bad and good input files of every kind the commands read."""
    rng = np.random.default_rng(0)
    f = {}
    f["no_y"] = tmp_path / "no_y.npz"
    np.savez(f["no_y"], x=rng.normal(size=(40, 3)))
    f["no_x"] = tmp_path / "no_x.npz"
    np.savez(f["no_x"], y=np.arange(40) % 2)
    f["corrupt"] = tmp_path / "corrupt.npz"
    f["corrupt"].write_bytes(b"PK\x03\x04 this is not a zip archive at all")
    f["truncated"] = tmp_path / "truncated.npz"
    np.savez(f["truncated"], x=rng.normal(size=(200, 3)), y=np.arange(200) % 2)
    f["truncated"].write_bytes(f["truncated"].read_bytes()[:300])
    f["npy"] = tmp_path / "x.npy"
    np.save(f["npy"], rng.normal(size=(40, 2)))
    f["json"] = tmp_path / "x.json"
    f["json"].write_text(json.dumps({"x": [1, 2, 3]}))
    f["str_labels"] = tmp_path / "str_labels.npz"
    np.savez(f["str_labels"], x=rng.normal(size=(40, 3)), y=np.array(["a", "b"] * 20))
    f["neg_labels"] = tmp_path / "neg_labels.npz"
    np.savez(f["neg_labels"], x=rng.normal(size=(40, 3)), y=np.arange(40) % 3 - 1)
    f["good"] = tmp_path / "good.npz"
    np.savez(f["good"], x=rng.normal(size=(60, 3)), y=np.arange(60) % 3)
    f["emb"] = tmp_path / "emb.npz"
    np.savez(f["emb"], x_train=rng.normal(size=(60, 4)), y_train=np.arange(60) % 3,
             x_test=rng.normal(size=(30, 4)), y_test=np.arange(30) % 3)
    f["emb_missing"] = tmp_path / "emb_missing.npz"
    np.savez(f["emb_missing"], x_train=rng.normal(size=(60, 4)), y_train=np.arange(60) % 3)
    f["a_file"] = tmp_path / "a_file"
    f["a_file"].write_text("not a folder")
    f["wrong_dir"] = tmp_path / "no-such-folder"
    f["empty_dir"] = tmp_path / "empty"
    f["empty_dir"].mkdir()
    f["out"] = tmp_path / "out"
    return f


# (argv with {name} for the files above, what the message must contain)
CASES = [
    # data sets and files
    ("kmeans --dataset fashion-mnist --data-dir {wrong_dir}", "no-such-folder"),
    ("kmeans --dataset fashion-mnist --data-dir {empty_dir}", "empty"),
    ("continual --dataset fashion-mnist --data-dir {wrong_dir}", "no-such-folder"),
    ("continual --dataset fashion-mnist --data-dir {empty_dir}", "empty"),
    ("kmeans --dataset {no_x}", "no_x.npz"),
    ("kmeans --dataset {corrupt}", "corrupt.npz"),
    ("kmeans --dataset {truncated}", "truncated.npz"),
    ("kmeans --dataset {json}", "x.json"),
    ("continual --dataset {emb_missing}", "emb_missing.npz"),
    ("continual --dataset {corrupt}", "corrupt.npz"),
    ("continual --dataset {emb} --encoder scattering", "--encoder"),
    ("continual toy2d --encoder scattering", "--encoder"),
    ("continual toy2d --dataset digits", "--dataset"),
    ("continual --dataset {str_labels}", "str_labels.npz"),
    ("info mi {no_y}", "no_y.npz"),
    ("info mi {corrupt}", "corrupt.npz"),
    ("info mi {npy}", "x.npy"),
    ("info mi {json}", "x.json"),
    ("info mi {wrong_dir}", "no-such-folder"),
    ("codebook tokfsm --reuse --out {out}", "--reuse"),
    ("concepts select {json}", "x.json"),
    ("concepts select {wrong_dir}", "no-such-folder"),
    ("concepts cub {wrong_dir}", "no-such-folder"),
    # devices
    ("kmeans --dataset digits --device cuda", "--device"),
    ("kmeans --dataset digits --device gpu", "--device"),
    ("codebook tokfsm --device cuda --out {out}", "--device"),
    ("codebook tokfsm --device gpu --out {out}", "--device"),
    # output folders
    ("kmeans --dataset digits --out {a_file}", "a_file"),
    ("continual --dataset {emb} --tasks 3 --out {a_file}", "a_file"),
    ("continual --dataset {emb} --tasks 3 --out {a_file}/sub", "a_file"),
    ("codebook tokfsm --out {a_file}", "a_file"),
    ("info plane --out {a_file}", "a_file"),
    ("concepts demo --out {a_file}", "a_file"),
    # numbers
    ("continual --dataset {emb} --eval-every 0", "--eval-every"),
    ("continual --dataset {emb} --buffer -5", "--buffer"),
    ("continual --dataset {emb} --tasks 0", "--n-tasks"),
    ("continual --dataset {emb} --tasks 5", "--n-tasks"),
    ("codebook tokfsm --num-codes 0 --out {out}", "--num-codes"),
    ("codebook tokfsm --steps -1 --out {out}", "--steps"),
    ("kmeans --dataset digits -k 0", "--n-clusters"),
    ("kmeans --dataset {good} -k 61", "--n-clusters"),
    ("kmeans --dataset digits --tol nan", "--tol"),
    ("info mi {good} -k 0", "-k"),
    ("info mi {good} --method bogus", "--method"),
    ("info plane --epochs 0", "--epochs"),
    ("concepts demo --n-train 0", "--n-train"),
]


class WorkStarted(Exception):
    pass


def run_briefly(args: list[str], seconds: int = 60) -> int:
    """``main(args)``, stopped when it runs long: a check that comes after the work started."""
    def stop(signum, frame):
        raise WorkStarted(f"bottlenecks {' '.join(args)} was still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        return main(args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("argv, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_code_2(argv, needle, files, capsys):
    args = [part.format(**files) for part in argv.split()]
    code = run_briefly(args)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, f"exit code {code}; stderr: {captured.err[-2000:]}; stdout: {captured.out[-500:]}"
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], captured.err
    assert needle in errors[0], errors[0]
    assert "Traceback" not in captured.err
    assert not files["out"].exists() or not any(files["out"].iterdir()), "work started before the check"


@pytest.mark.parametrize("name", ["str_labels", "neg_labels"])
def test_kmeans_purity_takes_any_labels(files, name, capsys):
    """String or negative labels are fine for purity (it only compares them): the right number."""
    assert run_briefly(["kmeans", "--dataset", str(files[name]), "-k", "2", "--out", str(files["out"]),
                        "--quiet"]) == 0
    metrics = json.loads((files["out"] / "metrics.json").read_text())
    with np.load(files[name]) as f:
        x, y = f["x"], f["y"]
    import torch

    from bottlenecks.cluster import kmeans

    labels = kmeans(torch.from_numpy(x.astype(np.float32)), 2, seed=0, max_iter=100).labels.numpy()
    want = sum(np.unique(y[labels == j], return_counts=True)[1].max() for j in np.unique(labels)) / len(y)
    assert metrics["purity"] == pytest.approx(want)


def test_the_installed_command_prints_no_traceback(files):
    """Through a real process (the entry point, argparse and the exit code together)."""
    out = subprocess.run([sys.executable, "-m", "bottlenecks.cli", "info", "mi", str(files["corrupt"])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_corrupt_zip_is_not_a_zipfile_traceback(files):
    assert not zipfile.is_zipfile(files["corrupt"])  # the fixture is what it claims
