"""The TokFSM study ("Codebook Features", Tamkin et al. 2023): train GPT-NeoX models from scratch
with and without codebooks on finite-state-machine sequences, then read and steer them through
their codes.

Models (same initial weights, same data order, same budget):
    original          the plain transformer
    codebook_attn     one codebook per attention head (k=1, 1,000 codes), dead codes re-seeded
    codebook_attn_raw the same without dead-code replacement (the public code's behaviour)
    codebook_attn_mlp attention heads + one codebook on each MLP output

Metrics: transition accuracy (a greedily generated next state is correct if it is a valid
successor), dead codes on held-out data, best-code precision per state vs the best neuron at the
same recall, and steering success. :func:`run` writes report.md, metrics.json and PNGs.

>>> run(TokFSMConfig(steps=600), out="runs/tokfsm")           # CPU minutes; PAPER_SIZE on a GPU
>>> run(TokFSMConfig(num_states=10, num_successors=2, length=8, hidden=32, intermediate=64, layers=1,
...                  heads=2, steps=50, num_codes=16), out="runs/tiny")   # a tiny machine and model
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..checkpoint import save_module
from ..codebook.analysis import code_records
from ..codebook.layer import SCALES
from ..codebook.tokfsm import EOT, VOCAB_SIZE, TokFSM
from ..codebook.wrap import bypass_codebooks, codebook_loss, codebook_sites, wrap_codebook
from ..progress import phase, track
from ..report.html_browse import build_html
from ..threads import fixed_threads
from ..validation import InstanceOf, Interval, Options, check_device
from .base import StudyConfig, StudyResults, prepare_out, write_json
from .tokfsm_analysis import (
    RECALL_FLOORS,
    STEERING_CODES,
    _code_vs_neuron_floors,
    _codes_at,
    _codes_at_positions,
    _dead_fraction,
    _neurons_at_positions,
    _norm_ratio_without_scale,
    _state_codes,
    _steering,
    _usage,
    next_states,
    paper_codes_vs_neurons,
    sampled_transition_accuracy,
    transition_accuracy,
)

__all__ = ["MODELS", "PAPER_SIZE", "TokFSMConfig", "TokFSMResults", "next_states", "run", "tokfsm_model",
           "train_lm", "transition_accuracy"]

MODELS = ("original", "codebook_attn", "codebook_attn_raw", "codebook_attn_mlp")
PAPER_SIZE = {"steps": 20000, "batch_size": 512}


@dataclass
class TokFSMConfig(StudyConfig):
    """One TokFSM study.

    Training: ``steps`` of ``batch_size`` fresh sequences per model (CPU default 600 x 8, far from
    convergence; the paper: ``PAPER_SIZE``, 20,000 x 512, a GPU job), AdamW ``lr``.
    Codebooks: ``num_codes`` per codebook, ``k`` codes summed per attention head, ``mlp_k`` per
    MLP codebook, output ``scale`` (``CodebookLayer``; ``'code'``: a learned norm per code, as the
    public code); ``code_gradient``: the chosen codes also get the downstream gradient (the public
    code's ``aeloss``); ``codebook_warmup``: the fraction of the steps each codebook model trains
    with its codebooks bypassed before k-means fits them to the warmed-up activations;
    ``mlp_commitment``: the commitment-loss weight of the MLP codebooks (without it and the
    warm-up the attention + MLP model stalls at the unigram loss; see
    benchmarks/results/codebook-tokfsm.md).
    Sizes: the machine (``num_states`` <= 100 written as two digits, ``num_successors`` each),
    sequences of ``length`` states, the GPT-NeoX (``hidden``, ``intermediate``, ``layers``,
    ``heads``); steering prompts end after ``prompt_states`` states.
    Measures: ``eval_sequences`` held-out sequences for transition accuracy (every model continues
    the same prompts, so each gap to the original has a paired standard error),
    ``analysis_sequences`` for the code analysis, ``prompts_per_state`` for steering.
    Run: ``models`` (``original`` required), ``device``, ``threads`` (torch CPU threads during the
    run, restored after; None: 1 on CPU, where these small ops run fastest), ``reuse``: load the
    models saved in ``out/models`` by an earlier run with the same training settings instead of
    training again (an error when none is there).
    """

    seed: int = 0
    steps: int = 600
    batch_size: int = 8
    lr: float = 3e-3
    num_codes: int = 1000
    k: int = 1
    mlp_k: int = 1
    scale: str = "code"
    code_gradient: bool = False
    codebook_warmup: float = 0.25
    mlp_commitment: float = 0.25
    num_states: int = 100
    num_successors: int = 10
    length: int = 64
    hidden: int = 128
    intermediate: int = 512
    layers: int = 4
    heads: int = 4
    prompt_states: int = 16
    eval_sequences: int = 4096
    analysis_sequences: int = 512
    prompts_per_state: int = 10
    models: tuple = MODELS
    device: str = "cpu"
    threads: int | None = None
    reuse: bool = False

    constraints: ClassVar[dict] = {
        **{name: Interval(int, 1, None) for name in (
            "steps", "batch_size", "num_codes", "k", "mlp_k", "num_successors", "hidden", "intermediate", "layers",
            "heads", "prompt_states", "eval_sequences", "analysis_sequences", "prompts_per_state")},
        "num_states": Interval(int, 1, 100), "length": Interval(int, 2, None), "seed": Interval(int, 0, None),
        "threads": [Interval(int, 1, None), None], "scale": Options(SCALES),
        "lr": Interval(float, 0, None, closed="neither"), "codebook_warmup": Interval(float, 0, 1, closed="left"),
        "mlp_commitment": Interval(float, 0, None), "code_gradient": InstanceOf(bool), "reuse": InstanceOf(bool),
        "device": InstanceOf(str, "a torch device name")}

    def validate(self) -> None:
        check_device(self.device)
        if isinstance(self.models, str):
            self.models = tuple(m.strip() for m in self.models.split(",") if m.strip())
        self.models = tuple(self.models)
        unknown = [m for m in self.models if m not in MODELS]
        if unknown or "original" not in self.models:
            raise ValueError(f"models: expected 'original' and any of {list(MODELS)}, got {list(self.models)}")
        if self.num_successors > self.num_states:
            raise ValueError(f"num_successors: expected at most num_states={self.num_states}, "
                             f"got {self.num_successors}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden: expected a multiple of heads={self.heads}, got {self.hidden}")
        if self.prompt_states >= self.length:
            raise ValueError(f"prompt_states: expected fewer than length={self.length} states, "
                             f"got {self.prompt_states}")


@dataclass
class TokFSMResults(StudyResults):
    """What ``metrics.json`` holds: the run's ``config``, per model its accuracy, training loss,
    dead codes and gap to the original; the code ``analysis`` (codes vs neurons, recall floors,
    steering) when a codebook model ran; the PNG names; the total ``seconds``."""

    config: dict
    models: dict
    analysis: dict = field(default_factory=dict)
    plots: list = field(default_factory=list)
    seconds: float = 0.0


# ------------------------------------------------------------------------------- models and training
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
             length: int = 64, codebook_warmup: int = 0, device: str = "cpu", progress: bool | None = None,
             desc: str = "train") -> list[float]:
    """Next-token training on fresh TokFSM sequences of ``length`` states (``2 * length`` tokens:
    BOS + states, cut; AdamW, linear warm-up then cosine decay, gradient clipping at 1); the
    codebook losses of a wrapped model are added. Returns the language-model loss of every step.

    ``codebook_warmup``: the first steps of the budget run with the codebooks bypassed; the codes
    are then fitted by k-means on the activations the warmed-up model produces (codes fitted on a
    random network's activations lag behind them once training moves them, see
    benchmarks/results/codebook-tokfsm.md)."""
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
    for step in track(range(steps), desc, progress=progress, leave=False):
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


_TRAINING_KEYS = ("seed", "steps", "batch_size", "lr", "num_codes", "k", "mlp_k", "scale", "code_gradient",
                  "codebook_warmup", "mlp_commitment", "num_states", "num_successors", "length", "hidden",
                  "intermediate", "layers", "heads")
# what the model without codebooks depends on
_ORIGINAL_KEYS = ("seed", "steps", "batch_size", "lr", "num_states", "num_successors", "length", "hidden",
                  "intermediate", "layers", "heads")
# settings added after some models were saved, at the values those models were trained with
_TRAINING_DEFAULTS = {"code_gradient": False, "codebook_warmup": 0.0, "mlp_commitment": 0.0, "num_states": 100,
                      "num_successors": 10, "length": 64, "hidden": 128, "intermediate": 512, "layers": 4, "heads": 4}


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


def _build(name: str, cfg: TokFSMConfig) -> nn.Module:
    """The model ``name`` at its initial weights (the same for every model of a seed)."""
    model = tokfsm_model(cfg.seed, hidden=cfg.hidden, intermediate=cfg.intermediate, layers=cfg.layers,
                         heads=cfg.heads, max_tokens=2 * cfg.length)
    if name != "original":
        cb = dict(num_codes=cfg.num_codes, k=cfg.k, seed=cfg.seed, scale=cfg.scale, code_gradient=cfg.code_gradient,
                  replace_dead=name != "codebook_attn_raw")
        wrap_codebook(model, "attn_heads", **cb)
        if name == "codebook_attn_mlp":
            wrap_codebook(model, "mlp", **dict(cb, k=cfg.mlp_k, seed=cfg.seed + 100, commitment=cfg.mlp_commitment))
    return model


def _train_or_reuse(name: str, model: nn.Module, fsm: TokFSM, cfg: TokFSMConfig, run_config: dict, out: Path,
                    progress) -> tuple[list[float], bool]:
    """Train ``model`` (saving it to ``out/models``), or with ``reuse`` load the weights saved by
    a run with the same training settings. -> (training losses, reused)."""
    ckpt = out / "models" / name
    keys = _ORIGINAL_KEYS if name == "original" else _TRAINING_KEYS
    if cfg.reuse and _load_trained(model, ckpt, run_config, keys):
        phase(f"{name}: reusing the trained weights in {ckpt}.safetensors", progress)
        return json.loads(ckpt.with_suffix(".json").read_text())["train_loss"], True
    losses = train_lm(model, fsm, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                      length=cfg.length, device=cfg.device, codebook_warmup=int(cfg.codebook_warmup * cfg.steps),
                      progress=progress, desc=name)
    _save_trained(model, ckpt, run_config, losses)
    return losses, False


# ------------------------------------------------------------------------------- measures
def _model_metrics(name: str, model: nn.Module, correct: torch.Tensor, losses: list[float], seconds: float,
                   reused: bool, held_tokens: torch.Tensor, cfg: TokFSMConfig) -> dict:
    m = {"transition_accuracy": float(correct.float().mean()), "train_loss": losses,
         "final_train_loss": sum(losses[-20:]) / len(losses[-20:]), "train_seconds": seconds, "reused": reused}
    if name != "original":
        m["dead_codes"] = _dead_fraction(model, held_tokens[:cfg.analysis_sequences])
        m["replaced_codes"] = int(sum(int(layer.replaced) for layer in codebook_sites(model).values()))
    return m


def _gaps_to_original(models: dict, correct: dict) -> None:
    """Every model continued the same prompts: each gap to the original gets a paired standard error."""
    for name, m in models.items():
        if name != "original":
            diff = correct["original"].double() - correct[name].double()
            m["gap_to_original"] = {"points": 100 * float(diff.mean()),
                                    "paired_se": 100 * float(diff.std() / math.sqrt(len(diff)))}


def _codes_vs_neurons(cbm: nn.Module, original: nn.Module, a_tokens, a_states, pos: dict, fsm: TokFSM,
                      num_codes: int) -> tuple[dict, dict, dict]:
    """Best head code per state vs the original model's best neuron, at the state and next token,
    with the minimum recall 5% and at the recall floors. -> (codes, neuron precision, floors).
    One forward per model reads every position; the neurons are sorted once per position."""
    sc, neuron_p, floors = {}, {}, {}
    all_codes = _codes_at_positions(cbm, a_tokens, pos)
    all_acts = _neurons_at_positions(original, a_tokens, pos)
    for where in pos:
        codes = {s: v for s, v in all_codes[where].items() if s.endswith("attn_heads")}
        (sc[where], neuron_p[where]), *at_floors = _code_vs_neuron_floors(
            codes, all_acts[where], a_states, fsm.num_states, num_codes, (0.05, *RECALL_FLOORS))
        floors[where] = []
        for floor, (best, neuron) in zip(RECALL_FLOORS, at_floors, strict=True):  # codes that cover more of their state
            has = best["best_precision"] > 0  # means over the states that have such a code (0 if none)
            code_p, code_r, neuron_at_r = (float(x[has].mean()) if has.any() else 0.0
                                           for x in (best["best_precision"], best["best_recall"], neuron))
            floors[where].append({"min_recall": floor, "states": int(has.sum()), "code_precision": code_p,
                                  "code_recall": code_r, "neuron_precision": neuron_at_r})
    return sc, neuron_p, floors


def _summary_of(sc: dict, neuron_p: torch.Tensor) -> dict:
    return {"mean_best_code_precision": float(sc["best_precision"].mean()),
            "mean_best_code_recall": float(sc["best_recall"].mean()),
            "mean_best_neuron_precision": float(neuron_p.mean()),
            "states_with_a_code": int((sc["best_precision"] > 0).sum()),
            "best_code_precision": sc["best_precision"].tolist(),
            "best_neuron_precision": neuron_p.tolist(),
            "best_code_recall": sc["best_recall"].tolist()}


def _steering_all(trained: dict, cb_name: str, sc: dict, fsm: TokFSM, a_tokens, a_states, pos: dict,
                  held_tokens, held_states, cfg: TokFSMConfig) -> dict:
    """Steering through every codebook of each codebook model (the MLP codes too where trained),
    with precise and frequent codes, replacing and adding, and the state-only protocol."""
    steering = {}
    next_digits = a_tokens[:, pos["next"]].reshape(-1)
    for sname in [n for n in ("codebook_attn", "codebook_attn_mlp") if n in trained] or [cb_name]:
        smodel = trained[sname]
        has_mlp_codes = any(site.endswith("mlp") for site in codebook_sites(smodel))
        read = _codes_at_positions(smodel, a_tokens, pos)  # one forward reads both positions
        if sname == cb_name and not has_mlp_codes:
            scodes = dict(sc)  # the analysis already read every codebook of this model
        else:
            scodes = {where: _state_codes(read[where], a_states, fsm.num_states, cfg.num_codes, min_recall=0.05,
                                          min_count=10)
                      for where in pos}
        # the next token's codes labelled by the state and the digit that follows it
        scodes["next_digit"] = _state_codes(read["next"], 10 * a_states + next_digits, 10 * fsm.num_states,
                                            cfg.num_codes, min_recall=0.05, min_count=10)
        unsteered: dict = {}  # the unsteered continuations, the same prompts in every run below
        runs = [(select, mode, "digit") for select in STEERING_CODES for mode in ("replace", "add")]
        runs.append(("frequent", "replace", "state"))  # the protocol before the digit-aware codes
        for select, mode, next_codes in runs:
            at_next = scodes["next_digit" if next_codes == "digit" else "next"]["codebooks"]
            r = _steering(smodel, fsm, scodes["state"]["codebooks"], at_next, held_tokens, held_states,
                          prompts_per_state=cfg.prompts_per_state, prompt_states=cfg.prompt_states,
                          min_precision=0.5, mode=mode, strength=1.0, seed=cfg.seed, select=select,
                          next_codes=next_codes, unsteered=unsteered)
            by_state = ", next codes by state only" if next_codes == "state" else ""
            steering[f"{sname}: {mode}, {select} codes{by_state}"] = dict(r, model=sname)
    return steering


PAPER_PROTOCOL_SEQUENCES = 256  # every token of these counts: 256 x 128 tokens x 1,024 block outputs = 134 MB


def _analyse(trained: dict, models: dict, fsm: TokFSM, held_tokens, held_states, cfg: TokFSMConfig,
             out: Path) -> tuple[dict, list[str]]:
    """Codes vs neurons, recall floors, steering and norm ratios on the analysis sequences; the
    plots. -> (analysis, PNG names); empty when no codebook model ran."""
    from ..report.tokfsm_report import tokfsm_plots

    cb_name = "codebook_attn" if "codebook_attn" in trained else next((n for n in trained if n != "original"), None)
    if cb_name is None:
        return {}, []
    cbm = trained[cb_name]
    a_tokens = held_tokens[:cfg.analysis_sequences]
    usage = {}
    for n in (n for n in trained if n != "original"):
        _dead_fraction(trained[n], a_tokens)
        usage[n] = _usage(trained[n])
    pos_state = TokFSM.state_positions(a_tokens.shape[1])  # second digit of state j
    pos = {"state": pos_state, "next": pos_state + 1}  # next: the first digit of state j + 1
    a_states = held_states[:cfg.analysis_sequences, : len(pos_state)].reshape(-1)
    sc, neuron_p, floors = _codes_vs_neurons(cbm, trained["original"], a_tokens, a_states, pos, fsm, cfg.num_codes)
    analysis = {"model": cb_name, "recall_floors": floors,
                "num_codebooks": sum(layer.num_codebooks for site, layer in codebook_sites(cbm).items()
                                     if site.endswith("attn_heads"))}
    for where in pos:
        analysis[where] = _summary_of(sc[where], neuron_p[where])
    analysis["steering"] = _steering_all(trained, cb_name, sc, fsm, a_tokens, a_states, pos, held_tokens,
                                         held_states, cfg)
    analysis["norm_ratio_learned_scale"] = models[cb_name]["dead_codes"]["norm_ratio"]
    analysis["norm_ratio_without_scale"] = _norm_ratio_without_scale(cbm, held_tokens[:64])
    if "original" in trained:  # the paper's protocol: every token counts, block outputs as neurons
        n = min(len(a_tokens), PAPER_PROTOCOL_SEQUENCES)
        analysis["paper_protocol"] = paper_codes_vs_neurons(trained, a_tokens[:n], held_states[:n], fsm.num_states,
                                                            cfg.num_codes)
    plots = tokfsm_plots(out, {"models": models}, sc["state"]["best_precision"], neuron_p["state"],
                         sc["state"]["best_recall"], usage)
    return analysis, plots


# ------------------------------------------------------------------------------- the study
def _run_config(cfg: TokFSMConfig) -> dict:
    """The config as metrics.json records it (the settings, the threads, the model in words)."""
    c = cfg.to_dict()
    c.pop("reuse")
    c["threads"] = torch.get_num_threads()
    c["model"] = (f"GPT-NeoX hidden {cfg.hidden}, intermediate {cfg.intermediate}, {cfg.layers} layers, "
                  f"{cfg.heads} heads")
    return c


def _check_reuse(cfg: TokFSMConfig, out: Path) -> None:
    if cfg.reuse and not any((out / "models" / f"{name}.safetensors").exists() for name in cfg.models):
        raise FileNotFoundError(f"reuse: no trained models in {out / 'models'}; expected the folder an earlier "
                                "run wrote (run once without reuse)")


def run(config: TokFSMConfig, out="runs/codebook-tokfsm", progress: bool | None = True) -> TokFSMResults:
    """Train the TokFSM models, compute every metric, write ``report.md``, ``metrics.json`` and
    PNGs into ``out``; return the results. Trained weights are saved to
    ``out/models/<model>.safetensors`` (with the training loss and config in ``<model>.json``);
    ``metrics.json`` is rewritten as each model finishes."""
    out = Path(out)
    prepare_out(out, create=False)  # before looking for saved models in it; _run creates it
    _check_reuse(config, out)
    threads = config.threads if config.threads is not None else (1 if config.device == "cpu" else None)
    with fixed_threads(threads):
        return _run(config, out, progress)


def _run(cfg: TokFSMConfig, out: Path, progress) -> TokFSMResults:
    from ..report.tokfsm_report import tokfsm_markdown

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    fsm = TokFSM(num_states=cfg.num_states, num_successors=cfg.num_successors, seed=cfg.seed)
    held_tokens, held_states = fsm.sample(max(cfg.eval_sequences, cfg.analysis_sequences), length=cfg.length,
                                          max_tokens=2 * cfg.length,
                                          generator=torch.Generator().manual_seed(cfg.seed + 10_000))
    results = TokFSMResults(config=_run_config(cfg), models={})
    trained: dict[str, nn.Module] = {}
    correct: dict[str, torch.Tensor] = {}  # per held-out sequence: continued with a valid successor
    for name in cfg.models:
        t = time.time()
        model = _build(name, cfg)
        losses, reused = _train_or_reuse(name, model, fsm, cfg, results.config, out, progress)
        model.to(cfg.device).eval()
        correct[name] = transition_accuracy(model, fsm, held_tokens[:cfg.eval_sequences],
                                            held_states[:cfg.eval_sequences], cfg.seed, per_sequence=True)
        m = _model_metrics(name, model, correct[name], losses, time.time() - t, reused, held_tokens, cfg)
        # the public protocol beside ours: 100 sampled continuations of BOS, every transition scored
        m["sampled_transition"] = sampled_transition_accuracy(model, fsm, 100, held_tokens.shape[1], cfg.seed)
        results.models[name] = m
        trained[name] = model
        phase(f"{name}: transition accuracy {m['transition_accuracy']:.3f}, {m['train_seconds']:.0f} s", progress)
        write_json(results, out / "metrics.json", indent=1)  # partial: what finished so far
    _gaps_to_original(results.models, correct)
    phase("tokfsm: analysing codes, neurons and steering", progress)
    results.analysis, results.plots = _analyse(trained, results.models, fsm, held_tokens, held_states, cfg, out)
    results.seconds = time.time() - t0
    metrics = results.to_dict()
    if not metrics["analysis"]:  # metrics.json as before: no analysis without a codebook model
        del metrics["analysis"], metrics["plots"]
    write_json(metrics, out / "metrics.json", indent=1)
    (out / "report.md").write_text(tokfsm_markdown(metrics))
    browse = "codebook_attn" if "codebook_attn" in trained else next((n for n in trained if n != "original"), None)
    if browse is not None:  # the code browser of report.html: the analysis model on the analysis sequences
        a = slice(0, cfg.analysis_sequences)
        write_json(_code_browser(trained[browse], held_tokens[a], held_states[a], cfg), out / "codes.json", None)
    build_html(out)
    return results


def _code_browser(model: nn.Module, tokens: torch.Tensor, states: torch.Tensor, cfg: TokFSMConfig) -> dict:
    """Every codebook's records for report.html (``codes.json``): usage, contexts, precision and
    recall against the state at its second digit (the analysis's labels)."""
    n, T = tokens.shape
    ids = {site: v.reshape(n, T, *v.shape[1:]) for site, v in _codes_at(model, tokens, torch.arange(T)).items()}
    pos = TokFSM.state_positions(T)
    labels = torch.full((n, T), -1, dtype=torch.long)
    labels[:, pos] = states[:, : len(pos)]
    text = [["⏎" if t == EOT else (f" {t}" if p % 2 else str(t)) for p, t in enumerate(row)] for row in tokens.tolist()]
    codes = code_records(ids, cfg.num_codes, text, labels=labels, generator=torch.Generator().manual_seed(cfg.seed))
    return {"label_name": "state", "tokens_name": f"{n} held-out sequences", "codes": codes,
            "description": f"Codes of every codebook on {n} held-out sequences ({n * T:,} tokens): per codebook "
                           "its 24 most used codes and its 24 most precise codes of precision >= 50% for a state "
                           "(>= 10 labelled uses). Precision / recall: against the state at its second digit, as "
                           "in the report. Contexts: random tokens where the code is chosen (highlighted), each "
                           "state written as two digits, ⏎ the start token."}
