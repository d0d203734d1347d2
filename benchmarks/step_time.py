"""Training-step time of each learning rule relative to bp, ResNet-20 at batch 128, measured interleaved.

    python benchmarks/step_time.py                       # CPU, 10 rounds
    python benchmarks/step_time.py --rounds 20 --device cuda

Each round times one SGD step (forward, cross-entropy, backward, update) of every rule in turn, so a slow
patch of the machine hits all rules alike; the table gives each rule's median over rounds divided by bp's
median from the same run. ``native`` is the unconverted torchvision-style model (no rule machinery at all).
Targets (issue 2): fa, usf, frsf <= 1.03x; brsf <= 1.06x; dfa <= 0.90x. Run it alone: a second busy process
on a 2-core machine slows a step 5-10x.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Dict, List

import torch
import torch.nn.functional as F

from lightning_biorules import apply_rules
from lightning_biorules.models import build_backbone

TARGETS = {"fa": 1.03, "usf": 1.03, "frsf": 1.03, "brsf": 1.06, "dfa": 0.90}


def build(rule: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_backbone("resnet20", num_classes=10)
    if rule != "native":
        apply_rules(model, rule, seed=0)
    return model.to(device).train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", nargs="+", default=["native", "bp", "fa", "usf", "brsf", "frsf", "dfa"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if "bp" not in args.rules:
        args.rules.insert(0, "bp")

    device = torch.device(args.device)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    models = {rule: build(rule, device) for rule in args.rules}
    optimizers = {rule: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for rule, m in models.items()}

    def step(rule: str) -> float:
        model, optimizer = models[rule], optimizers[rule]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times: Dict[str, List[float]] = {rule: [] for rule in args.rules}
    for round_index in range(args.warmup + args.rounds):
        for rule in args.rules:
            elapsed = step(rule)
            if round_index >= args.warmup:
                times[rule].append(elapsed)

    bp = statistics.median(times["bp"])
    print(f"ResNet-20, batch {args.batch_size}, {device}, {torch.get_num_threads()} threads, "
          f"{args.rounds} interleaved rounds; bp step {bp * 1000:.1f} ms")
    print(f"{'rule':<8}{'median ms':>11}{'ratio/bp':>10}{'target':>9}  ok")
    for rule in args.rules:
        median = statistics.median(times[rule])
        ratio = median / bp
        target = TARGETS.get(rule)
        verdict = "" if target is None else ("yes" if ratio <= target else "NO")
        print(f"{rule:<8}{median * 1000:>11.1f}{ratio:>10.3f}{'' if target is None else f'{target:.2f}':>9}  {verdict}")


if __name__ == "__main__":
    main()
