"""Value training with the paper's defaults: SGD lr 0.3 without momentum, batch 256,
gradient-norm clip 1.0, cross-entropy with label smoothing 0.1."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..validation import check_positive_int


def train_values(model, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 1, lr: float = 0.3,
                 batch_size: int = 256, clip: float | None = 1.0, label_smoothing: float = 0.1,
                 shuffle: bool = True, seed: int = 0, progress: bool = False) -> list[float]:
    """Train ``model`` (a :class:`KeyValueClassifier`) on inputs ``x`` and integer labels ``y``
    in the order given (``shuffle`` only permutes within the call: a class-incremental stream
    calls this once per task). Only parameters with ``requires_grad`` are optimised — for the
    bottleneck, its values. Returns the mean loss per epoch."""
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}; expected the same number")
    y = torch.as_tensor(y, dtype=torch.long)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= model.num_classes):
        raise ValueError(f"labels must lie in [0, {model.num_classes}), got [{int(y.min())}, {int(y.max())}]")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    epochs_iter = range(epochs)
    if progress:
        from tqdm.auto import tqdm

        epochs_iter = tqdm(epochs_iter, desc="values", leave=False, disable=None)
    for _ in epochs_iter:
        order = torch.randperm(len(x), generator=g) if shuffle else torch.arange(len(x))
        total, count = 0.0, 0
        for s in range(0, len(x), batch_size):
            idx = order[s:s + batch_size]
            xb, yb = x[idx], y[idx].to(x.device)
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        losses.append(total / max(1, count))
    return losses
