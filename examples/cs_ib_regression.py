"""Cauchy-Schwarz divergence information bottleneck for regression (Yu et al., ICLR 2024).

    python examples/cs_ib_regression.py [--epochs 150] [--seed 0]

Data: ``y = sin(3 x_1) + 0.5 x_2^2 + noise`` with 8 inputs, 6 of them distractors. An MLP encoder
gives ``z``, a linear head predicts ``y``. Three models are trained with the same seed: plain MSE,
and the CS-IB objective ``D_CS(p(y|c) || q(y_hat|c)) + beta * I(X; Z)`` (``cauchy_schwarz_ib_loss``
with Silverman kernel widths) conditioned on the input (``c = x``, the paper's form) or on the code
(``c = z``). The script prints each model's test RMSE and the compression term (the CS quadratic MI
between x and z) on test data. On this toy problem, at 150 epochs, plain MSE reaches the lowest RMSE
(about 0.44 vs 0.61 for CS-IB on x and 1.1 on z; seed 0, measured once); CS-IB gives the less
informative code. Runs in under a minute on one CPU core.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from bottlenecks.info import cauchy_schwarz_ib_loss


def make_data(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 8, generator=g)
    y = torch.sin(3 * x[:, 0]) + 0.5 * x[:, 1] ** 2 + 0.1 * torch.randn(n, generator=g)
    return x, y


class Regressor(nn.Module):
    """``(batch, 8) -> (z (batch, 4), y_hat (batch,))``."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        z = self.encoder(x)
        return z, self.head(torch.relu(z)).squeeze(-1)


def train(objective: str, x, y, epochs: int, seed: int, beta: float) -> Regressor:
    condition = "z" if objective == "cs-ib (z)" else "x"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Regressor()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(128):
            z, pred = model(x[idx])
            if objective == "mse":
                loss = nn.functional.mse_loss(pred, y[idx])
            else:
                loss = cauchy_schwarz_ib_loss(z, pred, y[idx], beta=beta, x=x[idx], condition=condition)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--beta", type=float, default=1e-2)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(args.seed)
    xtr, ytr = make_data(1024, g)
    xte, yte = make_data(512, g)
    print("objective   test RMSE   I_CS(X;Z) on test")
    for objective in ("mse", "cs-ib (x)", "cs-ib (z)"):
        model = train(objective, xtr, ytr, args.epochs, args.seed, args.beta)
        with torch.no_grad():
            z, pred = model(xte)
            _, _, comp = cauchy_schwarz_ib_loss(z, pred, yte, x=xte, return_terms=True)
        rmse = float((pred - yte).pow(2).mean().sqrt())
        print(f"{objective:<11} {rmse:9.4f}   {float(comp):9.4f}")


if __name__ == "__main__":
    main()
