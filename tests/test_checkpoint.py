"""One save layout for every model (save_pretrained / from_pretrained: model.safetensors +
config.json): exact round trips, the earlier layouts still load, bad files get a clear message."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from bottlenecks.checkpoint import CheckpointError, save_module
from bottlenecks.codebook import CodebookLayer, GroupCodebookLayer
from bottlenecks.concepts import ConceptBottleneckModel
from bottlenecks.concepts.energy import EnergyCBM
from bottlenecks.info import VariationalIB
from bottlenecks.kv import DiscreteKeyValueBottleneck, KeyValueClassifier

NAMES = ["c0", "c1", "c2", "c3"]


def blobs(n=200, dim=16, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    return centers[y] + torch.randn(n, dim, generator=g), y


def dkvb(**kw):
    args = dict(dim_in=16, num_codebooks=4, keys_per_codebook=16, dim_key=4, dim_value=4)
    return DiscreteKeyValueBottleneck(**{**args, **kw})


def concept_problem(n, seed):
    rng = np.random.default_rng(seed)
    A = np.random.default_rng(123).normal(size=(4, 8)) * 2.0
    C = rng.integers(0, 2, size=(n, 4))
    return C @ A + rng.normal(0, 0.3, size=(n, 8)), C, 2 * C[:, 0] + C[:, 1]


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("projection", ["random", "chunk", "learned"])
def test_dkvb_round_trip_is_exact_into_a_missing_folder(tmp_path, projection):
    x, y = blobs()
    b = dkvb(projection=projection, dim_key=None if projection == "chunk" else 4, topk=2, seed=3)
    b.fit_keys(x).freeze_keys()
    KeyValueClassifier(None, b).fit(x, y)
    b.mask_untrained = False
    folder = tmp_path / "not" / "yet" / "there"
    assert b.save_pretrained(folder) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    c = DiscreteKeyValueBottleneck.from_pretrained(folder)
    same_state(b, c)
    assert c.config() == b.config() and c.mask_untrained is False and c.training == b.training
    assert [n for n, _ in c.named_parameters()] == [n for n, _ in b.named_parameters()]
    b.eval(), c.eval()
    assert torch.equal(b(x)[0], c(x)[0])
    # and it trains on from the same state
    KeyValueClassifier(None, b).fit(x, y, seed=1), KeyValueClassifier(None, c).fit(x, y, seed=1)
    assert torch.equal(b.values, c.values)


@pytest.mark.parametrize("decoder", ["mean", "linear", "mlp"])
def test_key_value_classifier_round_trip_keeps_its_decoder(tmp_path, decoder):
    x, y = blobs()
    m = KeyValueClassifier(None, dkvb().fit_keys(x).freeze_keys(), decoder=decoder, hidden=8).fit(x, y, epochs=2)
    m.eval()
    m.save_pretrained(tmp_path / "kv")
    r = KeyValueClassifier.from_pretrained(tmp_path / "kv")
    same_state(m, r)
    assert r.decoder_kind == decoder and r.hidden == 8 and not r.training
    assert torch.equal(r(x), m(x)) and torch.equal(r.predict(x), m.predict(x))


def test_key_value_classifier_with_an_encoder_needs_it_again(tmp_path):
    x, y = blobs()
    encoder = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Tanh())
    m = KeyValueClassifier(encoder, dkvb().fit_keys(torch.tanh(x)).freeze_keys()).fit(x, y)
    m.save_pretrained(tmp_path / "kv")
    assert not any(k.startswith("encoder.") for k in load_file(str(tmp_path / "kv" / "model.safetensors")))
    with pytest.raises(ValueError, match=r"saved with an encoder \(Sequential\).*pass encoder="):
        KeyValueClassifier.from_pretrained(tmp_path / "kv")
    r = KeyValueClassifier.from_pretrained(tmp_path / "kv", encoder=encoder)
    assert torch.equal(r.predict(x), m.predict(x))


@pytest.mark.parametrize("cls", [CodebookLayer, GroupCodebookLayer])
def test_codebook_layers_round_trip_exactly(tmp_path, cls):
    layer = CodebookLayer(8, 6, k=2, seed=2) if cls is CodebookLayer else GroupCodebookLayer(8, 2, 6, k=2, seed=2)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(0))
    layer.train()(x)
    layer.track_stats = False
    layer.save_pretrained(tmp_path / "cb")
    r = cls.from_pretrained(tmp_path / "cb")
    assert type(r) is cls and r.config() == layer.config() and r.track_stats is False
    same_state(layer, r)
    assert torch.equal(r._generator.get_state(), layer._generator.get_state())
    layer.eval(), r.eval()
    assert all(torch.equal(a, b) for a, b in zip(layer(x), r(x), strict=True))
    other = GroupCodebookLayer if cls is CodebookLayer else CodebookLayer
    with pytest.raises(CheckpointError, match=f"not a {other.__name__} checkpoint .saved class '{cls.__name__}'"):
        other.from_pretrained(tmp_path / "cb")


def test_variational_ib_round_trip(tmp_path):
    vib = VariationalIB(6, 3, beta=0.01)
    with torch.no_grad():
        vib.logvar.weight.normal_()
    vib.eval()
    vib.save_pretrained(tmp_path / "vib")
    r = VariationalIB.from_pretrained(tmp_path / "vib")
    same_state(vib, r)
    assert r.beta == 0.01 and not r.training
    h = torch.randn(5, 6)
    assert all(torch.equal(a, b) for a, b in zip(vib(h), r(h), strict=True))


def test_energy_cbm_round_trip_in_float64(tmp_path):
    Z, C, y = concept_problem(120, 0)
    m = EnergyCBM(8, 4, 4, hidden=8, global_hidden=4).double()
    with torch.no_grad():
        m.unary.normal_()
    m.save_pretrained(tmp_path / "e")
    r = EnergyCBM.from_pretrained(tmp_path / "e")
    same_state(m, r)  # float64 tensors stay float64
    Zt = torch.as_tensor(Z[:10])
    assert torch.equal(r.predict_proba(Zt), m.predict_proba(Zt))


@pytest.fixture(scope="module")
def fitted_cbms():
    Z, C, y = concept_problem(300, 0)
    glm = ConceptBottleneckModel(NAMES, scorer="cav", head="glm", residual=True).fit(Z, y, C)
    energy = ConceptBottleneckModel(NAMES, head="energy", head_params={"epochs": 5, "hidden": 8}).fit(Z, y, C)
    return glm, energy, concept_problem(100, 1)


@pytest.mark.parametrize("which", [0, 1], ids=["glm+residual", "energy"])
def test_concept_model_round_trip_keeps_edits_and_undo(tmp_path, fitted_cbms, which):
    import copy

    m = copy.deepcopy(fitted_cbms[which])
    Zt, Ct, _ = fitted_cbms[2]
    before = m.predict_proba(Zt)
    m.edit("c0", classes=[3], scale=0.0)
    m.edit("c1", scale=0.5)
    edited = m.predict_proba(Zt)
    m.save_pretrained(tmp_path / "cbm")
    r = ConceptBottleneckModel.from_pretrained(tmp_path / "cbm")
    assert torch.equal(r.predict_proba(Zt), edited) and r.edit_log_ == m.edit_log_
    assert torch.equal(r.intervene(Zt, ["c0"], Ct), m.intervene(Zt, ["c0"], Ct))
    r.undo().undo()  # the energy head's history is saved too
    assert torch.equal(r.predict_proba(Zt), before)
    with pytest.raises(RuntimeError, match="no edit to undo"):
        r.undo()


# ------------------------------------------------------------------ earlier layouts
def test_earlier_dkvb_single_file_still_loads(tmp_path):
    x, y = blobs()
    b = dkvb().fit_keys(x).freeze_keys()
    KeyValueClassifier(None, b).fit(x, y)
    path = tmp_path / "dkvb.safetensors"  # what DiscreteKeyValueBottleneck.save wrote before
    save_file({k: v.contiguous() for k, v in b.state_dict().items()}, str(path),
              metadata={"config": json.dumps(b.config()), "class": "DiscreteKeyValueBottleneck"})
    same_state(b, DiscreteKeyValueBottleneck.load(path))
    save_file({"w": torch.ones(2)}, str(tmp_path / "other.safetensors"), metadata={"class": "Foo"})
    with pytest.raises(CheckpointError, match=r"other.safetensors: corrupt or not a DiscreteKeyValueBottleneck"):
        DiscreteKeyValueBottleneck.load(tmp_path / "other.safetensors")


def test_earlier_codebook_and_energy_pairs_still_load(tmp_path):
    layer = GroupCodebookLayer(8, 2, 4, seed=1)
    save_module(layer, tmp_path / "cb", {"class": "GroupCodebookLayer", **layer.config()},
                extra={"_generator_state": layer._generator.get_state()})
    r = GroupCodebookLayer.load(tmp_path / "cb")
    same_state(layer, r)
    with pytest.raises(CheckpointError, match="cb.json: corrupt or not a CodebookLayer checkpoint .saved class"):
        CodebookLayer.load(tmp_path / "cb")
    e = EnergyCBM(8, 4, 4, hidden=8)
    save_module(e, tmp_path / "e", {"class": "EnergyCBM", **e.config()})
    same_state(e, EnergyCBM.load(tmp_path / "e"))
    with pytest.raises(FileNotFoundError, match="nothing"):
        EnergyCBM.load(tmp_path / "nothing")


@pytest.mark.parametrize("which", [0, 1], ids=["glm+residual", "energy"])
def test_earlier_concept_model_folder_still_loads(tmp_path, fitted_cbms, which):
    m = fitted_cbms[which]
    Zt = fitted_cbms[2][0]
    folder = m.save_pretrained(tmp_path / "new")
    # rewrite it in the earlier layout: flat config with its format marker, the energy head apart
    meta = json.loads((folder / "config.json").read_text())
    cfg = dict(meta["config"], format="bottlenecks.concepts/1")
    energy_cfg = cfg.pop("energy", None)
    tensors = load_file(str(folder / "model.safetensors"))
    old = tmp_path / "old"
    old.mkdir()
    if energy_cfg is not None:
        e = EnergyCBM(**energy_cfg)
        e.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("energy.")}, assign=True)
        save_module(e, old / "energy", {"class": "EnergyCBM", **energy_cfg})
        tensors = {k: v for k, v in tensors.items() if not k.startswith("energy.")}
    save_file(tensors, str(old / "model.safetensors"))
    (old / "config.json").write_text(json.dumps(cfg))
    r = ConceptBottleneckModel.load(old)
    assert torch.equal(r.predict_proba(Zt), m.predict_proba(Zt))


# ------------------------------------------------------------------ bad files
@pytest.fixture
def saved(tmp_path):
    x, _ = blobs()
    b = dkvb().fit_keys(x).freeze_keys()
    return b, b.save_pretrained(tmp_path / "ck")


def test_truncated_weights_name_the_file(saved):
    _, folder = saved
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(CheckpointError,
                       match=r"model.safetensors: corrupt or not a DiscreteKeyValueBottleneck checkpoint \("):
        DiscreteKeyValueBottleneck.from_pretrained(folder)


@pytest.mark.parametrize("edit, match", [
    (lambda t: t[: len(t) // 2], r"config.json: corrupt .*invalid JSON"),
    (lambda t: t.replace('"keys_per_codebook": 16', '"keys_per_codebook": 17'),
     r"model.safetensors: corrupt .*shapes differ from its config: .*keys \(4, 16, 4\) vs \(4, 17, 4\)"),
    (lambda t: t.replace('"topk": 1', '"topk": 1, "colour": 2'), r"config.json: corrupt .*config is rejected.*colour"),
    (lambda t: t.replace('"topk": 1', '"topk": 0'), r"config.json: corrupt .*config is rejected.*topk"),
    (lambda t: t.replace('"format": 1', '"format": 7'), r"config.json: corrupt .*format 7"),
    (lambda t: t.replace('"class": "DiscreteKeyValueBottleneck"', '"class": "CodebookLayer"'),
     r"config.json: corrupt or not a DiscreteKeyValueBottleneck checkpoint \(saved class 'CodebookLayer'\)"),
    (lambda t: "[1, 2]", r"config.json: corrupt .*no 'class' and 'config'"),
])
def test_edited_config_gets_a_clear_message(saved, edit, match):
    _, folder = saved
    f = folder / "config.json"
    f.write_text(edit(f.read_text()))
    with pytest.raises(CheckpointError, match=match):
        DiscreteKeyValueBottleneck.from_pretrained(folder)


def test_missing_or_extra_tensors_are_named(saved):
    _, folder = saved
    f = folder / "model.safetensors"
    t = load_file(str(f))
    save_file({k: v for k, v in t.items() if k != "values"}, str(f))
    with pytest.raises(CheckpointError, match=r"missing tensors \['values'\]"):
        DiscreteKeyValueBottleneck.from_pretrained(folder)
    save_file(dict(t, extra=torch.zeros(1)), str(f))
    with pytest.raises(CheckpointError, match=r"unexpected tensors \['extra'\]"):
        DiscreteKeyValueBottleneck.from_pretrained(folder)


def test_missing_folder_files_and_wrong_targets(tmp_path, saved):
    b, folder = saved
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        DiscreteKeyValueBottleneck.from_pretrained(tmp_path / "nowhere")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        DiscreteKeyValueBottleneck.from_pretrained(folder)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="expected a folder"):
        b.save_pretrained(tmp_path / "file")
    cb = tmp_path / "cb"
    CodebookLayer(8, 4).save_pretrained(cb)
    with pytest.raises(CheckpointError, match="not a DiscreteKeyValueBottleneck checkpoint .saved class 'Codebook"):
        DiscreteKeyValueBottleneck.from_pretrained(cb)
    with pytest.raises(CheckpointError, match="not a ConceptBottleneckModel checkpoint"):
        ConceptBottleneckModel.from_pretrained(cb)


def test_a_failed_save_leaves_the_previous_checkpoint_whole(saved, monkeypatch):
    b, folder = saved
    before = (folder / "model.safetensors").read_bytes()
    import safetensors.torch

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        b.save_pretrained(folder)
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
