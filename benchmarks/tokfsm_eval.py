"""TokFSM evaluation: the study's evaluation pieces before and after issue 17's speed-up, timed side
by side on trained models, with their outputs compared (they must be equal).

    python benchmarks/tokfsm_eval.py --models runs/tokfsm/models     # weights saved by the study

Pieces (each: the earlier path, then the current one):
- transition accuracy: greedy two-token continuations re-reading the prompt (``next_states``) vs
  keys and values cached (``_next_states_cached``), on ``--eval`` held-out sequences;
- codes vs neurons at the state and next token with the recall floors: one forward per position
  and per model and one sort of the neurons per floor (``_codes_at``, ``_neurons_at``,
  ``_code_vs_neuron``) vs one forward per model and one sort per position (``_codes_vs_neurons``),
  on ``--analysis`` sequences;
- steering, two runs (precise and frequent codes, replace) with the unsteered continuations
  recomputed in each vs computed once.

Time: one thread, min and median of ``--repeats`` calls (the first one's outputs compared). Writes
``benchmarks/results/tokfsm-eval.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def _timed(fn, repeats: int):
    """``repeats`` timed calls; the first call's output is the one compared."""
    out, times = None, []
    for i in range(repeats):
        t = time.perf_counter()
        got = fn()
        times.append(time.perf_counter() - t)
        out = got if i == 0 else out
    return out, times


def main(argv=None) -> dict:
    from bottlenecks.codebook.tokfsm import TokFSM
    from bottlenecks.studies import tokfsm as T
    from bottlenecks.studies import tokfsm_analysis as A

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", required=True, help="folder with original / codebook_attn .safetensors + .json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval", type=int, default=256, help="held-out sequences for transition accuracy")
    p.add_argument("--analysis", type=int, default=64, help="sequences for codes vs neurons and steering")
    p.add_argument("--prompts-per-state", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "tokfsm-eval"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    folder = Path(args.models)
    saved = json.loads((folder / "codebook_attn.json").read_text())["training"]
    cfg = T.TokFSMConfig(seed=args.seed, **{k: v for k, v in saved.items() if k != "seed"})
    trained = {}
    for name in ("original", "codebook_attn"):
        model = T._build(name, cfg)
        if not T._load_trained(model, folder / name, T._run_config(cfg),
                               T._ORIGINAL_KEYS if name == "original" else T._TRAINING_KEYS):
            raise FileNotFoundError(f"--models: no {name} trained with the settings in {folder}/codebook_attn.json")
        trained[name] = model.eval()
    fsm = TokFSM(num_states=cfg.num_states, num_successors=cfg.num_successors, seed=cfg.seed)
    tokens, states = fsm.sample(max(args.eval, args.analysis), length=cfg.length, max_tokens=2 * cfg.length,
                                generator=torch.Generator().manual_seed(cfg.seed + 10_000))
    rows = []

    # transition accuracy
    ev_t, ev_s = tokens[:args.eval], states[:args.eval]
    def accuracy(step):
        cuts = A._cuts(len(ev_t), (ev_t.shape[1] - 1) // 2, torch.Generator().manual_seed(cfg.seed))
        ok = torch.zeros(len(ev_t), dtype=torch.bool)
        for j in cuts.unique().tolist():
            r = torch.nonzero(cuts == j).flatten()
            ok[r] = fsm.is_valid(ev_s[r, j - 1], step(trained["codebook_attn"], ev_t[r, : 1 + 2 * j]))
        return ok
    before, t_before = _timed(lambda: accuracy(A.next_states), args.repeats)
    after, t_after = _timed(lambda: accuracy(A._next_states_cached), args.repeats)
    rows.append(("transition accuracy (codebook_attn)", t_before, t_after, bool(torch.equal(before, after))))
    print(rows[-1][0], [round(x, 2) for x in rows[-1][1]], [round(x, 2) for x in rows[-1][2]], rows[-1][3], flush=True)

    # codes vs neurons, recall floors
    a_t = tokens[:args.analysis]
    pos_state = TokFSM.state_positions(a_t.shape[1])
    pos = {"state": pos_state, "next": pos_state + 1}
    a_s = states[:args.analysis, : len(pos_state)].reshape(-1)
    def earlier():
        out = {}
        for where, q in pos.items():
            codes = {s: v for s, v in A._codes_at(trained["codebook_attn"], a_t, q).items() if s.endswith("attn_heads")}
            acts = A._neurons_at(trained["original"], a_t, q)
            out[where] = [A._code_vs_neuron(codes, acts, a_s, fsm.num_states, cfg.num_codes, f)[1]
                          for f in (0.05, *A.RECALL_FLOORS)]
        return out
    def current():
        sc, neuron_p, floors = T._codes_vs_neurons(trained["codebook_attn"], trained["original"], a_t, a_s, pos, fsm,
                                                   cfg.num_codes)
        return neuron_p, floors
    before, t_before = _timed(earlier, args.repeats)
    (neuron_p, floors), t_after = _timed(current, args.repeats)
    same = all(torch.equal(before[w][0], neuron_p[w]) and
               [float(x[x > 0].mean()) if bool((x > 0).any()) else 0.0 for x in before[w][1:]] ==
               [f["neuron_precision"] for f in floors[w]] for w in pos)
    rows.append(("codes vs neurons + recall floors", t_before, t_after, same))
    print(rows[-1][0], [round(x, 2) for x in rows[-1][1]], [round(x, 2) for x in rows[-1][2]], rows[-1][3], flush=True)

    # steering: two runs on the same prompts
    read = A._codes_at_positions(trained["codebook_attn"], a_t, pos)
    at_state = A._state_codes(read["state"], a_s, fsm.num_states, cfg.num_codes, min_recall=0.05, min_count=10)
    digits = a_t[:, pos["next"]].reshape(-1)
    at_next = A._state_codes(read["next"], 10 * a_s + digits, 10 * fsm.num_states, cfg.num_codes, min_recall=0.05,
                             min_count=10)
    def steering(cache):
        unsteered = {} if cache else None
        return [A._steering(trained["codebook_attn"], fsm, at_state["codebooks"], at_next["codebooks"], a_t,
                            states[:args.analysis], prompts_per_state=args.prompts_per_state,
                            prompt_states=cfg.prompt_states, min_precision=0.5, mode="replace", strength=1.0,
                            seed=cfg.seed, select=select, unsteered=unsteered)
                for select in ("precise", "frequent")]
    before, t_before = _timed(lambda: steering(False), args.repeats)
    after, t_after = _timed(lambda: steering(True), args.repeats)
    rows.append(("steering, two runs", t_before, t_after, before == after))
    print(rows[-1][0], [round(x, 2) for x in rows[-1][1]], [round(x, 2) for x in rows[-1][2]], rows[-1][3], flush=True)

    result = {"models": str(folder), "training": saved, "eval": args.eval, "analysis": args.analysis,
              "prompts_per_state": args.prompts_per_state, "repeats": args.repeats, "threads": 1,
              "rows": [{"piece": r[0], "before_s": r[1], "after_s": r[2], "equal": r[3]} for r in rows]}
    lines = ["# TokFSM evaluation: before and after the speed-up", "",
             f"Models: `original` and `codebook_attn` trained {saved['steps']} steps of {saved['batch_size']} "
             f"(seed {cfg.seed}); {args.eval} held-out sequences for transition accuracy, {args.analysis} for codes "
             f"and steering ({args.prompts_per_state} prompts per state); one thread; min / median of "
             f"{args.repeats} runs. Equal: the outputs of both paths compared exactly.", "",
             "| piece | before, s (min / median) | after, s (min / median) | speed-up (min) | equal |",
             "|---|---|---|---|---|"]
    for name, tb, ta, eq in rows:
        lines.append(f"| {name} | {min(tb):.2f} / {statistics.median(tb):.2f} | {min(ta):.2f} / "
                     f"{statistics.median(ta):.2f} | {min(tb) / min(ta):.2f}x | {'yes' if eq else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
