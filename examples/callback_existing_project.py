"""An existing Lightning project, unchanged but for one callback.

    python examples/callback_existing_project.py --root ../shared/data/cifar10 --rules usf

The LightningModule below knows nothing of lightning_biorules: its training_step, loss and
configure_optimizers stay as they are; ``BioRules`` puts the learning rules on its layers.
"""

import argparse

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from lightning_biorules import BioRules, CIFARDataModule


class MyClassifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 8 * 8, 10),
        )

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default="../shared/data/cifar10")
    parser.add_argument("--rules", default="usf")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-size", type=int, default=2000)
    args = parser.parse_args()
    L.seed_everything(0)
    trainer = L.Trainer(max_epochs=args.epochs, callbacks=[BioRules(args.rules, keep_ends_bp=True)])
    trainer.fit(MyClassifier(), CIFARDataModule(root=args.root, train_size=args.train_size, val_size=500))
