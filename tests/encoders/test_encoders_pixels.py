"""The pixels encoder and the batching / validation / progress bar shared by every encoder."""

import numpy as np
import pytest
import torch

from bottlenecks.encoders import get_encoder


def test_pixels_flattens_images():
    x = torch.rand(5, 4, 3)
    out = get_encoder("pixels").encode(x, progress=False)
    assert out.shape == (5, 12) and out.dtype == torch.float32
    torch.testing.assert_close(out, x.reshape(5, 12))


def test_batch_size_does_not_change_the_result_and_numpy_is_accepted():
    x = np.random.default_rng(0).random((7, 2, 2)).astype(np.float64)
    enc = get_encoder("pixels")
    a = enc.encode(x, batch_size=1, progress=False)
    b = enc.encode(x, batch_size=3, progress=False)
    c = enc.encode(x, batch_size=100, progress=False)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(a, torch.from_numpy(x.reshape(7, 4)).float())


def test_progress_false_prints_nothing(capsys):
    get_encoder("pixels").encode(torch.rand(4, 2, 2), batch_size=1, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_is_a_bar_on_a_terminal_and_lines_in_a_log(monkeypatch, capsys):
    from bottlenecks import progress

    enc = get_encoder("pixels")
    enc.encode(torch.rand(4, 2, 2), batch_size=2)  # progress=None off a terminal: nothing
    assert capsys.readouterr().err == ""
    enc.encode(torch.rand(4, 2, 2), batch_size=2, progress=True)  # a log: a plain line
    assert capsys.readouterr().err.startswith("encode pixels (batches of 2): 2/2 (100%), ")
    monkeypatch.setattr(progress, "_terminal", lambda stream: True)
    seen = {}
    real = progress.track

    def spy(iterable, desc, **kwargs):
        bar = real(iterable, desc, **kwargs)
        seen[desc] = type(bar).__module__
        return bar

    monkeypatch.setattr("bottlenecks.encoders.registry.track", spy)
    enc.encode(torch.rand(4, 2, 2), batch_size=2)
    assert seen["encode pixels (batches of 2)"].startswith("tqdm")
    capsys.readouterr()
    enc.encode(torch.rand(4, 2, 2), batch_size=2, progress=False)
    assert capsys.readouterr().err == ""


def test_input_errors_say_what_is_expected():
    enc = get_encoder("pixels")
    with pytest.raises(TypeError, match="floating-point"):
        enc.encode(torch.zeros(2, 3, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(n, H, W\)"):
        enc.encode(torch.rand(5))
    with pytest.raises(ValueError, match="NaN"):
        enc.encode(torch.full((2, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="at least 1 sample"):
        enc.encode(torch.rand(0, 2, 2))
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode(torch.rand(2, 2, 2), batch_size=0)
