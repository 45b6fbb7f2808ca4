"""Binning estimates of information for deterministic layers (Shwartz-Ziv & Tishby): equal-width
bins over a layer's range and plug-in entropies of the binned codes. Used by the information
plane and the IB metrics (its own module, so that neither imports the other)."""

from __future__ import annotations

import numpy as np
import torch

from ..validation import as_tensor, check_finite, check_nonempty, check_positive_int

__all__ = ["binned_information"]


def _entropy_bits(codes: np.ndarray) -> float:
    """Plug-in entropy in bits of the rows of an integer array ``(n, d)`` (distinct rows = symbols)."""
    if codes.shape[0] == 0:
        return 0.0
    _, counts = np.unique(codes, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _bin_codes(t: np.ndarray, bins: int) -> np.ndarray:
    """Equal-width bins over the global range of ``t``: ``(n, d)`` float -> ``(n, d)`` int."""
    lo, hi = float(t.min()), float(t.max())
    if not hi > lo:
        return np.zeros(t.shape, dtype=np.int64)
    idx = np.floor((t.astype(np.float64) - lo) / (hi - lo) * bins).astype(np.int64)
    return np.clip(idx, 0, bins - 1)


def binned_information(t, y, bins: int = 30) -> tuple[float, float]:
    """Binning estimate ``(I(X;T), I(T;Y))`` in bits for a deterministic layer ``T = f(X)``.

    t: (n, ...) activations on the ``n`` inputs, y: (n,) discrete labels. Each activation is put in
    one of ``bins`` equal bins spanning the layer's range ``[min t, max t]``; with ``T`` a function
    of the (discrete) input, ``I(X;T) = H(T_binned)`` and ``I(T;Y) = H(T_binned) - H(T_binned|Y)``
    (plug-in entropies of the empirical distribution over the ``n`` samples).
    """
    bins = check_positive_int(bins, "bins")
    tt = as_tensor(t.detach().cpu() if isinstance(t, torch.Tensor) else t, "t")
    check_nonempty(tt, "t")
    tt = tt.reshape(tt.shape[0], -1)
    if tt.is_floating_point():
        check_finite(tt, "t")
    yy = as_tensor(y.detach().cpu() if isinstance(y, torch.Tensor) else y, "y").reshape(-1)
    if yy.shape[0] != tt.shape[0]:
        raise ValueError(f"t and y: expected the same number of samples, got {tt.shape[0]} and {yy.shape[0]}")
    codes = _bin_codes(tt.double().numpy(), bins)
    labels = yy.numpy()
    h_t = _entropy_bits(codes)
    h_t_given_y = 0.0
    n = len(labels)
    for value in np.unique(labels):
        mask = labels == value
        h_t_given_y += mask.sum() / n * _entropy_bits(codes[mask])
    return h_t, max(h_t - h_t_given_y, 0.0)
