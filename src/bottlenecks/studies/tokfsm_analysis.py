"""TokFSM analysis pieces: the codes a model writes at given positions, the MLP neurons of the
model without codebooks, dead codes, best code per state against the best neuron, and steering
toward a state through its codes (used by :mod:`bottlenecks.studies.tokfsm`)."""

from __future__ import annotations

from contextlib import ExitStack

import torch
from torch import nn

from ..codebook.analysis import (
    best_codes,
    code_label_counts,
    codes_vs_neurons,
    neuron_precision_at_recalls,
    precision_recall,
)
from ..codebook.tokfsm import EOT, TokFSM
from ..codebook.wrap import codebook_sites, record_codes, steer
from ..validation import check_choice

__all__ = ["NEXT_CODES", "RECALL_FLOORS", "STEERING_CODES", "next_states", "sampled_transition_accuracy",
           "transition_accuracy"]


@torch.no_grad()
def next_states(model: nn.Module, prompts: torch.Tensor, steer_from: int | None = None) -> torch.Tensor:
    """Greedy two-token continuation of ``prompts: (n, P)`` decoded as states ``(n,)`` (-1 if not
    two digits). No KV cache: each step re-reads the whole sequence, so steering positions given as
    ``slice(P - 1, None)`` cover the prompt's last token and the generated one."""
    x = prompts
    for _ in range(2):
        logits = model(input_ids=x).logits[:, -1]
        x = torch.cat([x, logits.argmax(-1, keepdim=True)], 1)
    return TokFSM.decode(x[:, -2:])


@torch.inference_mode()
def _next_states_cached(model: nn.Module, prompts: torch.Tensor) -> torch.Tensor:
    """:func:`next_states` with keys and values cached: the prompt is read once and the second
    step reads only the generated digit (the same greedy states; half the tokens of re-reading)."""
    out = model(input_ids=prompts, use_cache=True)
    first = out.logits[:, -1].argmax(-1, keepdim=True)
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    second = model(input_ids=first, cache=cache, use_cache=True).logits[:, -1].argmax(-1, keepdim=True)
    return TokFSM.decode(torch.cat([first, second], 1))


def _cuts(n: int, num_states: int, g: torch.Generator) -> torch.Tensor:
    """How many complete states each prompt keeps: uniform in ``[1, num_states - 1]``."""
    return torch.randint(1, num_states, (n,), generator=g)


@torch.no_grad()
def transition_accuracy(model: nn.Module, fsm: TokFSM, tokens: torch.Tensor, states: torch.Tensor,
                        seed: int = 0, per_sequence: bool = False) -> float | torch.Tensor:
    """Fraction of greedy next states that are valid successors. Each held-out sequence is cut
    after a random number ``j`` of complete states (prompt: BOS + 2j tokens; the cuts depend on
    ``seed`` only, so two models see the same prompts; keys and values are cached between the two
    generated digits). ``per_sequence=True`` returns the
    ``(n,)`` bool tensor of which sequences were continued correctly instead (paired comparisons)."""
    model.eval()
    device = next(model.parameters()).device
    num_complete = (tokens.shape[1] - 1) // 2
    cuts = _cuts(len(tokens), num_complete, torch.Generator().manual_seed(seed))
    correct = torch.zeros(len(tokens), dtype=torch.bool)
    for j in cuts.unique().tolist():
        rows = torch.nonzero(cuts == j).flatten()
        nxt = _next_states_cached(model, tokens[rows, : 1 + 2 * j].to(device)).cpu()
        correct[rows] = fsm.is_valid(states[rows, j - 1], nxt)
    return correct if per_sequence else float(correct.float().mean())


@torch.no_grad()
def sampled_transition_accuracy(model: nn.Module, fsm: TokFSM, num_sequences: int = 100, length: int = 128,
                                seed: int = 0) -> dict:
    """The public protocol (``TokFSMModelTrainer.log`` in codebook_features/train_fsm_model.py):
    ``num_sequences`` continuations of BOS alone, sampled at temperature 1 to ``length`` tokens
    (end-of-text masked, as its ``min_length=length`` does), digit pairs read as states, every
    consecutive transition scored. Sampling draws from ``torch.Generator(seed)``; keys and values
    are cached, one new token per step. Returns ``{"transition_accuracy": valid / all transitions,
    "first_transition_accuracy", "transitions", "sequences", "length", "seed"}``."""
    model.eval()
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    x = torch.full((num_sequences, 1), EOT, dtype=torch.long)
    cache, step = None, x
    for _ in range(length - 1):
        out = model(input_ids=step.to(device), cache=cache, use_cache=True)
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        logits = out.logits[:, -1].float().cpu()
        logits[:, EOT] = -float("inf")
        step = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)
        x = torch.cat([x, step], 1)
    digits = x[:, 1:1 + 2 * ((length - 1) // 2)]
    states = digits[:, 0::2] * 10 + digits[:, 1::2]
    prev = states[:, :-1]
    ok = (prev < fsm.num_states) & fsm.is_valid(prev.clamp(max=fsm.num_states - 1), states[:, 1:])
    return {"transition_accuracy": float(ok.float().mean()),
            "first_transition_accuracy": float(ok[:, 0].float().mean()), "transitions": int(ok.numel()),
            "sequences": num_sequences, "length": length, "seed": seed}


@torch.no_grad()
def _recorded(model: nn.Module, modules: list[nn.Module], tokens: torch.Tensor, select,
              batch: int = 64) -> torch.Tensor:
    """The outputs of ``modules`` on every sequence of ``tokens``, ``select(output) -> (b, T', width)``
    per module, concatenated along the features: ``(n * T', sum of widths)``."""
    device = next(model.parameters()).device
    rows = []
    for s in range(0, len(tokens), batch):
        got: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda mod, a, o, got=got: got.append(select(o).cpu())) for m in modules]
        try:
            model(input_ids=tokens[s:s + batch].to(device))
        finally:
            for h in hooks:
                h.remove()
        rows.append(torch.cat([o.reshape(-1, o.shape[-1]) for o in got], 1))
    return torch.cat(rows)


def _block_outputs(model: nn.Module, tokens: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """What every block writes to the residual stream (each layer's attention and MLP outputs) at
    every token: ``(n * T, 2 * layers * hidden)``, the paper's neuron baseline."""
    mods = [m for n, m in model.named_modules() if n.endswith(".attention") or n.endswith(".mlp")]
    return _recorded(model, mods, tokens, lambda o: (o[0] if isinstance(o, tuple) else o).float(), batch)


def _state_token_labels(states: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """``(n * T,)`` labels: each state at its second digit (the state token), -1 at every other token."""
    pos = TokFSM.state_positions(num_tokens)
    labels = torch.full((states.shape[0], num_tokens), -1, dtype=torch.long)
    labels[:, pos] = states[:, :len(pos)]
    return labels.reshape(-1)


def _mean_over(v: torch.Tensor, has: torch.Tensor) -> float:
    return float(v[has].mean()) if bool(has.any()) else 0.0


def paper_codes_vs_neurons(trained: dict, tokens: torch.Tensor, states: torch.Tensor, num_states: int,
                           num_codes: int) -> dict:
    """Best code per state against the best neuron on the paper's protocol (see
    :mod:`bottlenecks.codebook.analysis`): every token of ``tokens (n, T)`` counts, the state is read
    at its state token, the neurons are the original model's block outputs (top side only). Rows:
    each codebook model's attention-head codes, and its MLP codes where it has them. ->
    ``{"<model>: <codes>": summary}``."""
    labels = _state_token_labels(states, tokens.shape[1])
    acts = _block_outputs(trained["original"], tokens)
    everywhere = torch.arange(tokens.shape[1])
    out = {}
    for name in (n for n in ("codebook_attn", "codebook_attn_mlp") if n in trained):
        codes = _codes_at(trained[name], tokens, everywhere)
        heads = {s: v for s, v in codes.items() if s.endswith("attn_heads")}
        mlp = {s: v for s, v in codes.items() if not s.endswith("attn_heads")}
        for what, subset in (("attention-head codes", heads), ("MLP codes", mlp)):
            if not subset:
                continue
            r = codes_vs_neurons(subset, acts, labels, num_codes, num_states, protocol="paper")
            has = r["code"] >= 0
            out[f"{name}: {what}"] = {
                "states_with_a_code": int(has.sum()), "mean_best_code_precision": _mean_over(r["code_precision"], has),
                "mean_best_code_recall": _mean_over(r["code_recall"], has),
                "mean_best_neuron_precision": _mean_over(r["neuron_precision"], has), "neurons": acts.shape[1],
                "tokens": int(labels.numel()),
                "best_code_precision": r["code_precision"].tolist(),
                "best_neuron_precision": r["neuron_precision"].tolist(), "best_code_recall": r["code_recall"].tolist()}
    return out


@torch.no_grad()
def _codes_at(model: nn.Module, tokens: torch.Tensor, pos: torch.Tensor, batch: int = 64) -> dict[str, torch.Tensor]:
    """Code ids at positions ``pos`` of every sequence: ``{site: (n * len(pos), groups, k)}``."""
    device = next(model.parameters()).device
    out: dict[str, list] = {}
    for s in range(0, len(tokens), batch):
        with record_codes(model) as rec:
            model(input_ids=tokens[s:s + batch].to(device))
        for site in rec.keys():
            ids = rec[site][:, pos]
            ids = ids if ids.dim() == 4 else ids.unsqueeze(2)  # (b, states, groups, k)
            out.setdefault(site, []).append(ids.reshape(-1, ids.shape[2], ids.shape[3]))
    return {k: torch.cat(v) for k, v in out.items()}


@torch.no_grad()
def _codes_at_positions(model: nn.Module, tokens: torch.Tensor, pos: dict[str, torch.Tensor],
                        batch: int = 64) -> dict[str, dict[str, torch.Tensor]]:
    """:func:`_codes_at` for several position sets ``{where: pos}`` from one forward per batch:
    ``{where: {site: (n * len(pos), groups, k)}}``."""
    device = next(model.parameters()).device
    out: dict[str, dict[str, list]] = {where: {} for where in pos}
    for s in range(0, len(tokens), batch):
        with record_codes(model) as rec:
            model(input_ids=tokens[s:s + batch].to(device))
        for site in rec.keys():
            for where, p in pos.items():
                ids = rec[site][:, p]
                ids = ids if ids.dim() == 4 else ids.unsqueeze(2)  # (b, states, groups, k)
                out[where].setdefault(site, []).append(ids.reshape(-1, ids.shape[2], ids.shape[3]))
    return {where: {k: torch.cat(v) for k, v in d.items()} for where, d in out.items()}


def _neurons_at_positions(model: nn.Module, tokens: torch.Tensor, pos: dict[str, torch.Tensor],
                          batch: int = 64) -> dict[str, torch.Tensor]:
    """:func:`_neurons_at` for several position sets ``{where: pos}`` from one forward per batch."""
    every = torch.cat(list(pos.values()))
    both = _recorded(model, [m for n, m in model.named_modules() if n.endswith("mlp.act")], tokens,
                     lambda o: o[:, every], batch)  # (n * len(every), width): rows (sequence, position)
    both = both.reshape(len(tokens), len(every), -1)
    out, start = {}, 0
    for where, p in pos.items():
        out[where] = both[:, start:start + len(p)].reshape(-1, both.shape[-1])
        start += len(p)
    return out


def _neurons_at(model: nn.Module, tokens: torch.Tensor, pos: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """MLP neuron activations (after the nonlinearity, every layer) at positions ``pos`` of every
    sequence: ``(n * len(pos), layers * intermediate)``."""
    acts_mods = [m for n, m in model.named_modules() if n.endswith("mlp.act")]
    return _recorded(model, acts_mods, tokens, lambda o: o[:, pos], batch)


def _dead_fraction(model: nn.Module, tokens: torch.Tensor, batch: int = 64) -> dict[str, float]:
    """Dead-code fraction (codes never chosen) per site on ``tokens``, plus the mean over codebooks."""
    sites = codebook_sites(model)
    for layer in sites.values():
        layer.reset_stats()
    device = next(model.parameters()).device
    with torch.no_grad():
        for s in range(0, len(tokens), batch):
            model(input_ids=tokens[s:s + batch].to(device))
    per_site = {name: float(layer.dead_fraction().mean()) for name, layer in sites.items()}
    per_codebook = torch.cat([layer.dead_fraction() for layer in sites.values()])
    return {"mean": float(per_codebook.mean()), "per_site": per_site,
            "perplexity": float(torch.cat([layer.perplexity() for layer in sites.values()]).mean()),
            "norm_ratio": float(sum(layer.norm_ratio() for layer in sites.values()) / len(sites))}


def _norm_ratio_without_scale(model: nn.Module, tokens: torch.Tensor) -> float:
    """The output/input norm ratio the public code's unscaled output would give (scale 'none')."""
    sites = codebook_sites(model)
    modes = {n: layer.scale_mode for n, layer in sites.items()}
    try:
        for layer in sites.values():
            layer.scale_mode = "none"
        return _dead_fraction(model, tokens)["norm_ratio"]
    finally:
        for n, layer in sites.items():
            layer.scale_mode = modes[n]


def _state_codes(codes: dict[str, torch.Tensor], states: torch.Tensor, num_states: int, num_codes: int,
                 min_recall: float, min_count: int) -> dict:
    """Per codebook (site, group): precision/recall of every code for every state and the best
    code per state; plus, per state, the best code over all codebooks."""
    per_cb = []
    for site, ids in codes.items():
        for gi in range(ids.shape[1]):
            counts = code_label_counts(ids[:, gi], states, num_codes, num_states)
            prec, rec = precision_recall(counts, k=ids.shape[2])
            code, p, r = best_codes(prec, rec, counts, min_recall=min_recall, min_count=min_count)
            per_cb.append({"site": site, "group": gi, "code": code, "precision": p, "recall": r,
                           "all_precision": prec, "all_recall": rec, "counts": counts})
    best_p = torch.stack([c["precision"] for c in per_cb])  # (codebooks, S)
    best_r = torch.stack([c["recall"] for c in per_cb])
    which = (best_p + 1e-6 * best_r).argmax(0)
    cols = torch.arange(num_states)
    return {"codebooks": per_cb, "best_precision": best_p[which, cols], "best_recall": best_r[which, cols],
            "best_codebook": which}


RECALL_FLOORS = (0.25, 0.5, 0.75)


def _code_vs_neuron(codes: dict[str, torch.Tensor], acts: torch.Tensor, states: torch.Tensor, num_states: int,
                    num_codes: int, min_recall: float) -> tuple[dict, torch.Tensor]:
    """The best code per state (highest precision among codes with recall >= ``min_recall`` and
    >= 10 uses, see ``_state_codes``) and the best neuron's precision at that code's recall
    ``(num_states,)`` (0 where the state has no such code)."""
    return _code_vs_neuron_floors(codes, acts, states, num_states, num_codes, [min_recall])[0]


def _code_vs_neuron_floors(codes: dict[str, torch.Tensor], acts: torch.Tensor, states: torch.Tensor,
                           num_states: int, num_codes: int, floors) -> list[tuple[dict, torch.Tensor]]:
    """:func:`_code_vs_neuron` at each minimum recall of ``floors``, the neurons sorted once for
    all of them (the same numbers as one call per floor)."""
    bests = [_state_codes(codes, states, num_states, num_codes, min_recall=f, min_count=10) for f in floors]
    wanted = {s: [(i, float(b["best_recall"][s])) for i, b in enumerate(bests) if float(b["best_recall"][s]) > 0]
              for s in range(num_states)}
    wanted = {s: w for s, w in wanted.items() if w}
    got = neuron_precision_at_recalls(acts, states, {s: [r for _, r in w] for s, w in wanted.items()})
    neuron = torch.zeros(len(floors), num_states)
    for s, w in wanted.items():
        for (i, _), (p, _) in zip(w, got[s], strict=True):
            neuron[i, s] = p
    return [(b, neuron[i]) for i, b in enumerate(bests)]


STEERING_CODES = ("precise", "frequent")


def _spec(per_cb: list[dict], s: int, min_precision: float, select: str = "precise") -> dict[str, dict[int, list[int]]]:
    """``{site: {head: [code]}}``, the codes that stand for state ``s``: ``'precise'``: in every
    codebook, its best code for ``s`` if its precision is >= ``min_precision``; ``'frequent'``: in
    every codebook, the code chosen most often on ``s`` (what the model itself writes there when it
    reads ``s``; the public code steers by copying these ids from a run on ``s``)."""
    spec: dict[str, dict[int, list[int]]] = {}
    for cb in per_cb:
        if select == "frequent":
            column = cb["counts"][:, s]
            if int(column.sum()) > 0:
                spec.setdefault(cb["site"], {})[cb["group"]] = [int(column.argmax())]
        elif int(cb["code"][s]) >= 0 and float(cb["precision"][s]) >= min_precision:
            spec.setdefault(cb["site"], {})[cb["group"]] = [int(cb["code"][s])]
    return spec


NEXT_CODES = ("digit", "state")


def _steering(model: nn.Module, fsm: TokFSM, at_state: list[dict], at_next: list[dict], tokens: torch.Tensor,
              states: torch.Tensor, *, prompts_per_state: int, prompt_states: int, min_precision: float, mode: str,
              strength: float, seed: int, select: str = "precise", next_codes: str = "digit",
              unsteered: dict | None = None) -> dict:
    """Steer toward each state ``s`` and count generated next states that are valid successors of
    ``s``, with and without steering. Prompts end with a state other than ``s``; the codes of ``s``
    (chosen per codebook by ``select``, see ``_spec``) are activated where they were read:
    ``at_state`` codes (read at the second digit of ``s``) on the prompt's last token, and
    ``at_next`` codes (read at the first digit after ``s``) on the generated first digit.

    At that digit the model already carries the next state's first half, so ``next_codes='digit'``
    takes the codes ``s`` writes there *followed by the digit just generated* (``at_next`` labelled
    ``10 * s + digit``, as the public code copies codes from a run on ``s`` plus that digit);
    ``'state'`` takes the codes of ``s`` whatever digit follows (``at_next`` labelled ``s``): they
    pair ``s`` with its most frequent first digit and fight the generated one.

    ``unsteered``: a dict kept across calls with the same model, tokens and seed (the same prompts):
    the unsteered continuations are computed in the first call and reused."""
    check_choice(next_codes, "next_codes", NEXT_CODES)
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    P = 1 + 2 * prompt_states
    fractions, base_fractions, codes_used = [], [], []
    for s in range(fsm.num_states):
        cand = torch.nonzero(states[:, prompt_states - 1] != s).flatten()
        rows = cand[torch.randperm(len(cand), generator=g)[:prompts_per_state]]
        prompts = tokens[rows, :P].to(device)
        spec_state = _spec(at_state, s, min_precision, select)
        if unsteered is not None and s in unsteered and torch.equal(unsteered[s][0], prompts):
            base = unsteered[s][1]
        else:
            base = next_states(model, prompts).cpu()
            if unsteered is not None:
                unsteered[s] = (prompts, base)
        base_fractions.append(float(fsm.is_valid(torch.full_like(base, s), base).float().mean()))
        with steer(model, spec_state, strength=strength, mode=mode, positions=[P - 1]):
            first = model(input_ids=prompts).logits[:, -1].argmax(-1)
        x = torch.cat([prompts, first[:, None]], 1)
        second = torch.full_like(first, EOT)
        used = torch.zeros(len(first))
        for d in first.unique().tolist():
            rows_d = first == d
            label = s if next_codes == "state" else 10 * s + d
            spec_next = _spec(at_next, label, min_precision, select) if d < 10 else {}
            used[rows_d.cpu()] = sum(len(v) for v in spec_next.values())
            with ExitStack() as stack:
                stack.enter_context(steer(model, spec_state, strength=strength, mode=mode, positions=[P - 1]))
                stack.enter_context(steer(model, spec_next, strength=strength, mode=mode, positions=[P]))
                second[rows_d] = model(input_ids=x[rows_d]).logits[:, -1].argmax(-1)
        codes_used.append(sum(len(v) for v in spec_state.values()) + float(used.mean()))
        got = TokFSM.decode(torch.stack([first, second], 1)).cpu()
        fractions.append(float(fsm.is_valid(torch.full_like(got, s), got).float().mean()))
    f = torch.tensor(fractions)
    return {"mode": mode, "codes": select, "next_codes": next_codes, "strength": strength,
            "mean_success": float(f.mean()), "states_steered": float((f > 0.5).double().mean()),
            "baseline_mean": float(torch.tensor(base_fractions).mean()),
            "mean_codes_used": float(torch.tensor(codes_used, dtype=torch.float).mean()), "per_state": fractions}



def _usage(model: nn.Module) -> torch.Tensor:
    """Sorted usage per codebook (from the latest stats), averaged over codebooks: ``(K,)``."""
    rows = [torch.sort(layer.usage(), dim=1, descending=True).values for layer in codebook_sites(model).values()]
    return torch.cat(rows).mean(0).float()


