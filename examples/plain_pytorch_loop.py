"""The optimizer route: learning rules in a plain PyTorch training loop.

    python examples/plain_pytorch_loop.py --root ../shared/data/cifar10 --rules frsf
"""

import argparse

import torch
import torch.nn.functional as F

from lightning_biorules import BioRulesOptimizer, CIFARDataModule
from lightning_biorules.models import build_backbone

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="../shared/data/cifar10")
    parser.add_argument("--rules", default="frsf")
    parser.add_argument("--train-size", type=int, default=2000)
    args = parser.parse_args()
    torch.manual_seed(0)

    data = CIFARDataModule(root=args.root, train_size=args.train_size, val_size=500)
    data.setup("fit")
    model = build_backbone("simple_cnn", num_classes=10)
    optimizer = BioRulesOptimizer(model, torch.optim.SGD, args.rules, keep_ends_bp=True, lr=0.05, momentum=0.9)

    model.train()
    for step, batch in enumerate(data.train_dataloader()):
        x, y = data.transform_batch(batch, train=True)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        if step % 5 == 0:
            print(f"step {step:3d}  loss {loss.item():.3f}")

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for batch in data.val_dataloader():
            x, y = data.transform_batch(batch, train=False)
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    print(f"val accuracy {correct / total:.3f}")
