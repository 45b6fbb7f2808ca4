import pytest
import torch

from bottlenecks.codebook.analysis import best_codes, code_label_counts, precision_recall
from bottlenecks.codebook.tokfsm import TokFSM
from bottlenecks.studies.tokfsm_analysis import _codes_at, _spec, _state_codes, _steering


def _codebook(site, group, ids, states, num_codes=6, num_states=3):
    counts = code_label_counts(ids, states, num_codes, num_states)
    prec, rec = precision_recall(counts)
    code, p, r = best_codes(prec, rec, counts, min_recall=0.05, min_count=1)
    return {"site": site, "group": group, "code": code, "precision": p, "recall": r, "counts": counts}


def test_steering_codes_precise_vs_frequent():
    states = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    # head 0: state 0 mostly writes code 1, which state 1 also uses; code 2 is rare but only on state 0
    head0 = torch.tensor([1, 1, 1, 2, 1, 1, 3, 4, 4, 4])
    # head 1: no code is precise for state 0 (code 5: half of its uses are on state 0)
    head1 = torch.tensor([5, 5, 5, 5, 5, 5, 5, 5, 0, 0])
    per_cb = [_codebook("attn", 0, head0, states), _codebook("attn", 1, head1, states)]
    assert _spec(per_cb, 0, 0.6, "precise") == {"attn": {0: [2]}}
    assert _spec(per_cb, 0, 0.5, "frequent") == {"attn": {0: [1], 1: [5]}}
    assert _spec(per_cb, 2, 0.5, "frequent") == {"attn": {0: [4], 1: [0]}}


def test_steering_toward_each_state_with_digit_aware_next_codes(tiny_tokfsm, one_thread):
    fsm, model, tokens, states = tiny_tokfsm.fsm, tiny_tokfsm.model, tiny_tokfsm.tokens, tiny_tokfsm.states
    pos_state = TokFSM.state_positions(16)
    labels = states[:, : len(pos_state)].reshape(-1)
    digits = tokens[:, pos_state + 1].reshape(-1)  # the first digit of the next state
    at_state = _state_codes(_codes_at(model, tokens, pos_state), labels, 10, 16, min_recall=0.05, min_count=5)
    at_next = _state_codes(_codes_at(model, tokens, pos_state + 1), 10 * labels + digits, 100, 16,
                           min_recall=0.05, min_count=5)
    kwargs = dict(prompts_per_state=10, prompt_states=4, min_precision=0.5, mode="replace", strength=1.0, seed=0,
                  select="frequent")
    r = _steering(model, fsm, at_state["codebooks"], at_next["codebooks"], tokens, states, **kwargs)
    assert r["next_codes"] == "digit" and len(r["per_state"]) == 10
    # unsteered, prompts rarely continue with a successor of s; steered, most states are reached
    assert r["baseline_mean"] < 0.35 and r["mean_success"] > r["baseline_mean"] + 0.5
    assert r["states_steered"] >= 0.7
    assert 2 <= r["mean_codes_used"] <= 4  # one code per head at each of the two positions
    again = _steering(model, fsm, at_state["codebooks"], at_next["codebooks"], tokens, states, **kwargs)
    assert again["per_state"] == r["per_state"]  # same seed, same prompts, same result
    with pytest.raises(ValueError, match="next_codes"):
        _steering(model, fsm, at_state["codebooks"], at_next["codebooks"], tokens, states,
                  **dict(kwargs, next_codes="token"))


def test_transition_accuracy_per_sequence_pairs_models_on_the_same_prompts(tiny_tokfsm, one_thread):
    from bottlenecks.studies.tokfsm_analysis import _cuts, next_states, transition_accuracy

    fsm, model, tokens, states = tiny_tokfsm.fsm, tiny_tokfsm.model, tiny_tokfsm.tokens, tiny_tokfsm.states
    ok = transition_accuracy(model, fsm, tokens, states, seed=3, per_sequence=True)
    assert ok.dtype == torch.bool and ok.shape == (len(tokens),)
    assert transition_accuracy(model, fsm, tokens, states, seed=3) == float(ok.float().mean())
    assert 0.6 < float(ok.float().mean()) < 1.0  # the tiny model learnt its machine, not perfectly
    # each entry belongs to its own sequence: redo a few, one prompt at a time, cut where the seed cuts
    cuts = _cuts(len(tokens), (tokens.shape[1] - 1) // 2, torch.Generator().manual_seed(3))
    for i in [int(torch.nonzero(ok)[0]), int(torch.nonzero(~ok)[0]), 7, 150]:
        j = int(cuts[i])
        nxt = next_states(model, tokens[i: i + 1, : 1 + 2 * j])
        assert bool(fsm.is_valid(states[i: i + 1, j - 1], nxt)[0]) == bool(ok[i])


def test_cached_continuation_and_one_pass_readings_match_the_plain_ones(tiny_tokfsm, one_thread):
    from bottlenecks.studies.tokfsm_analysis import (
        _code_vs_neuron,
        _code_vs_neuron_floors,
        _codes_at_positions,
        _neurons_at,
        _neurons_at_positions,
        _next_states_cached,
        next_states,
    )

    model, tokens, states = tiny_tokfsm.model, tiny_tokfsm.tokens, tiny_tokfsm.states
    for j in (1, 3, 6):  # the greedy states of a cached continuation are the re-reading ones
        prompts = tokens[:, : 1 + 2 * j]
        assert torch.equal(_next_states_cached(model, prompts), next_states(model, prompts))
    pos_state = TokFSM.state_positions(16)
    pos = {"state": pos_state, "next": pos_state + 1}
    codes = _codes_at_positions(model, tokens, pos, batch=128)
    acts = _neurons_at_positions(model, tokens, pos, batch=128)
    labels = states[:, : len(pos_state)].reshape(-1)
    for where, p in pos.items():  # one forward per batch reads the same ids and activations as one per position
        assert all(torch.equal(codes[where][s], v) for s, v in _codes_at(model, tokens, p).items())
        assert torch.equal(acts[where], _neurons_at(model, tokens, p, batch=128))
        floors = _code_vs_neuron_floors(codes[where], acts[where], labels, 10, 16, (0.05, 0.25, 0.5))
        for floor, (best, neuron) in zip((0.05, 0.25, 0.5), floors, strict=True):
            one_best, one_neuron = _code_vs_neuron(codes[where], acts[where], labels, 10, 16, floor)
            assert torch.equal(best["best_precision"], one_best["best_precision"])
            assert torch.equal(neuron, one_neuron) and bool((neuron > 0).any())


TINY = dict(num_states=10, num_successors=2, length=8, hidden=32, intermediate=64, layers=1, heads=2,
            prompt_states=4, steps=40, batch_size=16, lr=1e-2, num_codes=16, eval_sequences=64,
            analysis_sequences=64, prompts_per_state=2, models=("original", "codebook_attn"))


@pytest.mark.slow
def test_a_tiny_machine_and_model_run_through_the_config(tmp_path):
    from bottlenecks.studies.tokfsm import TokFSMConfig, TokFSMResults, run

    cfg = TokFSMConfig(**TINY)
    res = run(cfg, out=tmp_path, progress=False)
    assert res.config["num_states"] == 10 and res.config["model"].startswith("GPT-NeoX hidden 32")
    assert set(res.models) == {"original", "codebook_attn"}
    assert all(0.0 <= m["transition_accuracy"] <= 1.0 and len(m["train_loss"]) == 40 for m in res.models.values())
    assert len(res.analysis["state"]["best_code_precision"]) == 10  # one per state of the tiny machine
    assert all(0.0 <= m["sampled_transition"]["transition_accuracy"] <= 1.0 for m in res.models.values())
    assert list(res.analysis["paper_protocol"]) == ["codebook_attn: attention-head codes"]
    assert "The paper's protocol" in (tmp_path / "report.md").read_text()
    assert TokFSMResults.from_json(tmp_path / "metrics.json") == res
    assert "/ 10 |" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match=r"num_states: expected an integer in \[1, 100\]"):
        cfg.replace(num_states=101)
    with pytest.raises(ValueError, match="prompt_states"):
        cfg.replace(prompt_states=8)
    with pytest.raises(ValueError, match="did you mean 'num_codes'"):
        TokFSMConfig.from_dict({"num_code": 8})
    with pytest.raises(FileNotFoundError, match="reuse: no trained models"):
        run(cfg.replace(reuse=True), out=tmp_path / "empty", progress=False)


def test_sampled_transition_accuracy_the_public_way(tiny_tokfsm, one_thread):
    from bottlenecks.codebook.tokfsm import EOT
    from bottlenecks.studies.tokfsm_analysis import sampled_transition_accuracy

    fsm, model = tiny_tokfsm.fsm, tiny_tokfsm.model
    got = sampled_transition_accuracy(model, fsm, num_sequences=20, length=16, seed=5)
    # the same draws without the key/value cache: the whole sequence re-read at every step
    g = torch.Generator().manual_seed(5)
    x = torch.full((20, 1), EOT)
    with torch.no_grad():
        for _ in range(15):
            logits = model(input_ids=x).logits[:, -1].float()
            logits[:, EOT] = -float("inf")
            x = torch.cat([x, torch.multinomial(torch.softmax(logits, -1), 1, generator=g)], 1)
    s = x[:, 1:15:2] * 10 + x[:, 2:16:2]  # 7 states a sequence, 6 transitions
    ok = (s[:, :-1] < 10) & fsm.is_valid(s[:, :-1].clamp(max=9), s[:, 1:])  # a state >= 10 is no state here
    assert got["transitions"] == 20 * 6
    assert got["transition_accuracy"] == pytest.approx(float(ok.float().mean()))
    assert got["first_transition_accuracy"] == pytest.approx(float(ok[:, 0].float().mean()))
    assert 0.5 < got["transition_accuracy"] <= 1.0


def test_paper_protocol_on_the_tiny_model(tiny_tokfsm, one_thread):
    from bottlenecks.studies.tokfsm_analysis import paper_codes_vs_neurons

    tokens, states = tiny_tokfsm.tokens[:40], tiny_tokfsm.states[:40]
    res = paper_codes_vs_neurons({"original": tiny_tokfsm.model, "codebook_attn": tiny_tokfsm.model}, tokens, states,
                                 10, 16)
    (row,) = res.values()
    assert list(res) == ["codebook_attn: attention-head codes"]
    assert row["tokens"] == 40 * 16 and row["neurons"] == 2 * 32  # one layer: attention + MLP outputs
    assert 0 < row["states_with_a_code"] <= 10
    assert 0 < row["mean_best_code_precision"] <= 1 and 0 < row["mean_best_neuron_precision"] <= 1


def _seed_metrics(seed, acc, gap, sampled, code_p, neuron_p):
    row = {"mean_best_code_precision": code_p, "mean_best_code_recall": 0.1, "mean_best_neuron_precision": neuron_p,
           "tokens": 1000, "neurons": 64}
    ours = {"mean_best_code_precision": 0.9, "mean_best_code_recall": 0.2, "mean_best_neuron_precision": 0.8}
    return {"config": {"seed": seed, "steps": 10, "batch_size": 4, "eval_sequences": 8, "analysis_sequences": 8,
                       "models": ["original", "codebook_attn"]},
            "models": {"original": {"transition_accuracy": acc[0],
                                    "sampled_transition": {"transition_accuracy": sampled}},
                       "codebook_attn": {"transition_accuracy": acc[1], "gap_to_original": {"points": gap},
                                         "sampled_transition": {"transition_accuracy": sampled - 0.1}}},
            "analysis": {"model": "codebook_attn", "state": ours, "next": ours,
                         "paper_protocol": {"codebook_attn: attention-head codes": row}}}


def test_seeds_report_means_stds_and_targets():
    from bottlenecks.report.tokfsm_report import tokfsm_seeds_markdown

    runs = [_seed_metrics(0, (0.9, 0.88), 2.0, 0.5, 0.95, 0.70), _seed_metrics(1, (0.8, 0.79), 1.0, 0.7, 0.85, 0.70)]
    md = tokfsm_seeds_markdown(runs, note="a note")
    assert "a note" in md and "2 seed(s) (0, 1)" in md
    assert "| original | 85.0 ± 7.1 | - | 60.0 ± 14.1 | 96.8% |" in md  # std over seeds: |0.9 - 0.8| / sqrt(2)
    assert "| codebook_attn | 83.5 ± 6.4 | -1.5 ± 0.7 | 50.0 ± 14.1 | - |" in md
    assert "| paper | codebook_attn: attention-head codes | 90.0 ± 7.1 | 10.0 ± 0.0 | 70.0 ± 0.0 | 20.0 ± 7.1 |" in md
    assert "1.5 points below (2.0, 1.0) | yes |" in md  # within 2 points on the mean
    assert "+20.0 points (+25.0, +15.0) | yes |" in md
    runs[1]["analysis"]["paper_protocol"]["codebook_attn: attention-head codes"]["mean_best_neuron_precision"] = 0.8
    assert "+15.0 points (+25.0, +5.0) | no |" in tokfsm_seeds_markdown(runs)
    runs[1]["config"]["steps"] = 11
    with pytest.raises(ValueError, match="steps"):
        tokfsm_seeds_markdown(runs)
    with pytest.raises(ValueError, match="at least one seed"):
        tokfsm_seeds_markdown([])
