"""A small CNN for quick runs: three conv-BN-ReLU-pool stages and a two-layer classifier."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["SimpleCNN"]


class SimpleCNN(nn.Module):
    """``features.{0,4,8}`` convs (32/64/128 channels, each followed by BN, ReLU, 2x2 max-pool), then ``fc1``, ``fc2``."""

    def __init__(self, num_classes: int = 10, width: int = 32, hidden: int = 256) -> None:
        super().__init__()
        layers, in_ch = [], 3
        for out_ch in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(in_ch * 16, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.relu(self.fc1(self.features(x).flatten(1))))
