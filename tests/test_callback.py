"""The BioRules callback on a user's own LightningModule, and the optimizer route giving identical updates."""

import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_biorules import rule_map
from lightning_biorules.callback import BioRules
from lightning_biorules.optim import BioRulesOptimizer

RULE_SPACE = {"net.0": "fa", "net.3": "dfa", "net.5": "brsf", "*": "usf"}


class UserModule(L.LightningModule):
    """A user's module: knows nothing of lightning_biorules."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Flatten(), nn.Linear(8 * 4 * 4, 4),
        )

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.nll_loss(F.log_softmax(self(x), 1), y)  # any loss
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        self.optimizer = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        return self.optimizer


def _data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g))


def _trainer(callbacks, max_steps=4):
    return L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)


def test_callback_converts_user_module_and_optimizer_keeps_parameters():
    torch.manual_seed(0)
    module = UserModule()
    params_before = [id(p) for p in module.parameters()]
    weights_before = [p.detach().clone() for p in module.parameters()]
    _trainer([BioRules(RULE_SPACE, seed=7)]).fit(module, DataLoader(_data(), batch_size=8))
    assert rule_map(module) == {"net.0": "fa", "net.3": "dfa", "net.5": "brsf", "net.8": "usf"}
    optimizer_params = [id(p) for group in module.optimizer.param_groups for p in group["params"]]
    assert optimizer_params == params_before
    assert all(not torch.equal(a, b.detach()) for a, b in zip(weights_before, module.parameters()))
    assert int(module.net[5].feedback.step) == 4  # brsf redrew once per training batch
    assert module.net[3].feedback.matrix.shape == (4, 8 * 8 * 8)  # dfa: [dim(e), per-sample input size]


def test_callback_rejects_bad_rule_at_construction_and_bad_pattern_before_training():
    with pytest.raises(ValueError, match="Unknown learning rule 'fb'"):
        BioRules("fb")
    module = UserModule()
    trainer = _trainer([BioRules({"encoder.*": "fa"})])
    with pytest.raises(ValueError, match=r"pattern 'encoder\.\*' -> 'fa' matches no layer\. Layers: net\.0"):
        trainer.fit(module, DataLoader(_data(), batch_size=8))
    assert trainer.global_step == 0


def test_callback_and_optimizer_routes_give_identical_updates():
    torch.manual_seed(0)
    base = UserModule()
    loader = DataLoader(_data(), batch_size=8, shuffle=False)
    batches = list(loader)

    via_callback = copy.deepcopy(base)
    _trainer([BioRules(RULE_SPACE, seed=11)], max_steps=len(batches)).fit(via_callback, loader)

    # Plain PyTorch loop, the rules reached through the optimizer.
    model = copy.deepcopy(base)
    optimizer = BioRulesOptimizer(model, torch.optim.SGD, RULE_SPACE, seed=11, lr=0.05, momentum=0.9)
    model.train()
    for x, y in batches:
        optimizer.zero_grad()
        F.nll_loss(F.log_softmax(model(x), 1), y).backward()
        optimizer.step()

    for (name, a), b in zip(via_callback.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_optimizer_route_inside_lightning_with_scheduler():
    class OptimizerRouteModule(UserModule):
        def configure_optimizers(self):
            optimizer = BioRulesOptimizer(self, torch.optim.SGD, "frsf", lr=0.1)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    module = OptimizerRouteModule()
    trainer = _trainer([], max_steps=3)
    trainer.fit(module, DataLoader(_data(), batch_size=8))
    assert set(rule_map(module).values()) == {"frsf"}
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
