"""Training loops for the graph models: Adam and early stopping on the validation split (the weights
of the best validation epoch are kept). ``select='acc'`` keeps the epoch of the highest validation
accuracy, the latest one on ties (as the GLNN / VQGraph code, ``>=``); ``select='loss'`` the epoch of
the lowest validation cross-entropy. A teacher whose targets are distilled is better selected on the
loss: its accuracy on a few hundred validation nodes often peaks within the first ten epochs, while
its logits are still small, so its soft labels are near-uniform (and its codebook barely trained).
Full-batch for the GNNs; the MLP student goes through its distillation nodes in full batch or
shuffled mini-batches.

Parameter initialisation and dropout draw from torch's global generator (seed it before building
a model); the mini-batch order comes from ``generator``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..validation import check_choice
from .distill import distillation_loss
from .models import GNN, GraphTokenizer, MLPStudent

__all__ = ["accuracy", "fit_gnn", "fit_mlp", "fit_tokenizer"]


def accuracy(logits: torch.Tensor, labels: torch.Tensor, idx=None) -> float:
    """Share of rows whose argmax is the label (on rows ``idx`` if given)."""
    if idx is not None:
        logits, labels = logits[idx], labels[idx]
    return float((logits.argmax(-1) == labels).float().mean())


SELECT = ("acc", "loss")
PASSES = ("joint", "alternating")


def _evaluate(logits: torch.Tensor, labels: torch.Tensor, idx) -> tuple[float, float]:
    """(accuracy, cross-entropy) on rows ``idx``."""
    return accuracy(logits, labels, idx), float(F.cross_entropy(logits[idx], labels[idx]))


def _early_stopping(step, evaluate, model, epochs: int, patience: int, select: str = "acc") -> dict:
    """Run ``step()`` per epoch; keep the weights of the best epoch by ``evaluate() -> (val accuracy,
    val loss)``: the highest accuracy (latest on ties) or the lowest loss. Stop after ``patience``
    epochs without a better one."""
    check_choice(select, "select", SELECT)
    best_acc, best_loss, best_state, best_epoch, history = -1.0, float("inf"), None, 0, []
    for epoch in range(1, epochs + 1):
        loss = step()
        acc, vloss = evaluate()
        history.append((float(loss), acc, vloss))
        better = acc >= best_acc if select == "acc" else vloss < best_loss
        if better:
            best_acc, best_loss, best_epoch, best_state = acc, vloss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    return {"best_val": best_acc, "best_val_loss": best_loss, "best_epoch": best_epoch, "epochs": len(history),
            "select": select, "history": history}


def fit_gnn(model: GNN, x, edge_index, labels, train_idx, val_idx, *, epochs: int = 500, lr: float = 0.01,
            weight_decay: float = 5e-4, patience: int = 50, select: str = "acc") -> dict:
    """Train a :class:`GNN` classifier with cross-entropy on ``train_idx``, the epoch kept by ``select``
    (``'acc'`` or ``'loss'`` on ``val_idx``); -> training record."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)

    def step():
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(x, edge_index)[0][train_idx], labels[train_idx])
        loss.backward()
        opt.step()
        return loss.item()

    def evaluate():
        model.eval()
        with torch.no_grad():
            return _evaluate(model(x, edge_index)[0], labels, val_idx)

    return _early_stopping(step, evaluate, model, epochs, patience, select)


def fit_tokenizer(model: GraphTokenizer, x, edge_index, labels, train_idx, val_idx, *, adj=None, epochs: int = 500,
                  lr: float = 0.01, weight_decay: float = 5e-4, patience: int = 50, select: str = "acc") -> dict:
    """Train a :class:`GraphTokenizer`: cross-entropy on ``train_idx`` + its own terms, the epoch kept by
    ``select`` (``'acc'`` or ``'loss'``: validation cross-entropy); -> training record.
    ``adj``: the sparse adjacency for the convolutions' fast path (optional)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    terms = {}

    def step():
        model.train()
        opt.zero_grad()
        out = model(x, edge_index, adj)
        ce = F.cross_entropy(out.logits[train_idx], labels[train_idx])
        loss = ce + model.loss(out)
        loss.backward()
        opt.step()
        terms.update({"ce": ce.item(), **{k: v.item() for k, v in out.losses.items()}})
        return loss.item()

    def evaluate():
        model.eval()
        with torch.no_grad():
            return _evaluate(model(x, edge_index, adj).logits, labels, val_idx)

    record = _early_stopping(step, evaluate, model, epochs, patience, select)
    record["last_terms"] = dict(terms)
    return record


def fit_mlp(model: MLPStudent, x, labels, train_idx, val_idx, *, nodes=None, teacher_probs=None,
            teacher_assignments=None, codes=None, w_label: float = 1.0, w_soft_label: float = 0.0,
            w_code: float = 0.0, tau: float = 1.0, epochs: int = 500, lr: float = 0.01, weight_decay: float = 5e-4,
            patience: int = 50, batch_size: int | None = None, code_batch: int | None = 512,
            passes: str = "joint", generator: torch.Generator | None = None) -> dict:
    """Train an :class:`MLPStudent` on node features: cross-entropy on ``train_idx`` (weight
    ``w_label``), soft-label KL and soft-code KL on ``nodes`` (the distillation nodes; rows of
    ``teacher_probs`` / ``teacher_assignments`` are indexed like ``x``). Without teacher targets
    this is the plain MLP baseline. ``batch_size=None``: full batch (one step per epoch; ``x`` may be
    sparse); otherwise shuffled mini-batches of distillation nodes, each with all labelled nodes.
    In full batch, the soft-code term reads ``code_batch`` random distillation nodes per step (its
    ``(n, K)`` distances dominate the cost; ``None``: all).

    ``passes='alternating'`` trains as the VQGraph reference code does: per epoch three passes over
    shuffled mini-batches of ``batch_size`` (default 512; the last partial batch is dropped), each
    batch its own Adam step on one term: the soft-code KL on the distillation nodes, the label CE on
    ``train_idx``, the soft-label KL on the distillation nodes. A pass runs whenever its target is
    given, even at weight 0 (the step then applies only momentum and weight decay, as there). Needs
    dense ``x``. -> training record."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    # targets are constants (a teacher's output may still carry its graph)
    teacher_probs = teacher_probs.detach() if teacher_probs is not None else None
    teacher_assignments = teacher_assignments.detach() if teacher_assignments is not None else None
    codes = codes.detach() if codes is not None else None
    distilling = (w_soft_label > 0 and teacher_probs is not None) or (w_code > 0 and teacher_assignments is not None)
    train_idx = torch.as_tensor(train_idx)
    pool = torch.as_tensor(nodes) if nodes is not None and distilling else train_idx
    check_choice(passes, "passes", PASSES)
    if (batch_size is not None or passes == "alternating") and x.layout != torch.strided:
        raise ValueError("fit_mlp: mini-batches need dense x; pass batch_size=None for sparse features")

    def loss_on(rows, labelled, dist_nodes, code_nodes=None):
        logits, z = model(x if rows is None else x[rows])
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        return distillation_loss(
            logits, z, labels=pick(labels), labelled=labelled,
            teacher_probs=pick(teacher_probs) if teacher_probs is not None else None,
            teacher_assignments=pick(teacher_assignments) if teacher_assignments is not None else None,
            codes=codes, nodes=dist_nodes, code_nodes=code_nodes, w_label=w_label, w_soft_label=w_soft_label,
            w_code=w_code, tau=tau)

    def batches(idx):
        # the reference's train_mini_batch: a random permutation cut into full batches
        bs = batch_size or 512
        nb = max(1, len(idx) // bs)
        perm = idx[torch.randperm(len(idx), generator=generator)]
        return [perm] if nb == 1 else list(perm[:nb * bs].view(nb, bs))

    def alternating():
        total = 0.0
        passes_ = [(pool, "w_code", w_code, teacher_assignments is not None and codes is not None),
                   (train_idx, "w_label", w_label, True),
                   (pool, "w_soft_label", w_soft_label, teacher_probs is not None)]
        for idx, term, weight, run in passes_:
            if not run:
                continue
            for rows in batches(idx):
                logits, z = model(x[rows])
                kw = {"w_label": 0.0, "w_soft_label": 0.0, "w_code": 0.0, term: 1.0}
                t = distillation_loss(logits, z, labels=labels[rows], teacher_probs=teacher_probs[rows]
                                      if teacher_probs is not None else None,
                                      teacher_assignments=teacher_assignments[rows]
                                      if teacher_assignments is not None else None,
                                      codes=codes, tau=tau, **kw)
                loss = weight * t["total"]  # the reference's `loss *= lamb`: at weight 0 the step still
                opt.zero_grad()             # applies momentum and weight decay
                loss.backward()
                opt.step()
                total += loss.item()
        return total

    def step():
        model.train()
        if passes == "alternating":
            return alternating()
        if batch_size is None:  # full batch: every node through the network once
            opt.zero_grad()
            sub = None
            if code_batch is not None and code_batch < len(pool):
                sub = pool[torch.randperm(len(pool), generator=generator)[:code_batch]]
            t = loss_on(None, train_idx, pool, sub)
            t["total"].backward()
            opt.step()
            return t["total"].item()
        perm = pool[torch.randperm(len(pool), generator=generator)]
        total, bs = 0.0, min(batch_size, len(pool))
        for start in range(0, len(perm), bs):
            batch = perm[start:start + bs]
            rows = torch.cat([batch, train_idx]) if distilling and w_label > 0 else batch
            nb = len(batch)
            labelled = torch.arange(nb, len(rows)) if distilling and w_label > 0 else torch.arange(nb)
            t = loss_on(rows, labelled, torch.arange(nb))
            opt.zero_grad()
            t["total"].backward()
            opt.step()
            total += t["total"].item()
        return total

    def evaluate():
        model.eval()
        with torch.no_grad():
            return _evaluate(model(x)[0], labels, val_idx)

    return _early_stopping(step, evaluate, model, epochs, patience)
