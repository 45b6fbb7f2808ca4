"""The shared input checks: each accepts what it should and names the argument, the value and what
is expected when it refuses."""

import math

import numpy as np
import pytest
import torch

from bottlenecks.validation import (
    InstanceOf,
    Interval,
    Options,
    ParameterError,
    as_tensor,
    check_choice,
    check_finite,
    check_float,
    check_ndim,
    check_nonempty,
    check_param,
    check_params,
    check_positive_int,
    check_same_device,
)


@pytest.mark.parametrize("constraint, good, bad, expected", [
    (Interval(int, 1, None), [1, 7, np.int64(3)], [0, -1, 1.5, True, "2", None], "an integer >= 1"),
    (Interval(float, 0, 1, closed="right"), [1, 0.5, 1e-9], [0, 1.0001, math.nan, math.inf, False],
     "a finite number in (0, 1]"),
    (Interval(float, 0, 1, closed="left"), [0, 0.999], [1, -0.1], "a finite number in [0, 1)"),
    (Interval(float, 0, None, closed="neither"), [1e-12, 3], [0, -1, math.inf], "a finite number > 0"),
    (Interval(float, None, 5), [-math.pi, 5], [5.1, -math.inf], "a finite number <= 5"),
    (Options(("kmeans", "ema")), ["kmeans", "ema"], ["random", None, ["kmeans"]], "one of 'kmeans', 'ema'"),
    (InstanceOf(bool), [True, False], [1, "yes", None], "a bool"),
    (InstanceOf((int, float)), [1, 2.5], [True, "1"], "a int or a float"),
])
def test_constraints_accept_and_describe(constraint, good, bad, expected):
    assert str(constraint) == expected
    for value in good:
        assert check_param(value, "p", constraint) is value
    for value in bad:
        with pytest.raises(ParameterError, match=r"^p: expected " + expected.replace("(", r"\(").replace(
                ")", r"\)").replace("[", r"\[") + ", got "):
            check_param(value, "p", constraint)


def test_a_list_of_constraints_passes_if_any_does_and_none_accepts_none():
    cons = [Interval(int, 1, None), None]
    assert check_param(None, "n", cons) is None and check_param(3, "n", cons) == 3
    with pytest.raises(ParameterError, match=r"n: expected an integer >= 1 or None, got 0$"):
        check_param(0, "n", cons)
    with pytest.raises(ParameterError, match=r"got \[1\] \(list\)"):  # the type is named for non-numbers
        check_param([1], "n", cons)


def test_parameter_errors_are_value_and_type_errors():
    with pytest.raises(ValueError):
        check_param(-1, "k", Interval(int, 1, None))
    with pytest.raises(TypeError):
        check_param("a", "k", Interval(int, 1, None))


def test_check_params_checks_every_named_value_present():
    constraints = {"k": Interval(int, 1, None), "tol": Interval(float, 0, None)}
    check_params({"k": 2, "tol": 0.0, "other": object()}, constraints)
    check_params({"k": 2}, constraints)  # absent names are not checked
    with pytest.raises(ParameterError, match="tol: expected a finite number >= 0, got -1"):
        check_params({"k": 2, "tol": -1}, constraints)


def test_bad_constraints_are_refused():
    with pytest.raises(TypeError, match="kind"):
        Interval(str, 0, 1)
    with pytest.raises(ValueError, match="closed"):
        Interval(int, 0, 1, closed="open")


def test_the_helpers_others_call_keep_working():
    assert check_positive_int(3, "n") == 3 and check_positive_int(0, "seed", minimum=0) == 0
    with pytest.raises(TypeError, match="n: expected an integer >= 1, got 2.0"):
        check_positive_int(2.0, "n")
    with pytest.raises(ValueError, match="n: expected an integer >= 2, got 1"):
        check_positive_int(1, "n", 2)
    assert check_choice("a", "mode", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"mode: expected one of \['a', 'b'\], got 'c'"):
        check_choice("c", "mode", ("a", "b"))


def test_tensor_checks():
    t = as_tensor(np.arange(6, dtype=np.float32).reshape(2, 3), "x")
    assert isinstance(t, torch.Tensor) and t.shape == (2, 3)
    assert as_tensor([1, 2], "x", dtype=torch.float64).dtype == torch.float64
    with pytest.raises(TypeError, match="x: expected numeric data"):
        as_tensor(np.array(["a", "b"]), "x")
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        check_float(torch.arange(3), "x")
    with pytest.raises(ValueError, match=r"x: expected a 2-D tensor, got shape \(3,\); reshape"):
        check_ndim(torch.zeros(3), 2, "x")
    with pytest.raises(ValueError, match="expected at least 2 sample"):
        check_nonempty(torch.zeros(1, 3), "x", min_samples=2)
    with pytest.raises(ValueError, match="at least 1 feature"):
        check_nonempty(torch.zeros(4, 0), "x")
    bad = torch.tensor([1.0, math.nan, math.inf])
    with pytest.raises(ValueError, match=r"x contains NaN or infinity \(1 NaN, 1 inf values\)"):
        check_finite(bad, "x")
    assert check_finite(torch.arange(3), "x") is not None  # integers are finite
    check_same_device(torch.zeros(1), torch.zeros(1))


def test_check_squarable_bounds_follow_the_dtype():
    from bottlenecks.validation import check_squarable

    for dtype, ok, bad in ((torch.float32, 1e15, 1e17), (torch.float64, 1e150, 1e152)):
        check_squarable(torch.tensor([ok, -1.0], dtype=dtype), "z")
        check_squarable(torch.tensor([1 / ok], dtype=dtype), "z")
        check_squarable(torch.zeros(3, dtype=dtype), "z")  # all-zero data has nothing to square wrongly
        with pytest.raises(ValueError, match="^z: "):
            check_squarable(torch.tensor([bad], dtype=dtype), "z")
        with pytest.raises(ValueError, match="^z: "):
            check_squarable(torch.tensor([1 / bad], dtype=dtype), "z")
