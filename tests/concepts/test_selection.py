"""LaBo's submodular selection against brute force, and Label-free CBM's filters with their reasons."""

import itertools
import math

import numpy as np
import pytest
import torch

from bottlenecks.concepts.selection import (
    discriminability,
    facility_location,
    labelfree_filter,
    run_concept_selection,
    selection_objective,
    submodular_select,
)


def _pool(seed, m=7, d=5):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(m, d, generator=g, dtype=torch.float64)
    e = e / e.norm(dim=1, keepdim=True)
    scores = torch.rand(m, generator=g, dtype=torch.float64)
    return e, scores


def _naive_greedy(scores, sim, k, alpha, beta):
    """Greedy with gains from the objective itself (F(S + j) - F(S)), not from cached coverage."""
    chosen = []
    for _ in range(k):
        base = selection_objective(chosen, scores, sim, alpha=alpha, beta=beta)
        gains = [selection_objective(chosen + [j], scores, sim, alpha=alpha, beta=beta) - base
                 if j not in chosen else -math.inf for j in range(len(scores))]
        chosen.append(int(np.argmax(gains)))
    return chosen


@pytest.mark.parametrize("seed", range(6))
def test_greedy_matches_naive_greedy_and_the_guarantee_against_brute_force(seed):
    e, scores = _pool(seed)
    sim = e @ e.T
    k, alpha, beta = 3, 2.0, 1.0
    picked = submodular_select(e, torch.zeros(len(e), dtype=torch.long), k, scores=scores, alpha=alpha, beta=beta)
    assert picked == _naive_greedy(scores, sim, k, alpha, beta)
    value = selection_objective(picked, scores, sim, alpha=alpha, beta=beta)
    best = max(selection_objective(list(s), scores, sim, alpha=alpha, beta=beta)
               for s in itertools.combinations(range(len(e)), k))
    assert value <= best + 1e-12
    assert value >= (1 - 1 / math.e) * best


def test_greedy_is_optimal_for_a_modular_objective_and_for_separated_clusters():
    e, scores = _pool(11, m=8)
    picked = submodular_select(e, [0] * 8, 3, scores=scores, beta=0.0)
    best = max(itertools.combinations(range(8), 3), key=lambda s: float(scores[list(s)].sum()))
    assert sorted(picked) == sorted(best)
    # three tight clusters of unit vectors: coverage alone is maximised by one concept per cluster
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, dtype=torch.float64)
    pts = centres.repeat_interleave(3, 0) + 0.05 * torch.randn(9, 3, generator=g, dtype=torch.float64)
    picked = submodular_select(pts, [0] * 9, 3, alpha=0.0)
    assert sorted(p // 3 for p in picked) == [0, 1, 2]
    unit = pts / pts.norm(dim=1, keepdim=True)
    s = unit @ unit.T
    best = max(itertools.combinations(range(9), 3), key=lambda c: facility_location(s, c))
    assert sorted(p // 3 for p in best) == [0, 1, 2]


def test_per_class_selection_keeps_small_pools_and_stays_in_class():
    e, scores = _pool(3, m=10)
    owner = torch.tensor([0, 0, 0, 0, 2, 2, 2, 2, 2, 5])
    picked = submodular_select(e, owner, 2, scores=scores)
    assert len(picked) == 2 + 2 + 1
    assert [int(owner[i]) for i in picked] == [0, 0, 2, 2, 5]
    assert len(set(picked)) == len(picked)


def _reference_discriminability(concepts, images, labels, temperature):
    classes = sorted(set(labels.tolist()))
    C, N = len(concepts), len(classes)
    sim = np.zeros((C, N))
    for j, y in enumerate(classes):
        rows = images[labels == y]
        for c in range(C):
            sim[c, j] = np.mean(rows @ concepts[c])
    p_cy = np.exp(sim / temperature) / np.exp(sim / temperature).sum(0) if temperature else sim / sim.sum(0)
    joint = p_cy / N
    out = np.zeros(C)
    for c in range(C):
        pc = joint[c].sum()
        out[c] = sum(joint[c, j] * np.log(joint[c, j] / (pc / N)) for j in range(N))
    return out * C


@pytest.mark.parametrize("temperature", [None, 0.2])
def test_discriminability_matches_the_mutual_information_terms(temperature):
    rng = np.random.default_rng(0)
    images = np.abs(rng.normal(size=(30, 4))) + 0.1
    labels = np.repeat([0, 1, 2], 10)
    concepts = np.abs(rng.normal(size=(6, 4))) + 0.1
    got = discriminability(concepts, images, labels, temperature=temperature)
    want = _reference_discriminability(concepts, images, labels, temperature)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    assert bool((got >= 0).all())


def test_discriminative_concepts_are_preferred_and_coverage_breaks_redundancy():
    # images of class y point along axis y; concepts 0 and 1 are near copies aligned with class 0,
    # concept 2 matches every class equally, concept 3 is shared by classes 0 and 2; 4 and 5 are
    # the other classes' own concepts
    g = torch.Generator().manual_seed(0)
    images = torch.eye(3).repeat_interleave(20, 0) + 0.05 * torch.randn(60, 3, generator=g)
    labels = torch.arange(3).repeat_interleave(20)
    concepts = torch.tensor([[1.0, 0.0, 0.0], [0.99, 0.02, 0.0], [0.58, 0.58, 0.58], [0.8, 0.0, 0.6],
                             [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    d = discriminability(concepts, images, labels)
    assert float(d[0]) > float(d[3]) > float(d[2])
    owner = [0, 0, 0, 0, 1, 2]
    only_d = submodular_select(concepts, owner, 2, image_embeddings=images, labels=labels, beta=0.0)
    assert only_d == [0, 1, 4, 5]  # the two best scores of class 0, redundant or not
    with_cov = submodular_select(concepts, owner, 2, image_embeddings=images, labels=labels, alpha=1.0, beta=5.0)
    assert len(set(with_cov[:2]) & {0, 1}) == 1  # a copy of a picked concept adds no coverage


def test_selection_errors_name_the_problem():
    e, _ = _pool(0)
    with pytest.raises(ValueError, match="class_of_concept: expected 7 entries"):
        submodular_select(e, [0, 1], 2)
    with pytest.raises(ValueError, match="k_per_class"):
        submodular_select(e, [0] * 7, 0)
    with pytest.raises(ValueError, match="alpha and beta"):
        submodular_select(e, [0] * 7, 2, alpha=-1.0)
    with pytest.raises(ValueError, match="without labels"):
        submodular_select(e, [0] * 7, 2, image_embeddings=torch.randn(4, 5))
    with pytest.raises(ValueError, match="one embedding space"):
        discriminability(e, torch.randn(4, 3), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="positive image-concept similarities"):
        discriminability(e, -torch.ones(4, 5), [0, 1, 0, 1], temperature=None)
    with pytest.raises(ValueError, match="zero norm"):
        submodular_select(torch.zeros(3, 2), [0, 0, 0], 1)


def test_labelfree_filters_give_their_reasons():
    names = ["a very long concept name that goes on and on", "The Cat", "whiskers", "whisker",
             "feline face", "stripes", "dull"]
    e = torch.tensor([
        [1.0, 0.0, 0.0, 0.0],   # too long
        [0.0, 1.0, 0.0, 0.0],   # class name by text
        [0.0, 0.0, 1.0, 0.0],   # whiskers: general (similar to 'whisker' and to 'stripes')
        [0.0, 0.0, 1.0, -0.1],  # whisker: near-duplicate of whiskers, less similar to the rest -> dropped
        [0.1, 0.95, 0.0, 0.1],  # too close to the class embedding
        [0.0, 0.0, 0.3, 1.0],   # stripes
        [0.0, 0.0, -1.0, 0.3],  # weak on every image
    ])
    images = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.7, 0.7]])
    kept, reasons = labelfree_filter(names, e, class_names=["cat"], class_embeddings=[[0.0, 1.0, 0.0, 0.0]],
                                     image_embeddings=images, class_sim=0.85, dup_sim=0.9, min_activation=0.2,
                                     top_k=2)
    assert kept == [2, 5]
    assert reasons[0].startswith("length: 44 characters")
    assert reasons[1] == "class name: same text as class 'cat'"
    assert reasons[4].startswith("class name: similarity") and "'cat'" in reasons[4]
    assert reasons[3].startswith("near-duplicate") and "#2 'whiskers'" in reasons[3]
    assert reasons[6].startswith("low activation")
    # every filter can be switched off
    kept, reasons = labelfree_filter(names, e, max_length=None, class_sim=None, dup_sim=None)
    assert kept == list(range(7)) and reasons == {}


def test_labelfree_filter_errors():
    with pytest.raises(ValueError, match="concept set is empty"):
        labelfree_filter([], torch.zeros(0, 3))
    with pytest.raises(ValueError, match="expected 2 rows"):
        labelfree_filter(["a", "b"], torch.ones(3, 4))
    with pytest.raises(ValueError, match="needs image_embeddings"):
        labelfree_filter(["a"], torch.ones(1, 4), min_activation=0.1)
    with pytest.raises(ValueError, match="one embedding space"):
        labelfree_filter(["a"], torch.ones(1, 4), class_embeddings=torch.ones(1, 3))


def test_run_concept_selection_filters_then_selects_per_class(tmp_path):
    """End to end with a letter-count text encoder: every decision can be traced by hand."""
    import json

    def letters(texts):
        out = np.zeros((len(texts), 27))
        for i, t in enumerate(texts):
            for ch in t.lower():
                out[i, ord(ch) - 97 if "a" <= ch <= "z" else 26] += 1
        return out

    concepts = {"zebra": ["stripes", "striped", "black and white", "zebra", "a very long description of hooves",
                          "mane"],
                "parrot": ["green feathers", "curved beak", "mane", "talking"]}
    path = tmp_path / "concepts.json"
    path.write_text(json.dumps(concepts))
    # cosine of the letter counts of 'stripes' and 'striped': 7 / (3 * sqrt(7)) = 0.882
    res = run_concept_selection(path, k_per_class=2, encoder=letters, dup_sim=0.85, class_sim=0.95, out=tmp_path)
    removed = {(r["concept"], r["class"]): r["reason"] for r in res["removed"]}
    assert removed[("mane", "parrot")].startswith("duplicate name")
    assert removed[("zebra", "zebra")].startswith("class name: same text")
    assert removed[("a very long description of hooves", "zebra")].startswith("length")
    dup = [c for c in ("stripes", "striped") if removed.get((c, "zebra"), "").startswith("near-duplicate")]
    assert len(dup) == 1
    assert res["n_candidates"] == 9 and res["n_after_filters"] == 9 - 3
    assert [len(v) for v in res["selected"].values()] == [2, 2]
    assert set(res["selected"]["parrot"]) <= {"green feathers", "curved beak", "talking"}
    assert json.loads((tmp_path / "selected_concepts.json").read_text()) == res
    with pytest.raises(ValueError, match="non-empty"):
        run_concept_selection({}, encoder=letters)
