"""wrap_codebook / unwrap / record_codes / steer on Hugging Face transformers built from configs."""

import pytest
import torch
from torch import nn

from bottlenecks.codebook import (
    GroupCodebookLayer,
    bypass_codebooks,
    codebook_loss,
    codebook_sites,
    record_codes,
    steer,
    unwrap,
    wrap_codebook,
)
from bottlenecks.codebook.tokfsm import TokFSM
from bottlenecks.studies.tokfsm import next_states, tokfsm_model, train_lm

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def _tiny(family):
    torch.manual_seed(0)
    if family == "gpt_neox":
        cfg = transformers.GPTNeoXConfig(vocab_size=11, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, max_position_embeddings=32)
        return transformers.GPTNeoXForCausalLM(cfg).eval()
    if family == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=11, n_embd=32, n_layer=2, n_head=4, n_positions=32)
        return transformers.GPT2LMHeadModel(cfg).eval()
    cfg = transformers.LlamaConfig(vocab_size=11, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("family", ["gpt_neox", "gpt2", "llama"])
def test_wrap_trains_records_and_unwrap_restores_bit_identical_outputs(family):
    model = _tiny(family)
    x = torch.randint(0, 10, (3, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x).logits.clone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrap = wrap_codebook(model, ("attn_heads", "mlp"), layers=[1], num_codes=16, k=2, seed=0)
    assert sorted(wrap.layers) == ["layers.1.attn_heads", "layers.1.mlp"]
    assert isinstance(wrap.layers["layers.1.attn_heads"], GroupCodebookLayer)
    assert wrap.layers["layers.1.attn_heads"].num_codebooks == 4 and wrap.layers["layers.1.attn_heads"].num_groups == 4
    model.train()
    out = model(x, labels=x)
    (out.loss + wrap.loss()).backward()
    assert wrap.layers["layers.1.mlp"].codes.grad is not None  # the codes are model parameters
    model.eval()
    with torch.no_grad():
        coded = model(x).logits
        with record_codes(model) as rec:
            model(x)
    assert not torch.equal(coded, ref)  # the bottleneck changes the computation
    assert rec["layers.1.attn_heads"].shape == (3, 12, 4, 2) and rec["layers.1.mlp"].shape == (3, 12, 2)
    assert int(rec["layers.1.mlp"].max()) < 16
    unwrap(model)
    assert codebook_sites(model) == {}
    assert not any("codebook" in n for n, _ in model.named_modules())
    assert model.state_dict().keys() == before.keys()
    with torch.no_grad():
        assert torch.equal(model(x).logits, ref)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_wrap_a_bfloat16_model_keeps_float32_codes_and_bfloat16_activations(family):
    model = _tiny(family).to(torch.bfloat16).train()
    wrap = wrap_codebook(model, ("attn_heads", "mlp"), num_codes=16, k=2, seed=0)
    x = torch.randint(0, 10, (3, 12), generator=torch.Generator().manual_seed(0))
    out = model(x, labels=x)
    assert out.logits.dtype == torch.bfloat16
    (out.loss + wrap.loss()).backward()
    mlp = wrap.layers["layers.1.mlp"]
    assert mlp.codes.dtype == torch.float32 and mlp.codes.grad is not None
    assert all(p.grad is not None for p in model.lm_head.parameters() if p.requires_grad)
    model.eval()
    with record_codes(model) as rec:
        model(x)
    assert rec["layers.1.mlp"].shape == (3, 12, 2)


def test_bypass_runs_the_plain_model_and_warmup_starts_the_codebooks_late():
    model = _tiny("gpt_neox")
    x = torch.randint(0, 10, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).logits.clone()
    with pytest.raises(ValueError, match="no codebooks"):
        with bypass_codebooks(model):
            pass
    wrap = wrap_codebook(model, ("attn_heads", "mlp"), num_codes=16, seed=0)
    layer = wrap.layers["layers.0.mlp"]
    model.train()
    with bypass_codebooks(model):
        out = model(x, labels=x)
        assert float(codebook_loss(model)) == 0.0
    assert not bool(layer.initialized) and int(layer.steps) == 0 and int(layer.counts.sum()) == 0
    model.eval()
    with torch.no_grad(), bypass_codebooks(model):
        assert torch.equal(model(x).logits, ref)  # bit-identical to the model without codebooks
        assert torch.equal(out.logits.detach(), ref)
    with torch.no_grad():
        assert not torch.equal(model(x).logits, ref)  # outside the block the codebooks act again

    # train_lm: the first codebook_warmup steps train the bare model, then the codes are fitted
    fsm = TokFSM(seed=0)
    net = tokfsm_model(0, hidden=16, intermediate=32, layers=1, heads=2, max_tokens=16)
    wrap = wrap_codebook(net, "mlp", num_codes=8, seed=0)
    layer = wrap.layers["layers.0.mlp"]
    first = net.gpt_neox.layers[0].mlp.dense_h_to_4h.weight.detach().clone()
    train_lm(net, fsm, steps=3, batch_size=2, length=8, codebook_warmup=3, progress=False)
    assert not bool(layer.initialized) and int(layer.steps) == 0
    assert not torch.equal(net.gpt_neox.layers[0].mlp.dense_h_to_4h.weight, first)  # the model did train
    codes = layer.codes.detach().clone()
    train_lm(net, fsm, steps=4, batch_size=2, length=8, codebook_warmup=2, progress=False)
    assert bool(layer.initialized) and int(layer.steps) == 2  # two steps with codebooks
    assert not torch.equal(layer.codes.detach(), codes)  # fitted to the warmed-up activations
    with pytest.raises(ValueError, match="codebook_warmup"):
        train_lm(net, fsm, steps=2, batch_size=2, length=8, codebook_warmup=3, progress=False)


def test_attn_heads_codes_are_the_per_head_search_of_the_projection_input():
    model = _tiny("gpt_neox")
    got = {}
    dense = model.gpt_neox.layers[0].attention.dense
    h = dense.register_forward_pre_hook(lambda m, a: got.setdefault("x", a[0].detach().clone()))
    wrap = wrap_codebook(model, "attn_heads", layers=[0], num_codes=8, k=1)
    x = torch.randint(0, 10, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), record_codes(model) as rec:
        model(x)
    h.remove()  # registered first, so it saw the input before the codebook
    layer = wrap.layers["layers.0.attn_heads"]
    z = got["x"].reshape(2, 6, 4, 8)
    sims = torch.einsum("btgd,gkd->btgk", torch.nn.functional.normalize(z, dim=-1),
                        torch.nn.functional.normalize(layer.codes.detach(), dim=-1))
    assert torch.equal(rec["layers.0.attn_heads"][..., 0], sims.argmax(-1))


def test_pattern_sites_on_any_module():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3))
    x = torch.randn(7, 5)
    ref = net(x).detach().clone()
    wrap = wrap_codebook(net, r"0", num_codes=6, k=1, num_codebooks=3, metric="l2")
    assert list(wrap.layers) == ["0"] and wrap.layers["0"].num_codebooks == 3
    net.train()
    net(x)  # initialises the codes from this batch
    with record_codes(net) as rec:
        net(x)
    assert rec["0"].shape == (7, 3, 1)
    unwrap(net)
    assert torch.equal(net(x), ref)


def test_clear_errors():
    model = _tiny("gpt2")
    with pytest.raises(ValueError, match="unknown site 'ffn'"):
        wrap_codebook(model, "ffn")
    with pytest.raises(ValueError, match=r"layers \[5\] out of range: the model has 2 layers"):
        wrap_codebook(model, "mlp", layers=[5])
    with pytest.raises(ValueError, match="k=20 is larger than num_codes=16"):
        wrap_codebook(model, "mlp", num_codes=16, k=20)
    with pytest.raises(ValueError, match="needs a GPT-2, GPT-NeoX or Llama"):
        wrap_codebook(nn.Sequential(nn.Linear(2, 2)), "mlp")
    with pytest.raises(ValueError, match="no codebooks"):
        with record_codes(model):
            pass
    wrap_codebook(model, "mlp", layers=[0], num_codes=4)
    with pytest.raises(ValueError, match="already has a codebook"):
        wrap_codebook(model, "mlp", layers=[0], num_codes=4)
    with pytest.raises(ValueError, match=r"unknown codebook sites \['layers.1.mlp'\]"):
        with steer(model, {"layers.1.mlp": [0]}):
            pass
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., dim=32\)"):
        model.transformer.h[0].mlp.codebook(torch.randn(2, 31))


def test_steering_moves_generations_toward_the_target_state(tiny_tokfsm, one_thread):
    fsm, model, tokens, states = tiny_tokfsm.fsm, tiny_tokfsm.model, tiny_tokfsm.tokens, tiny_tokfsm.states
    P = 9  # prompts: BOS + 4 states; the next state's second digit is read at position P (its first digit)
    prompts, current = tokens[:, :P], states[:, 3]
    base = next_states(model, prompts)
    assert float(fsm.is_valid(current, base).float().mean()) > 0.7  # the model learnt the machine
    # the codes of state s: per head, the code chosen most often at the first digit of s's successor,
    # where the head carries the previous state forward
    with torch.no_grad(), record_codes(model) as rec:
        model(tokens)
    pos = torch.arange(3, 16, 2)
    labels = states[:, : len(pos)].reshape(-1)
    ids = rec["layers.0.attn_heads"][:, pos].reshape(-1, 2)
    codes, precision = {}, {}
    for s in range(10):
        codes[s] = {g: [int(ids[labels == s, g].mode().values)] for g in range(2)}
        precision[s] = min(float((labels[ids[:, g] == codes[s][g][0]] == s).float().mean()) for g in range(2))
    # the states whose codes are specific to them (precision >= 0.5 in both heads): a short training
    # run merges some states' codes, and a code shared by several states cannot steer toward one
    targets = [s for s in sorted(precision, key=precision.get, reverse=True) if precision[s] >= 0.5][:3]
    assert len(targets) >= 2, precision
    gains = []
    for target in targets:
        spec = {"layers.0.attn_heads": codes[target]}
        rows = current != target
        with steer(model, spec, strength=1.0, mode="replace", positions=[P]):
            got = next_states(model, prompts[rows])
        target_t = torch.full_like(got, target)
        steered = float(fsm.is_valid(target_t, got).float().mean())
        unsteered = float(fsm.is_valid(target_t, base[rows]).float().mean())
        gains.append(steered - unsteered)
    assert min(gains) > 0.4, gains
    # outside the block the model is unsteered again
    assert torch.equal(next_states(model, prompts), base)
