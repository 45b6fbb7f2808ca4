"""The TokFSM reproduction of "Codebook Features": train GPT-NeoX models from scratch with and
without codebooks on finite-state-machine sequences, then read and steer them through their codes.

Models (same initial weights, same data order, same budget):
    original          the plain transformer
    codebook_attn     one codebook per attention head (k=1, 1,000 codes), dead codes re-seeded
    codebook_attn_raw the same without dead-code replacement (the public code's behaviour)
    codebook_attn_mlp attention heads + one codebook on each MLP output

Metrics: transition accuracy (a greedily generated next state is correct if it is a valid
successor), dead codes on held-out data, best-code precision per state vs the best neuron at the
same recall, and steering success. ``run_tokfsm`` writes report.md, metrics.json and PNGs.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import save_module
from ..validation import check_choice, check_positive_int
from .analysis import best_codes, code_label_counts, neuron_precision_at_recall, precision_recall
from .layer import SCALES
from .tokfsm import EOT, VOCAB_SIZE, TokFSM
from .wrap import bypass_codebooks, codebook_loss, codebook_sites, record_codes, steer, wrap_codebook

__all__ = ["run_tokfsm", "tokfsm_model", "train_lm", "transition_accuracy", "next_states"]

MODELS = ("original", "codebook_attn", "codebook_attn_raw", "codebook_attn_mlp")
PAPER_SIZE = {"steps": 20000, "batch_size": 512}


def tokfsm_model(seed: int = 0, hidden: int = 128, intermediate: int = 512, layers: int = 4, heads: int = 4,
                 max_tokens: int = 128) -> nn.Module:
    """A GPT-NeoX causal LM built from a config (no download), weights drawn from ``seed``."""
    import transformers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    transformers.logging.set_verbosity_error()
    cfg = GPTNeoXConfig(vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=intermediate,
                        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=max_tokens,
                        bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT, use_cache=False)
    torch.manual_seed(seed)  # transformers initialises weights from the global generator
    return GPTNeoXForCausalLM(cfg)


def train_lm(model: nn.Module, fsm: TokFSM, *, steps: int, batch_size: int, lr: float = 3e-3, seed: int = 0,
             length: int = 64, codebook_warmup: int = 0, device: str = "cpu", quiet: bool = False,
             desc: str = "train") -> list[float]:
    """Next-token training on fresh TokFSM sequences of ``length`` states (``2 * length`` tokens:
    BOS + states, cut; AdamW, linear warm-up then cosine decay, gradient clipping at 1); the
    codebook losses of a wrapped model are added. Returns the language-model loss of every step.

    ``codebook_warmup``: the first steps of the budget run with the codebooks bypassed; the codes
    are then fitted by k-means on the activations the warmed-up model produces (codes fitted on a
    random network's activations lag behind them once training moves them, see
    benchmarks/results/codebook-tokfsm.md)."""
    from tqdm.auto import tqdm

    if not 0 <= codebook_warmup <= steps:
        raise ValueError(f"codebook_warmup: expected 0 <= steps without codebooks <= steps={steps}, "
                         f"got {codebook_warmup}")
    wrapped = bool(codebook_sites(model))

    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g = torch.Generator().manual_seed(seed)
    losses = []
    for step in tqdm(range(steps), desc=desc, disable=quiet, leave=False):
        tokens, _ = fsm.sample(batch_size, length=length, max_tokens=2 * length, generator=g)
        tokens = tokens.to(device)
        with bypass_codebooks(model) if wrapped and step < codebook_warmup else nullcontext():
            out = model(input_ids=tokens, labels=tokens)
            loss = out.loss + codebook_loss(model).to(device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(out.loss.detach()))
    model.eval()
    return losses


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


def _cuts(n: int, num_states: int, g: torch.Generator) -> torch.Tensor:
    """How many complete states each prompt keeps: uniform in ``[1, num_states - 1]``."""
    return torch.randint(1, num_states, (n,), generator=g)


@torch.no_grad()
def transition_accuracy(model: nn.Module, fsm: TokFSM, tokens: torch.Tensor, states: torch.Tensor,
                        seed: int = 0, per_sequence: bool = False) -> float | torch.Tensor:
    """Fraction of greedy next states that are valid successors. Each held-out sequence is cut
    after a random number ``j`` of complete states (prompt: BOS + 2j tokens; the cuts depend on
    ``seed`` only, so two models see the same prompts). ``per_sequence=True`` returns the
    ``(n,)`` bool tensor of which sequences were continued correctly instead (paired comparisons)."""
    model.eval()
    device = next(model.parameters()).device
    num_complete = (tokens.shape[1] - 1) // 2
    cuts = _cuts(len(tokens), num_complete, torch.Generator().manual_seed(seed))
    correct = torch.zeros(len(tokens), dtype=torch.bool)
    for j in cuts.unique().tolist():
        rows = torch.nonzero(cuts == j).flatten()
        nxt = next_states(model, tokens[rows, : 1 + 2 * j].to(device)).cpu()
        correct[rows] = fsm.is_valid(states[rows, j - 1], nxt)
    return correct if per_sequence else float(correct.float().mean())


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
def _neurons_at(model: nn.Module, tokens: torch.Tensor, pos: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """MLP neuron activations (after the nonlinearity, every layer) at positions ``pos`` of every
    sequence: ``(n * len(pos), layers * intermediate)``."""
    device = next(model.parameters()).device
    acts_mods = [m for n, m in model.named_modules() if n.endswith("mlp.act")]
    rows = []
    for s in range(0, len(tokens), batch):
        got: list[torch.Tensor] = []
        handles = [m.register_forward_hook(lambda mod, a, o, got=got: got.append(o[:, pos].cpu()))
                   for m in acts_mods]
        try:
            model(input_ids=tokens[s:s + batch].to(device))
        finally:
            for h in handles:
                h.remove()
        rows.append(torch.cat([g.reshape(-1, g.shape[-1]) for g in got], 1))
    return torch.cat(rows)


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
    best = _state_codes(codes, states, num_states, num_codes, min_recall=min_recall, min_count=10)
    recalls = {s: float(best["best_recall"][s]) for s in range(num_states) if float(best["best_recall"][s]) > 0}
    neuron = neuron_precision_at_recall(acts, states, recalls)
    return best, torch.tensor([neuron[s][0] if s in neuron else 0.0 for s in range(num_states)])


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
              strength: float, seed: int, select: str = "precise", next_codes: str = "digit") -> dict:
    """Steer toward each state ``s`` and count generated next states that are valid successors of
    ``s``, with and without steering. Prompts end with a state other than ``s``; the codes of ``s``
    (chosen per codebook by ``select``, see ``_spec``) are activated where they were read:
    ``at_state`` codes (read at the second digit of ``s``) on the prompt's last token, and
    ``at_next`` codes (read at the first digit after ``s``) on the generated first digit.

    At that digit the model already carries the next state's first half, so ``next_codes='digit'``
    takes the codes ``s`` writes there *followed by the digit just generated* (``at_next`` labelled
    ``10 * s + digit``, as the public code copies codes from a run on ``s`` plus that digit);
    ``'state'`` takes the codes of ``s`` whatever digit follows (``at_next`` labelled ``s``): they
    pair ``s`` with its most frequent first digit and fight the generated one."""
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
        base = next_states(model, prompts).cpu()
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


def _plots(out: Path, metrics: dict, best_code_p, best_neuron_p, best_code_r, usage: dict) -> list[str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = []
    fig = Figure(figsize=(9, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    bins = torch.linspace(0, 1, 21).tolist()
    ax1.hist([best_code_p.tolist(), best_neuron_p.tolist()], bins=bins, label=["best code", "best neuron"])
    ax1.set_xlabel("precision for its state")
    ax1.set_ylabel("states")
    ax1.legend()
    ax2.hist(best_code_r.tolist(), bins=bins, color="C0")
    ax2.set_xlabel("recall of the best code")
    ax2.set_ylabel("states")
    fig.tight_layout()
    fig.savefig(out / "precision_recall.png")
    names.append("precision_recall.png")

    fig = Figure(figsize=(5, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, u in usage.items():
        u = torch.sort(u, descending=True).values
        ax.plot(range(1, len(u) + 1), (u + 1e-12).tolist(), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("code rank (per codebook, averaged)")
    ax.set_ylabel("share of selections")
    ax.set_title("code usage on held-out data")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "code_usage.png")
    names.append("code_usage.png")

    fig = Figure(figsize=(5, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, m in metrics["models"].items():
        loss = torch.tensor(m["train_loss"])
        w = max(1, len(loss) // 50)
        smooth = loss.unfold(0, w, w).mean(1) if len(loss) >= w else loss
        ax.plot([(i + 1) * w for i in range(len(smooth))], smooth.tolist(), label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("train LM loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "train_loss.png")
    names.append("train_loss.png")
    return names


def _usage(model: nn.Module) -> torch.Tensor:
    """Sorted usage per codebook (from the latest stats), averaged over codebooks: ``(K,)``."""
    rows = [torch.sort(layer.usage(), dim=1, descending=True).values for layer in codebook_sites(model).values()]
    return torch.cat(rows).mean(0).float()


def run_tokfsm(out, seed: int = 0, steps: int = 600, batch_size: int = 8, lr: float = 3e-3, num_codes: int = 1000,
               k: int = 1, mlp_k: int = 1, scale: str = "code", code_gradient: bool = False,
               codebook_warmup: float = 0.25, mlp_commitment: float = 0.25, eval_sequences: int = 4096,
               analysis_sequences: int = 512,
               prompts_per_state: int = 10, models: tuple[str, ...] = MODELS, device: str = "cpu",
               num_threads: int | None = None, reuse: bool = False, quiet: bool = False) -> dict:
    """Train the TokFSM models, compute every metric, write ``report.md``, ``metrics.json`` and
    PNGs into ``out``; return the metrics.

    CPU defaults (600 steps of 8 sequences, about 3-6 minutes per model on one busy core) are far
    from convergence; the paper trains 20,000 steps of 512
    (``PAPER_SIZE``) on a GPU. Every model sees the same initial weights and the same sequences.
    ``num_threads``: torch CPU threads for the run (restored after); 1 is fastest on a busy machine.
    Trained weights are saved to ``out/models/<model>.safetensors`` (with the training loss and
    the training config in ``<model>.json``); ``reuse=True`` loads them instead of training again
    when the saved config equals this run's (to redo the analysis only).
    ``eval_sequences``: held-out sequences for transition accuracy; every model continues the same
    prompts, so each gap to the original comes with a paired standard error (about 0.3 points at
    the default 4,096).
    ``codebook_warmup``: the fraction of the steps that every codebook model trains with its
    codebooks bypassed before they are fitted by k-means and switched on (same total budget).
    ``mlp_commitment``: the commitment-loss weight of the MLP codebooks (the attention codebooks
    keep none). Without the two, the attention + MLP model stalls at the unigram loss: its MLP
    outputs grow without bound under the straight-through gradient (see
    benchmarks/results/codebook-tokfsm.md).
    ``code_gradient``: the chosen codes also get the downstream gradient (the public code's
    ``aeloss``; +1.2 points at 2,000 x 32 on seed 0 before the warm-up existed).
    ``scale``: the codebooks' output scale (``CodebookLayer``): ``'code'`` (default: a learned norm
    per code, as the public code's raw codes; +3 and +9 points of transition accuracy over
    ``'running'`` at 600 steps on seeds 1 and 0, reconstruction error 0.01-0.015 vs 0.32-0.35).
    """
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(check_positive_int(num_threads, "num_threads"))
    try:
        return _run_tokfsm(out, seed, steps, batch_size, lr, num_codes, k, mlp_k, scale, code_gradient,
                           codebook_warmup, mlp_commitment, eval_sequences, analysis_sequences, prompts_per_state,
                           models, device, reuse, quiet)
    finally:
        torch.set_num_threads(threads)


_TRAINING_KEYS = ("seed", "steps", "batch_size", "lr", "num_codes", "k", "mlp_k", "scale", "code_gradient",
                  "codebook_warmup", "mlp_commitment")
_ORIGINAL_KEYS = ("seed", "steps", "batch_size", "lr")  # what the model without codebooks depends on
# settings added after some models were saved, at the values those models were trained with
_TRAINING_DEFAULTS = {"code_gradient": False, "codebook_warmup": 0.0, "mlp_commitment": 0.0}


def _save_trained(model: nn.Module, path: Path, config: dict, losses: list[float]) -> None:
    save_module(model, path, {"training": {k: config[k] for k in _TRAINING_KEYS}, "train_loss": losses},
                indent=None)


def _load_trained(model: nn.Module, path: Path, config: dict, keys: tuple[str, ...] = _TRAINING_KEYS) -> bool:
    """Load saved weights into ``model`` if they were trained with this run's training config
    (compared on ``keys``)."""
    from safetensors.torch import load_file

    meta, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not (meta.exists() and weights.exists()):
        return False
    saved = dict(_TRAINING_DEFAULTS, **json.loads(meta.read_text())["training"])
    if any(saved.get(k) != config[k] for k in keys):
        return False
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in load_file(str(weights)).items()})
    return True


def _run_tokfsm(out, seed, steps, batch_size, lr, num_codes, k, mlp_k, scale, code_gradient, codebook_warmup,
                mlp_commitment, eval_sequences, analysis_sequences, prompts_per_state, models, device, reuse,
                quiet) -> dict:
    check_positive_int(steps, "steps")
    check_positive_int(batch_size, "batch_size")
    check_choice(scale, "scale", SCALES)
    if not 0.0 <= codebook_warmup < 1.0:
        raise ValueError(f"codebook_warmup: expected a fraction of the steps in [0, 1), got {codebook_warmup}")
    if mlp_commitment < 0:
        raise ValueError(f"mlp_commitment: expected a weight >= 0, got {mlp_commitment}")
    unknown = [m for m in models if m not in MODELS]
    if unknown or "original" not in models:
        raise ValueError(f"models: expected 'original' and any of {list(MODELS)}, got {list(models)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    fsm = TokFSM(seed=seed)
    held_tokens, held_states = fsm.sample(max(eval_sequences, analysis_sequences),
                                          generator=torch.Generator().manual_seed(seed + 10_000))
    trained: dict[str, nn.Module] = {}
    correct: dict[str, torch.Tensor] = {}  # per held-out sequence: continued with a valid successor
    metrics: dict = {"config": {"seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
                                "num_codes": num_codes, "k": k, "mlp_k": mlp_k, "eval_sequences": eval_sequences,
                                "analysis_sequences": analysis_sequences, "prompts_per_state": prompts_per_state,
                                "device": device,
                                "threads": torch.get_num_threads(), "scale": scale, "code_gradient": code_gradient,
                                "codebook_warmup": codebook_warmup, "mlp_commitment": mlp_commitment,
                                "model": "GPT-NeoX hidden 128, intermediate 512, 4 layers, 4 heads"},
                     "models": {}}
    for name in models:
        t = time.time()
        model = tokfsm_model(seed)
        if name != "original":
            cb = dict(num_codes=num_codes, k=k, seed=seed, scale=scale, code_gradient=code_gradient,
                      replace_dead=name != "codebook_attn_raw")
            wrap_codebook(model, "attn_heads", **cb)
            if name == "codebook_attn_mlp":
                wrap_codebook(model, "mlp", **dict(cb, k=mlp_k, seed=seed + 100, commitment=mlp_commitment))
        ckpt = out / "models" / name
        keys = _ORIGINAL_KEYS if name == "original" else _TRAINING_KEYS
        reused = reuse and _load_trained(model, ckpt, metrics["config"], keys)
        if reused:
            losses = json.loads(ckpt.with_suffix(".json").read_text())["train_loss"]
            if not quiet:
                print(f"{name}: reusing the trained weights in {ckpt}.safetensors")
        else:
            losses = train_lm(model, fsm, steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=device,
                              codebook_warmup=int(codebook_warmup * steps), quiet=quiet, desc=name)
            _save_trained(model, ckpt, metrics["config"], losses)
        model.to(device).eval()
        correct[name] = transition_accuracy(model, fsm, held_tokens[:eval_sequences],
                                            held_states[:eval_sequences], seed, per_sequence=True)
        acc = float(correct[name].float().mean())
        m = {"transition_accuracy": acc, "train_loss": losses,
             "final_train_loss": sum(losses[-20:]) / len(losses[-20:]),
             "train_seconds": time.time() - t, "reused": reused}
        if name != "original":
            m["dead_codes"] = _dead_fraction(model, held_tokens[:analysis_sequences])
            m["replaced_codes"] = int(sum(int(layer.replaced) for layer in codebook_sites(model).values()))
        metrics["models"][name] = m
        trained[name] = model
        if not quiet:
            print(f"{name}: transition accuracy {acc:.3f}, {m['train_seconds']:.0f} s")

    for name, m in metrics["models"].items():
        if name != "original":  # every model continued the same prompts: a paired standard error
            diff = correct["original"].double() - correct[name].double()
            m["gap_to_original"] = {"points": 100 * float(diff.mean()),
                                    "paired_se": 100 * float(diff.std() / math.sqrt(len(diff)))}

    analysis = {}
    plots_usage = {}
    cb_name = "codebook_attn" if "codebook_attn" in trained else next((n for n in trained if n != "original"), None)
    if cb_name is not None:
        cbm = trained[cb_name]
        usage_models = [n for n in trained if n != "original"]
        for n in usage_models:
            _dead_fraction(trained[n], held_tokens[:analysis_sequences])
            plots_usage[n] = _usage(trained[n])
        a_tokens = held_tokens[:analysis_sequences]
        T = a_tokens.shape[1]
        pos_state = TokFSM.state_positions(T)  # second digit of state j (j = 0 .. 62)
        pos_next = pos_state + 1  # first digit of state j + 1: the model carries state j forward
        a_states = held_states[:analysis_sequences, : len(pos_state)].reshape(-1)
        sc, neuron_p, floors = {}, {}, {}
        for where, pos in (("state", pos_state), ("next", pos_next)):
            codes = {s: v for s, v in _codes_at(cbm, a_tokens, pos).items() if s.endswith("attn_heads")}
            acts = _neurons_at(trained["original"], a_tokens, pos)
            sc[where], neuron_p[where] = _code_vs_neuron(codes, acts, a_states, fsm.num_states, num_codes, 0.05)
            floors[where] = []
            for floor in RECALL_FLOORS:  # the same comparison for codes that cover more of their state
                best, neuron = _code_vs_neuron(codes, acts, a_states, fsm.num_states, num_codes, floor)
                has = best["best_precision"] > 0  # means over the states that have such a code (0 if none)
                code_p, code_r, neuron_at_r = (float(x[has].mean()) if has.any() else 0.0
                                               for x in (best["best_precision"], best["best_recall"], neuron))
                floors[where].append({"min_recall": floor, "states": int(has.sum()), "code_precision": code_p,
                                      "code_recall": code_r, "neuron_precision": neuron_at_r})
        analysis = {"model": cb_name, "recall_floors": floors,
                    "num_codebooks": sum(layer.num_codebooks for site, layer in codebook_sites(cbm).items()
                                         if site.endswith("attn_heads"))}
        for where in ("state", "next"):
            analysis[where] = {"mean_best_code_precision": float(sc[where]["best_precision"].mean()),
                               "mean_best_code_recall": float(sc[where]["best_recall"].mean()),
                               "mean_best_neuron_precision": float(neuron_p[where].mean()),
                               "states_with_a_code": int((sc[where]["best_precision"] > 0).sum()),
                               "best_code_precision": sc[where]["best_precision"].tolist(),
                               "best_neuron_precision": neuron_p[where].tolist(),
                               "best_code_recall": sc[where]["best_recall"].tolist()}
        # steering: through every codebook of each codebook model (the MLP codes too where trained)
        steering = {}
        next_digits = a_tokens[:, pos_next].reshape(-1)
        for sname in [n for n in ("codebook_attn", "codebook_attn_mlp") if n in trained] or [cb_name]:
            smodel = trained[sname]
            has_mlp_codes = any(site.endswith("mlp") for site in codebook_sites(smodel))
            if sname == cb_name and not has_mlp_codes:
                scodes = dict(sc)  # the analysis above already read every codebook of this model
            else:
                scodes = {where: _state_codes(_codes_at(smodel, a_tokens, pos), a_states, fsm.num_states, num_codes,
                                              min_recall=0.05, min_count=10)
                          for where, pos in (("state", pos_state), ("next", pos_next))}
            # the next token's codes labelled by the state and the digit that follows it
            scodes["next_digit"] = _state_codes(_codes_at(smodel, a_tokens, pos_next), 10 * a_states + next_digits,
                                                10 * fsm.num_states, num_codes, min_recall=0.05, min_count=10)
            runs = [(select, mode, "digit") for select in STEERING_CODES for mode in ("replace", "add")]
            runs.append(("frequent", "replace", "state"))  # the protocol before the digit-aware codes
            for select, mode, next_codes in runs:
                at_next = scodes["next_digit" if next_codes == "digit" else "next"]["codebooks"]
                r = _steering(smodel, fsm, scodes["state"]["codebooks"], at_next, held_tokens, held_states,
                              prompts_per_state=prompts_per_state, prompt_states=16, min_precision=0.5, mode=mode,
                              strength=1.0, seed=seed, select=select, next_codes=next_codes)
                by_state = ", next codes by state only" if next_codes == "state" else ""
                steering[f"{sname}: {mode}, {select} codes{by_state}"] = dict(r, model=sname)
        analysis["steering"] = steering
        analysis["norm_ratio_learned_scale"] = metrics["models"][cb_name]["dead_codes"]["norm_ratio"]
        analysis["norm_ratio_without_scale"] = _norm_ratio_without_scale(cbm, held_tokens[:64])
        metrics["analysis"] = analysis
        metrics["plots"] = _plots(out, metrics, sc["state"]["best_precision"], neuron_p["state"],
                                  sc["state"]["best_recall"], plots_usage)
    metrics["seconds"] = time.time() - t0
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "report.md").write_text(_report(metrics))
    return metrics


_SCALE_WORDS = {"running": "one running scalar per codebook, matched to the activations' mean norm",
                "code": "a learned norm per code", "learned": "one learned scalar per codebook",
                "match": "each output rescaled to its input's norm", "none": "unit codes"}


_AELOSS_WORDS = "codes also trained by the downstream gradient (`code_gradient`, the public aeloss), "


def _warmup_words(c: dict) -> str:
    warm, commit = c.get("codebook_warmup", 0.0), c.get("mlp_commitment", 0.0)
    words = (f"codebooks bypassed for the first {100 * warm:.0f}% of the steps, then fitted by k-means on the "
             "warmed-up activations, " if warm else "codebooks fitted by k-means at step 0, ")
    return words + (f"MLP codebooks with commitment loss {commit:g}, " if commit else "")


def _fmt(x, pct=True) -> str:
    return "n/a" if x is None else (f"{100 * x:.1f}%" if pct else f"{x:.3f}")


def _perplexity(dead: dict | None) -> str:
    return "-" if dead is None else f"{dead['perplexity']:.0f}"


def _report(m: dict) -> str:
    c = m["config"]
    models = m["models"]
    lines = ["# TokFSM reproduction (Codebook Features)", "",
             f"GPT-NeoX (hidden 128, intermediate 512, 4 layers, 4 heads) trained from scratch, {c['steps']} steps "
             f"of {c['batch_size']} sequences (lr {c['lr']}; the paper: 20,000 steps of 512), seed {c['seed']}, "
             f"device {c['device']} ({c.get('threads', '?')} thread(s), a shared machine); every model "
             f"starts from the same weights and sees the same sequences. Codebooks: one per attention head "
             f"(input of the attention output projection), k={c['k']}, {c['num_codes']} codes, cosine "
             f"similarity, {c.get('scale', 'running')} output scale "
             f"({_SCALE_WORDS.get(c.get('scale', 'running'), '')}), "
             f"{_AELOSS_WORDS if c.get('code_gradient') else ''}"
             f"{_warmup_words(c)}"
             "dead codes re-seeded every 50 steps except in `codebook_attn_raw`. Held-out: "
             f"{c['eval_sequences']} sequences for accuracy, {c['analysis_sequences']} for codes. "
             f"Total time {m['seconds']:.0f} s" + (
                 " (the weights of " + ", ".join(f"`{n}`" for n, r in models.items() if r.get("reused")) +
                 " were reloaded from `models/`, trained by an earlier run with the same settings: the time "
                 "excludes their training)." if any(r.get("reused") for r in models.values()) else "."), "",
             "| model | transition accuracy | vs original (± paired SE) | dead codes (held-out) | code perplexity | "
             "train loss |",
             "|---|---|---|---|---|---|"]
    for name, r in models.items():
        dead = r.get("dead_codes")
        lines.append(f"| {name} | {_fmt(r['transition_accuracy'])} | {_vs_original(r)} | "
                     f"{_fmt(dead['mean']) if dead else '-'} | {_perplexity(dead)} | "
                     f"{r['final_train_loss']:.3f} |")
    a = m.get("analysis")
    if a:
        st = a["steering"]
        lines += ["", "## Codes vs neurons, steering", "",
                  f"Analysis model: `{a['model']}` ({a.get('num_codebooks', 16)} head codebooks). Labels: the FSM "
                  "state, read at its second digit (**state token**, the primary measure) and at the first digit "
                  "of the next state (**next token**, where the model carries the state forward). Best code per "
                  "state: highest precision among codes with recall >= 5% and >= 10 uses, over all head "
                  "codebooks; best neuron: highest precision among the original model's 2,048 MLP neurons (either "
                  "sign) thresholded to the best code's recall.", "",
                  "| metric | state token | next token |", "|---|---|---|"]
        for key, label in (("mean_best_code_precision", "mean precision of the best code per state"),
                           ("mean_best_code_recall", "mean recall of that code"),
                           ("mean_best_neuron_precision", "mean precision of the best neuron at the same recall")):
            lines.append(f"| {label} | {_fmt(a['state'][key])} | {_fmt(a['next'][key])} |")
        lines.append(f"| states with a qualifying code | {a['state']['states_with_a_code']} / 100 | "
                     f"{a['next']['states_with_a_code']} / 100 |")
        if "recall_floors" in a:
            lines += ["", "The same comparison when the best code must also cover more of its state (recall floor): "
                      "the means are over the states that have such a code.", "",
                      "| recall floor | position | states with a code | best code precision | its recall | "
                      "best neuron at that recall | code - neuron |", "|---|---|---|---|---|---|---|"]
            for where, label in (("state", "state token"), ("next", "next token")):
                for f in a["recall_floors"][where]:
                    lines.append(f"| {100 * f['min_recall']:.0f}% | {label} | {f['states']} / 100 | "
                                 f"{_fmt(f['code_precision'])} | {_fmt(f['code_recall'])} | "
                                 f"{_fmt(f['neuron_precision'])} | "
                                 f"{100 * (f['code_precision'] - f['neuron_precision']):+.1f} pt |")
        lines += ["", f"Steering toward state s ({c.get('prompts_per_state', 10)} prompts per state, each ending in "
                  "another state): the codes of s are activated on the prompt's last token (codes read at the state "
                  "token), then on the generated first digit d (codes read at the next token on s followed by d; "
                  "the last row: on s whatever digit follows, as before). **Precise codes**: in "
                  "each codebook of the model (attention heads, and MLPs where it has them), its best code for s if "
                  "its precision is >= 50%; **frequent codes**: in every codebook, the code the model chooses most "
                  "often on s. `replace` overwrites the "
                  "chosen codes' output, `add` adds the steering codes' output. Success for a state: more than half "
                  "of its prompts continue with a successor of s.", "",
                  "| steering | codes activated per state (mean) | next states that follow s | unsteered | "
                  "states steered |", "|---|---|---|---|---|"]
        for s in st.values():
            lines.append(f"| {_steering_name(s, a)} (strength {s['strength']}) | {s['mean_codes_used']:.1f} | "
                         f"{_fmt(s['mean_success'])} | {_fmt(s['baseline_mean'])} | {_fmt(s['states_steered'])} |")
        lines += ["", "| metric | value |", "|---|---|"]
        lines.append(f"| output/input norm ratio, our {c.get('scale', 'running')} scale (held-out) | "
                     f"{a['norm_ratio_learned_scale']:.3f} |")
        lines.append(f"| output/input norm ratio with unit codes and no scale (`scale='none'`) | "
                     f"{a['norm_ratio_without_scale']:.3f} |")
        lines += ["", "## Targets", ""] + _targets(m)
    for p in m.get("plots", []):
        lines += ["", f"![{p}]({p})"]
    return "\n".join(lines) + "\n"


def _vs_original(r: dict) -> str:
    """``-1.3 ± 0.2 pt``: accuracy minus the original's, with its paired standard error."""
    gap = r.get("gap_to_original")
    return "+0.0 pt" if gap is None else f"{-gap['points']:+.1f} ± {gap['paired_se']:.1f} pt"


def _steering_name(s: dict, a: dict) -> str:
    by_state = ", next codes by state only" if s.get("next_codes", "state") == "state" else ""
    return f"`{s.get('model', a['model'])}`: {s['mode']}, {s.get('codes', 'precise')} codes{by_state}"


def _targets(m: dict) -> list[str]:
    models, a = m["models"], m["analysis"]
    rows = ["| target | measured | met |", "|---|---|---|"]
    for name in ("codebook_attn", "codebook_attn_mlp"):
        if name in models:
            gap = models[name]["gap_to_original"]
            rows.append(f"| {name}: accuracy within 2 points of the original | {gap['points']:+.1f} pt below "
                        f"(paired SE {gap['paired_se']:.1f}) | {'yes' if gap['points'] <= 2 else 'no'} |")
    gap = 100 * (a["state"]["mean_best_code_precision"] - a["state"]["mean_best_neuron_precision"])
    rows.append(f"| best-code precision >= best-neuron + 20 pt | {gap:+.1f} pt | {'yes' if gap >= 20 else 'no'} |")
    for name in ("codebook_attn", "codebook_attn_raw"):
        if name in models:
            d = models[name]["dead_codes"]["mean"]
            met = ("yes" if d < 0.5 else "no") if name == "codebook_attn" else "(reported: no dead-code handling)"
            rows.append(f"| dead codes < 50% ({name}) | {_fmt(d)} | {met} |")
    best = max(a["steering"].values(), key=lambda s: s["states_steered"])
    rows.append(f"| steering succeeds for >= 80% of states (best: {_steering_name(best, a)}) | "
                f"{_fmt(best['states_steered'])} | {'yes' if best['states_steered'] >= 0.8 else 'no'} |")
    return rows
