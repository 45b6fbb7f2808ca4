"""Distillation targets and losses of GLNN and VQGraph.

Soft labels (GLNN): the teacher's class probabilities. Soft code assignments (VQGraph): a
softmax over minus the distance from a node's embedding to every code of the tokenizer's
codebook, ``r_i = softmax(-dist(z_i, codes) / tau)``, with the cosine distance ``1 - cos`` of the
cosine codebook (``cluster.nearest``'s ``'cosine'``) or the squared Euclidean one. They need all
``K`` distances with a gradient, so they are one GEMM here, not a nearest-code search.

    loss = w_label * CE(y, student)           on labelled nodes
         + w_soft_label * KL(p_t || p_s)      on the distillation nodes
         + w_code * KL(r_t || r_s)            on the distillation nodes
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..validation import check_choice

__all__ = ["code_distances", "distillation_loss", "soft_assignments", "soft_code_kl", "soft_label_kl"]


def code_distances(z: torch.Tensor, codes: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """``z: (n, d), codes: (K, d) -> (n, K)``: ``1 - cos`` (``'cosine'``) or squared Euclidean (``'l2'``),
    differentiable in both."""
    check_choice(metric, "metric", ("cosine", "l2"))
    if z.dim() != 2 or codes.dim() != 2 or z.shape[1] != codes.shape[1]:
        raise ValueError(f"code_distances: expected z (n, d) and codes (K, d), got {tuple(z.shape)} and "
                         f"{tuple(codes.shape)}")
    if metric == "cosine":
        return 1 - F.normalize(z, dim=-1) @ F.normalize(codes, dim=-1).T
    return (z.pow(2).sum(1, keepdim=True) - 2 * z @ codes.T + codes.pow(2).sum(1)).clamp_min(0)


def soft_assignments(z: torch.Tensor, codes: torch.Tensor, tau: float = 1.0, metric: str = "cosine",
                     *, log: bool = False) -> torch.Tensor:
    """Soft code assignments ``(n, d), (K, d) -> (n, K)``, rows summing to 1 (log-probabilities if ``log``)."""
    if tau <= 0:
        raise ValueError(f"tau: expected a positive temperature, got {tau}")
    logits = -code_distances(z, codes, metric) / tau
    return logits.log_softmax(-1) if log else logits.softmax(-1)


def soft_label_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """``KL(p_t || p_s)`` averaged over nodes; ``(n, C), (n, C) -> ()``."""
    return F.kl_div(student_logits.log_softmax(-1), teacher_probs, reduction="batchmean")


def soft_code_kl(student_z: torch.Tensor, teacher_assignments: torch.Tensor, codes: torch.Tensor,
                 tau: float = 1.0, metric: str = "cosine") -> torch.Tensor:
    """``KL(r_t || r_s)`` averaged over nodes, the student's assignments computed from its code
    embedding ``student_z: (n, d)`` against the (fixed) teacher codebook ``codes: (K, d)``."""
    log_r_s = soft_assignments(student_z, codes.detach(), tau, metric, log=True)
    return F.kl_div(log_r_s, teacher_assignments, reduction="batchmean")


def distillation_loss(logits: torch.Tensor, code_z: torch.Tensor | None, *, labels: torch.Tensor | None = None,
                      labelled: torch.Tensor | None = None, teacher_probs: torch.Tensor | None = None,
                      teacher_assignments: torch.Tensor | None = None, codes: torch.Tensor | None = None,
                      nodes: torch.Tensor | None = None, code_nodes: torch.Tensor | None = None,
                      w_label: float = 1.0, w_soft_label: float = 1.0,
                      w_code: float = 1.0, tau: float = 1.0, metric: str = "cosine") -> dict:
    """The student's loss terms -> ``{'label', 'soft_label', 'code', 'total'}`` (a term with weight 0
    or no target is left out). ``labelled`` / ``nodes`` index the rows with labels / distillation
    targets (``teacher_probs`` and ``teacher_assignments`` have one row per node of ``logits``);
    ``code_nodes`` (default ``nodes``) the rows of the code term."""
    terms = {}
    total = logits.new_zeros(())
    if w_label > 0 and labels is not None:
        idx = labelled if labelled is not None else slice(None)
        terms["label"] = F.cross_entropy(logits[idx], labels[idx])
        total = total + w_label * terms["label"]
    sel = nodes if nodes is not None else slice(None)
    if w_soft_label > 0 and teacher_probs is not None:
        terms["soft_label"] = soft_label_kl(logits[sel], teacher_probs[sel])
        total = total + w_soft_label * terms["soft_label"]
    if w_code > 0 and teacher_assignments is not None:
        if code_z is None or codes is None:
            raise ValueError("distillation_loss: the code term needs the student's code embedding and the codes")
        csel = code_nodes if code_nodes is not None else sel
        terms["code"] = soft_code_kl(code_z[csel], teacher_assignments[csel], codes, tau, metric)
        total = total + w_code * terms["code"]
    terms["total"] = total
    return terms
