"""Train a small ResNet on synthetic images with SGD and watch its conservation laws.

The network is an ordinary torch module. `ConservationMonitor` traces it with
torch.fx, asks the engine for the laws of each block (here one per hidden channel
of each residual body:
``‖c2[:, c]‖² − ‖c1[c]‖² − b1[c]²``) and returns their
values at every step. The script prints, for each learning rate, the relative
drift of the worst law at the end and at its largest, and the exponent p of
``drift ~ lr^p`` (close to 2 for SGD: one step changes a quadratic law by a term
of order lr²).

Run it with the torch extra installed::

    pip install -e '.[torch]'
    python examples/train_resnet_monitor.py --steps 50 --lr 1e-3 3e-3 1e-2
"""

import argparse

import torch
from torch import nn

from algebra.drift import fit_exponent
from algebra.torch import ConservationMonitor


class SmallResNet(nn.Module):
    """A stem convolution, two residual blocks, global average pooling, a head."""

    def __init__(self, width=8, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.b1c1 = nn.Conv2d(width, width, 3, padding=1)
        self.b1c2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.b2c1 = nn.Conv2d(width, width, 3, padding=1)
        self.b2c2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        """Return the class scores of a batch of images."""
        x = torch.relu(self.stem(x))
        x = torch.relu(x + self.b1c2(torch.relu(self.b1c1(x))))
        x = torch.relu(x + self.b2c2(torch.relu(self.b2c1(x))))
        return self.head(x.mean(dim=(2, 3)))


def train(model, monitor, data, lr, steps, batch):
    """Train with SGD; return the relative drift of the worst law at each step."""
    images, labels = data
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    start = torch.cat(list(monitor().values()))
    drift = []
    for _ in range(steps):
        chosen = torch.randint(0, len(images), (batch,))
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images[chosen]), labels[chosen])
        loss.backward()
        optimizer.step()
        now = torch.cat(list(monitor().values()))
        drift.append(((now - start).abs() / start.abs()).max().item())
    return drift


def drift_table(args):
    """Train from the same start at each learning rate; return the table rows."""
    torch.manual_seed(args.seed)
    model = SmallResNet().double()
    data = (
        torch.randn(256, 3, 16, 16, dtype=torch.float64),
        torch.randint(0, 10, (256,)),
    )
    monitor = ConservationMonitor(model, example_input=data[0][:2])
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    rows = []
    for lr in args.lr:
        model.load_state_dict(initial)
        torch.manual_seed(args.seed + 1)
        drift = train(model, monitor, data, lr, args.steps, args.batch)
        rows.append((lr, drift[-1], max(drift)))
    return rows, sum(len(v) for v in monitor().values())


def main():
    """Print the drift table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows, count = drift_table(args)
    print(f"small ResNet, SGD, {args.steps} steps, batch {args.batch}: {count} laws")
    print("relative drift |h(θ_k) − h(θ_0)| / |h(θ_0)| of the worst law\n")
    print(f"{'lr':<8}{'final':<12}max")
    for lr, final, largest in rows:
        print(f"{lr:<8g}{final:<12.3g}{largest:.3g}")
    rates = [lr for lr, _, _ in rows]
    final_p = fit_exponent(rates, [final for _, final, _ in rows])
    max_p = fit_exponent(rates, [largest for _, _, largest in rows])
    if final_p is not None:
        print(f"\nexponent p in drift ~ lr^p: {final_p:.2f} (final), {max_p:.2f} (max)")


if __name__ == "__main__":
    main()
