"""TokFSM: sequences of a random finite-state machine written as digit tokens, as built by the
code of "Codebook Features" (Tamkin et al., 2023).

A machine of 100 states; each state has 10 distinct successors drawn uniformly among all states
(self-loops allowed), each taken with probability 1/10. A trajectory starts at a uniform random
state. Each state is written as two zero-padded decimal digits with no separator; the vocabulary
is the 10 digits (token ids 0-9) plus one end-of-text token (id 10) used as BOS, EOS and padding.
A sequence is BOS + 64 states, cut to 128 tokens (so the last state loses its second digit).

Token layout: position 0 is BOS; state ``j`` (0-based) occupies positions ``1 + 2j`` (first
digit) and ``2 + 2j`` (second digit).
"""

from __future__ import annotations

import torch

from ..validation import check_positive_int

EOT = 10
VOCAB_SIZE = 11

__all__ = ["EOT", "VOCAB_SIZE", "TokFSM"]


class TokFSM:
    """A seeded random finite-state machine and its token sequences.

    Attributes:
        successors: ``(num_states, num_successors)`` long, the successors of each state.
        transition: ``(num_states, num_states)`` float, transition probabilities.
    """

    def __init__(self, num_states: int = 100, num_successors: int = 10, seed: int = 0):
        check_positive_int(num_states, "num_states")
        check_positive_int(num_successors, "num_successors")
        if num_successors > num_states:
            raise ValueError(f"num_successors={num_successors} is larger than num_states={num_states}; "
                             "successors are distinct states")
        if num_states > 100:
            raise ValueError(f"num_states={num_states}: states are written with two digits, expected <= 100")
        self.num_states, self.num_successors, self.seed = num_states, num_successors, seed
        g = torch.Generator().manual_seed(seed)
        self.successors = torch.stack([torch.randperm(num_states, generator=g)[:num_successors]
                                       for _ in range(num_states)])
        self.transition = torch.zeros(num_states, num_states)
        self.transition.scatter_(1, self.successors, 1.0 / num_successors)
        self.valid = self.transition > 0  # (S, S) bool: valid[u, v] iff v follows u

    def __repr__(self) -> str:
        return f"TokFSM(num_states={self.num_states}, num_successors={self.num_successors}, seed={self.seed})"

    def sample_states(self, n: int, length: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` trajectories of ``length`` states: ``(n, length)`` long."""
        check_positive_int(n, "n")
        check_positive_int(length, "length")
        g = generator if generator is not None else torch.Generator().manual_seed(self.seed + 1)
        states = torch.empty(n, length, dtype=torch.long)
        states[:, 0] = torch.randint(0, self.num_states, (n,), generator=g)
        for t in range(1, length):
            choice = torch.randint(0, self.num_successors, (n,), generator=g)
            states[:, t] = self.successors[states[:, t - 1], choice]
        return states

    @staticmethod
    def encode(states: torch.Tensor, max_tokens: int | None = 128) -> torch.Tensor:
        """States ``(n, L)`` -> tokens ``(n, min(1 + 2L, max_tokens))``: BOS then two digits per state."""
        n, L = states.shape
        digits = torch.stack([states // 10, states % 10], dim=2).reshape(n, 2 * L)
        tokens = torch.cat([torch.full((n, 1), EOT, dtype=torch.long), digits], dim=1)
        return tokens if max_tokens is None else tokens[:, :max_tokens]

    @staticmethod
    def decode(tokens: torch.Tensor) -> torch.Tensor:
        """Pairs of digit tokens ``(..., 2)`` -> states ``(...)``; -1 where a token is not a digit."""
        a, b = tokens[..., 0], tokens[..., 1]
        ok = (a < 10) & (b < 10) & (a >= 0) & (b >= 0)
        return torch.where(ok, a * 10 + b, torch.full_like(a, -1))

    def sample(self, n: int, length: int = 64, max_tokens: int | None = 128,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (n, 128), states (n, 64))`` for the paper's sizes."""
        states = self.sample_states(n, length, generator)
        return self.encode(states, max_tokens), states

    def is_valid(self, prev: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        """Whether ``nxt`` follows ``prev`` (elementwise, any shape); invalid states (-1) are False."""
        ok = (nxt >= 0) & (nxt < self.num_states)
        return ok & self.valid[prev, nxt.clamp(0, self.num_states - 1)]

    @staticmethod
    def state_positions(num_tokens: int = 128) -> torch.Tensor:
        """Positions of the *second* digit of each complete state in a sequence of ``num_tokens``:
        ``(num_complete_states,)`` long; the state is known from that token on."""
        return torch.arange(2, num_tokens, 2)
