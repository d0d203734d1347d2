"""Lightning DDP (2 CPU processes, gloo): feedback tensors identical on every rank, even when the ranks'
global RNGs differ at conversion time."""

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_biorules import BioRules


class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1),
                                 nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class SeedPerRank(Callback):
    """Give each rank a different global RNG before the rules are drawn."""

    def setup(self, trainer, pl_module, stage):
        torch.manual_seed(100 + trainer.global_rank)


class SaveRankState(Callback):
    """Each rank writes its final state_dict; the test compares them (no collective at teardown)."""

    def __init__(self, folder):
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        torch.save(pl_module.state_dict(), f"{self.folder}/rank{trainer.global_rank}.pt")


def test_ddp_ranks_hold_identical_feedback(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 3, 8, 8, generator=g), torch.randint(0, 3, (32,), generator=g))
    trainer = L.Trainer(strategy="ddp_spawn", accelerator="cpu", devices=2, max_steps=3, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[SeedPerRank(), BioRules({"net.0": "fa", "net.2": "dfa", "net.5": "brsf", "*": "frsf"}),
                                   SaveRankState(str(tmp_path))])
    trainer.fit(Net(), DataLoader(data, batch_size=4))
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    feedback = {k for k in rank0 if ".feedback." in k}
    assert {"net.0.feedback.matrix", "net.2.feedback.matrix", "net.5.feedback.magnitude",
            "net.5.feedback.step", "net.7.feedback.magnitude"} <= feedback
    assert rank0["net.2.feedback.matrix"].numel() > 0 and int(rank0["net.5.feedback.step"]) == 3
    differing = [k for k in rank0 if not torch.equal(rank0[k], rank1[k])]
    assert not differing, differing
