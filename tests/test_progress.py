"""The progress helper: bars on a terminal, plain flushed lines in a log, nothing when asked; and
the thread-pinning helper."""

import re

import pytest
import torch

from bottlenecks import progress as progress_mod
from bottlenecks.progress import phase, track, wants_progress
from bottlenecks.threads import fixed_threads


@pytest.fixture
def log(capsys):
    """stderr as a log file (captured: not a terminal)."""
    return capsys


def test_plain_lines_in_a_log_say_what_how_far_and_how_long(log, monkeypatch):
    clock = iter(range(0, 1000, 4))  # each step takes 4 "seconds"
    monkeypatch.setattr(progress_mod.time, "perf_counter", lambda: next(clock))
    bar = track(range(10), "fit keys", progress=True, interval=10.0)
    bar.set_postfix_str("dkvb seed 0")
    assert list(bar) == list(range(10))
    lines = log.readouterr().err.splitlines()
    assert 2 <= len(lines) <= 5  # rate-limited, not one line per step
    assert re.fullmatch(r"fit keys: \d/10 \(\d+%\), \d+ s \[dkvb seed 0\]", lines[0]), lines
    assert lines[-1].startswith("fit keys: 10/10 (100%), ")  # the last line always comes


def test_none_is_silent_off_a_terminal_and_false_always(log):
    assert list(track(range(3), "x", progress=None)) == [0, 1, 2]
    assert list(track(range(3), "x", progress=False)) == [0, 1, 2]
    phase("loading", None)
    assert log.readouterr().err == ""
    assert not wants_progress(None) and not wants_progress(False) and wants_progress(True)
    phase("loading", True, start=None)
    assert log.readouterr().err == "loading\n"
    with pytest.raises(TypeError, match="progress: expected True, False or None, got 'yes'"):
        wants_progress("yes")


def test_a_terminal_gets_a_tqdm_bar(monkeypatch):
    monkeypatch.setattr(progress_mod, "_terminal", lambda stream: True)
    bar = track(range(4), "train", progress=None)
    assert type(bar).__module__.startswith("tqdm") and list(bar) == [0, 1, 2, 3]


def test_fixed_threads_pins_and_restores():
    before = torch.get_num_threads()
    with fixed_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), fixed_threads(1):
        raise RuntimeError  # restored on an exception too
    assert torch.get_num_threads() == before
    with fixed_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads: expected an integer >= 1 or None, got 0"):
        with fixed_threads(0):
            pass


def test_concept_model_and_neural_mi_take_progress_like_every_family():
    import numpy as np

    from bottlenecks.concepts import ConceptBottleneckModel
    from bottlenecks.info.neural import neural_mutual_information

    assert ConceptBottleneckModel(["a", "b"]).progress is None  # the library's default
    assert ConceptBottleneckModel(["a", "b"], progress=True).progress is True
    assert ConceptBottleneckModel(["a", "b"], quiet=True).progress is False  # the earlier spelling
    with pytest.raises(TypeError, match="progress"):
        neural_mutual_information(np.zeros((40, 1)), np.zeros((40, 1)), epochs=1, progress="yes")
