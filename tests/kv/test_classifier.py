"""KeyValueClassifier / train_values: bad arguments and labels are refused up front instead of
training into a silently wrong model."""

import numpy as np
import pytest
import torch

from bottlenecks.kv import DiscreteKeyValueBottleneck, KeyValueClassifier, train_values


def blobs(n=300, dim=16, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    return centers[y] + torch.randn(n, dim, generator=g), y


def model(decoder="mean", x=None):
    b = DiscreteKeyValueBottleneck(16, num_codebooks=8, keys_per_codebook=16, dim_key=4, dim_value=4)
    b.fit_keys(blobs()[0] if x is None else x).freeze_keys()
    return KeyValueClassifier(None, b, decoder=decoder)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -0.1, 0.0])
def test_a_non_finite_or_non_positive_lr_is_refused(lr):
    x, y = blobs()
    m = model()
    with pytest.raises(ValueError, match="lr"):
        m.fit(x, y, lr=lr)
    assert m.bottleneck.values.abs().sum() == 0  # nothing was trained


@pytest.mark.parametrize("kw, match", [({"lr": "0.1"}, "lr"), ({"label_smoothing": 1.5}, "label_smoothing"),
                                        ({"clip": float("nan")}, "clip"), ({"clip": 0}, "clip")])
def test_other_training_numbers_are_checked(kw, match):
    x, y = blobs()
    with pytest.raises((ValueError, TypeError), match=match):
        model().fit(x, y, **kw)


def test_fractional_float_labels_are_refused_not_truncated():
    x, y = blobs()
    with pytest.raises(ValueError, match=r"y: expected integer class labels.*non-integer value \d\.5"):
        model().fit(x, y.float() + 0.5)


def test_whole_number_float_labels_train_like_integer_labels():
    x, y = blobs()
    a = model().fit(x, y, epochs=2)
    b = model().fit(x, y.double(), epochs=2)
    assert torch.equal(a.bottleneck.values, b.bottleneck.values)
    c = model().fit(x.numpy(), y.numpy().astype(np.float32), epochs=2)  # NumPy at the edge
    assert torch.equal(a.bottleneck.values, c.bottleneck.values)


def test_nan_labels_are_named_not_an_int_min_message():
    x, y = blobs()
    yf = y.float()
    yf[3] = float("nan")
    with pytest.raises(ValueError, match=r"y contains NaN") as err:
        model().fit(x, yf)
    assert "-922" not in str(err.value)


def test_one_hot_labels_get_a_clear_error():
    x, y = blobs()
    with pytest.raises(ValueError, match=r"y: expected a 1-D .*one-hot.*argmax"):
        model().fit(x, torch.nn.functional.one_hot(y, 4))


def test_string_labels_get_a_clear_error():
    x, y = blobs()
    with pytest.raises(TypeError, match=r"y: expected integer class labels.*str"):
        model().fit(x, np.array(["abcd"[i] for i in y]))


def test_labels_out_of_range_and_length_mismatch():
    x, y = blobs()
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        model().fit(x, y + 1)
    with pytest.raises(ValueError, match="same number"):
        model().fit(x, y[:-1])


def test_predict_before_any_training_warns():
    x, y = blobs()
    for decoder in ("mean", "linear", "mlp"):
        m = model(decoder)
        with pytest.warns(RuntimeWarning, match="no values have been trained"):
            m.predict(x)
    m = model().fit(x, y)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (m.predict(x) == y).float().mean() > 0.8


def test_train_values_directly_checks_the_same_things():
    x, y = blobs()
    with pytest.raises(ValueError, match="lr"):
        train_values(model(), x, y, lr=float("nan"))
    with pytest.raises(ValueError, match="y contains NaN"):
        train_values(model(), x, torch.full((len(x),), float("nan")))


def test_training_writes_progress_lines_when_asked_and_nothing_by_default(capsys):
    x, y = blobs()
    model().fit(x, y, epochs=3, progress=True)  # stderr is not a terminal here: plain lines
    assert "values: 3/3 (100%)" in capsys.readouterr().err
    model().fit(x, y, epochs=3)
    assert capsys.readouterr().err == ""
