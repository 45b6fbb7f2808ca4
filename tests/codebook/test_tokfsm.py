"""The TokFSM generator: the paper's machine and token layout, seeded."""

import torch

from bottlenecks.codebook import TokFSM
from bottlenecks.codebook.tokfsm import EOT, VOCAB_SIZE


def test_machine_has_ten_distinct_successors_with_probability_one_tenth():
    fsm = TokFSM(seed=3)
    assert fsm.successors.shape == (100, 10)
    for row in fsm.successors:
        assert len(set(row.tolist())) == 10
    torch.testing.assert_close(fsm.transition.sum(1), torch.ones(100))
    torch.testing.assert_close(fsm.transition.unique(), torch.tensor([0.0, 0.1]))


def test_successors_are_uniform_over_all_states_self_loops_included():
    # over many machines every state is a successor about 10% of the time, the state itself too
    counts = torch.zeros(100)
    self_loops = 0
    for seed in range(60):
        fsm = TokFSM(seed=seed)
        counts += torch.bincount(fsm.successors.flatten(), minlength=100)
        self_loops += int((fsm.successors == torch.arange(100)[:, None]).any(1).sum())
    share = counts / counts.sum()
    assert float((share - 0.01).abs().max()) < 0.004  # 60,000 draws: sd of a share is ~0.0004
    assert abs(self_loops / 6000 - 0.1) < 0.03


def test_sequences_follow_the_machine_with_uniform_starts_and_choices():
    fsm = TokFSM(seed=0)
    tokens, states = fsm.sample(2000, generator=torch.Generator().manual_seed(1))
    assert tokens.shape == (2000, 128) and states.shape == (2000, 64)
    assert tokens.dtype == torch.long and int(tokens.max()) < VOCAB_SIZE and int(tokens.min()) >= 0
    assert bool((tokens[:, 0] == EOT).all()) and not bool((tokens[:, 1:] == EOT).any())
    # two zero-padded digits per state, no separator, the 64th state cut to its first digit
    assert torch.equal(tokens[:, 1:127:2] * 10 + tokens[:, 2:128:2], states[:, :63])
    assert torch.equal(tokens[:, 127], states[:, 63] // 10)
    assert bool(fsm.is_valid(states[:, :-1], states[:, 1:]).all())
    starts = torch.bincount(states[:, 0], minlength=100).float()
    assert float(starts.std() / starts.mean()) < 0.35  # uniform: counts ~ 20 +- 4.5
    # each successor is taken with probability 1/10
    prev, nxt = states[:, :-1].reshape(-1), states[:, 1:].reshape(-1)
    slot = (fsm.successors[prev] == nxt[:, None]).float().argmax(1)
    share = torch.bincount(slot, minlength=10).float() / len(slot)
    assert float((share - 0.1).abs().max()) < 0.005


def test_seeding_and_decoding():
    a, b = TokFSM(seed=1), TokFSM(seed=1)
    assert torch.equal(a.successors, b.successors)
    assert not torch.equal(a.successors, TokFSM(seed=2).successors)
    ta, _ = a.sample(4, generator=torch.Generator().manual_seed(5))
    tb, _ = b.sample(4, generator=torch.Generator().manual_seed(5))
    assert torch.equal(ta, tb)
    assert TokFSM.decode(torch.tensor([[0, 7], [9, 9], [10, 3]])).tolist() == [7, 99, -1]
    assert TokFSM.state_positions(128).tolist() == list(range(2, 128, 2))
