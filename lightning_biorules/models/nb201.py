"""The NAS-Bench-201 cell network (Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible
Neural Architecture Search", ICLR 2020), laid out so that ``rule_space`` patterns address each edge.

``NB201Net(cell_ops, C=16, N=5)``: ``stem`` (conv3x3 to ``C`` channels + BN), three stages of ``N``
cells with ``C``, ``2C`` and ``4C`` channels, a ResNet basic block with stride 2 between stages
(``reductions.0`` and ``reductions.1``; its shortcut is avg-pool 2x2 then a 1x1 conv, as in the
reference code), then ``lastact`` (BN + ReLU), global average pooling and ``classifier``
(``nn.Linear``, registered last so it is the output layer for ``dfa``).

A cell is a DAG of 4 nodes: node 0 is the cell input, node ``j`` the sum of the edges ``j<-i``
(``i < j``) applied to node ``i``, node 3 the output. Its six edges, in :data:`NB201_EDGES` order
(the NAS-Bench-201 arch-string order), each carry one op of :data:`NB201_OPS`; all cells share the
same six ops. Module names::

    stem.0                                   Conv2d
    stages.{s}.{k}.edges.{j}<-{i}.op.1       Conv2d of a nor_conv_* edge (ReLU-Conv-BN)
    reductions.{r}.conv_a.op.1 / conv_b.op.1 / downsample.1
    classifier                               Linear

so ``stages.1.*.edges.3<-1.*`` addresses edge 3<-1 in every cell of stage 1 and
``stages.*.edges.3<-1.*`` in every cell. Edges ``none``, ``skip_connect`` and ``avg_pool_3x3`` have
no weights.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from lightning_biorules.models.darts import ReLUConvBN, Zero

__all__ = ["NB201_EDGES", "NB201_OPS", "NB201_CONV_OPS", "NB201Cell", "NB201Net", "nb201_cell_ops"]

#: Candidate ops of every edge (NAS-Bench-201's five).
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: The ops that hold a Conv2d (a learning rule acts on them).
NB201_CONV_OPS: frozenset[str] = frozenset({"nor_conv_1x1", "nor_conv_3x3"})
#: The six edges ``"j<-i"`` of a cell (node j reads node i), in NAS-Bench-201's arch-string order.
NB201_EDGES: tuple[str, ...] = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")

CellOps = Union[Sequence[str], Mapping[str, str]]


def build_nb201_op(op: str, channels: int) -> nn.Module:
    """One edge op of a cell (stride 1, ``channels`` in and out)."""
    if op == "none":
        return Zero(stride=1)
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {op!r}; expected one of {list(NB201_OPS)}")


def nb201_cell_ops(cell_ops: CellOps) -> list[str]:
    """The six edge ops in :data:`NB201_EDGES` order, from a list of six or a ``{"j<-i": op}``
    mapping; unknown ops / edges raise ``ValueError``."""
    if isinstance(cell_ops, Mapping):
        unknown = sorted(set(cell_ops) - set(NB201_EDGES))
        missing = [e for e in NB201_EDGES if e not in cell_ops]
        if unknown or missing:
            raise ValueError(f"cell_ops needs exactly the edges {list(NB201_EDGES)}; unknown {unknown}, missing {missing}")
        ops = [str(cell_ops[e]) for e in NB201_EDGES]
    elif isinstance(cell_ops, str):
        raise ValueError(f"cell_ops must be 6 op names (or an edge -> op mapping), got the string {cell_ops!r}")
    else:
        ops = [str(op) for op in cell_ops]
    if len(ops) != len(NB201_EDGES):
        raise ValueError(f"cell_ops needs {len(NB201_EDGES)} ops (edges {list(NB201_EDGES)}), got {len(ops)}")
    bad = [op for op in ops if op not in NB201_OPS]
    if bad:
        raise ValueError(f"unknown NAS-Bench-201 op(s) {bad}; expected ops from {list(NB201_OPS)}")
    return ops


class NB201Cell(nn.Module):
    """A NAS-Bench-201 cell: ``edges`` is a ``ModuleDict`` keyed ``"j<-i"``; node ``j`` is the sum of
    its incoming edges and node 3 the output."""

    def __init__(self, cell_ops: CellOps, channels: int) -> None:
        super().__init__()
        ops = nb201_cell_ops(cell_ops)
        self.edges = nn.ModuleDict({edge: build_nb201_op(op, channels) for edge, op in zip(NB201_EDGES, ops)})

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(self.edges[f"{j}<-{i}"](nodes[i]) for i in range(j)))
        return nodes[3]


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction cell: ``conv_b(conv_a(x)) + downsample(x)`` with ReLU-Conv-BN
    convs (``conv_a`` stride 2) and an avg-pool 2x2 + 1x1 conv shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, 1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


class NB201Net(nn.Module):
    """NAS-Bench-201 network for 32x32 images (see the module docstring for the layout).

    Args:
        cell_ops: the six edge ops, a list in :data:`NB201_EDGES` order or a ``{"j<-i": op}`` mapping.
        C: channels of the first stage (the benchmark uses 16).
        N: cells per stage (the benchmark uses 5).
        num_classes: classifier outputs.
    """

    def __init__(self, cell_ops: CellOps, C: int = 16, N: int = 5, num_classes: int = 10) -> None:
        super().__init__()
        if int(C) < 1 or int(N) < 1:
            raise ValueError(f"C and N must be >= 1, got C={C}, N={N}")
        C, N = int(C), int(N)
        self.cell_ops = nb201_cell_ops(cell_ops)
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        widths = (C, 2 * C, 4 * C)
        self.stages = nn.ModuleList(
            nn.ModuleList(NB201Cell(self.cell_ops, width) for _ in range(N)) for width in widths
        )
        self.reductions = nn.ModuleList(ResNetBasicBlock(widths[s], widths[s + 1]) for s in range(len(widths) - 1))
        self.lastact = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(widths[-1], int(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for s, stage in enumerate(self.stages):
            if s > 0:
                x = self.reductions[s - 1](x)
            for cell in stage:
                x = cell(x)
        x = self.lastact(x)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
