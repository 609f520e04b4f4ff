"""Training-engine throughput (not a test): `python benchmarks/engine.py`.

Measured in one run, same model, data and batch size:
* fairbook.train.fit (in-memory tensor batches) vs a plain DataLoader(TensorDataset) loop;
* fit's samples/s as a fraction of this machine's fp32 matmul rate (2048^2 matmul, measured here);
* the cost of unused hooks (none passed vs no-op hooks) and of the logits hook (AUM's).
Workloads: MLP 784-256-256-10 on Fashion-MNIST-shaped data and the GCM Adult MLP (120-200-200-1).
"""
from __future__ import annotations

import json
import os
import time

import torch
from torch import nn

os.environ.setdefault("FAIRBOOK_PROGRESS", "0")
from fairbook import models, train  # noqa: E402


def matmul_gflops(n: int = 2048, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def mlp_flops_per_sample(model: nn.Module) -> float:
    """Forward + backward ~= 3 x 2 x (multiply-adds of the linear layers)."""
    return 6 * sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


def dataloader_loop(model, X, y, epochs, batch_size, loss_fn):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=batch_size,
                                         shuffle=True)
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def workload(name, in_dim, widths, out_dim, n, epochs, batch_size, loss):
    torch.manual_seed(0)
    X = torch.rand(n, in_dim)
    y = torch.randint(0, max(out_dim, 2), (n,))
    make = lambda: models.MLP(in_dim, widths, out_dim)  # noqa: E731
    spec = train.Optim("sgd", lr=0.01)
    base = dict(epochs=epochs, batch_size=batch_size, optim=spec, loss=loss, select=None)
    crit = train.loss_fn(loss)
    fit = lambda **kw: train.fit(make(), X, y, **base, **kw)  # noqa: E731
    fit()  # warm-up
    dl = min(timed(lambda: dataloader_loop(make(), X, y, epochs, batch_size, crit)) for _ in range(2))
    plain = min(timed(fit) for _ in range(3))
    noop = min(timed(lambda: fit(extra_loss=lambda m, b: 0.0, on_epoch_end=lambda *a: None))
               for _ in range(3))
    kept = []
    hook = min(timed(lambda: fit(on_logits=lambda lg, yb, ids, ep: kept.append((lg, ids))))
               for _ in range(3))
    samples = n * epochs
    flops = mlp_flops_per_sample(make()) * samples / plain / 1e9
    return {f"{name}_engine_samples_per_s": samples / plain,
            f"{name}_dataloader_samples_per_s": samples / dl,
            f"{name}_speedup_vs_dataloader": dl / plain,
            f"{name}_engine_gflops": flops,
            f"{name}_noop_hooks_overhead": noop / plain - 1,
            f"{name}_logits_hook_overhead": hook / plain - 1}


def main():
    out = {"fp32_matmul_gflops": matmul_gflops(), "threads": torch.get_num_threads()}
    out.update(workload("fmnist_mlp", 784, (256, 256), 10, 60000, 2, 256, "ce"))
    out.update(workload("adult_mlp", 120, (200, 200), 1, 27000, 4, 256, "bce"))
    out["fmnist_mlp_fraction_of_matmul_peak"] = out["fmnist_mlp_engine_gflops"] / out["fp32_matmul_gflops"]
    out["adult_mlp_fraction_of_matmul_peak"] = out["adult_mlp_engine_gflops"] / out["fp32_matmul_gflops"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
