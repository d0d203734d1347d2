"""The DARTS CIFAR network (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search",
ICLR 2019) for a discrete genotype, laid out so that ``rule_space`` patterns address each edge
(the search space of Hamzaoui & Baghdadi, arXiv:2507.13485).

``DartsNet(normal, reduce, C=16, layers=8)``: ``stem`` (conv3x3 to ``3C`` channels + BN), then
``layers`` cells in the ``cells`` ``ModuleDict``, keyed ``normal_{i}`` / ``reduce_{i}`` by position
``i``; the cells at 1/3 and 2/3 of the depth (``layers // 3`` and ``2 * layers // 3``) are reduction
cells (stride 2, channels doubled). Global average pooling and ``classifier`` (``nn.Linear``,
registered last so it is the output layer for ``dfa``). No auxiliary head and no drop-path.

A cell has two inputs (the outputs of the two previous cells, or the stem), preprocessed by
``preprocess0`` / ``preprocess1`` (ReLU-Conv1x1-BN; ``preprocess0`` is a FactorizedReduce after a
reduction cell), and 4 intermediate nodes 2..5. A genotype is 8 ``(op, input)`` pairs, two per
node in node order: node ``n`` sums ``op(state[input])`` of its two pairs, ``input < n``; the cell
output concatenates nodes 2..5. Edge ``k`` (0 or 1) of node ``n`` is the module
``cells.{cell}.edges.{n}_{k}``; ops are the standard DARTS ones (:data:`DARTS_OPS`), with stride 2
on the edges from the cell inputs (0, 1) of a reduction cell, where ``skip_connect`` becomes a
FactorizedReduce. Module names::

    stem.0                                   Conv2d
    cells.{kind}_{i}.preprocess0.* / preprocess1.*
    cells.{kind}_{i}.edges.{n}_{k}.*         the edge's op (convs of sep/dil conv, FactorizedReduce)
    classifier                               Linear

so ``cells.normal_*.edges.3_1.*`` addresses edge 3_1 of every normal cell.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
from torch import Tensor, nn

__all__ = [
    "DARTS_EDGES",
    "DARTS_OPS",
    "DartsCell",
    "DartsNet",
    "Genotype",
    "build_darts_op",
    "darts_genotype",
    "darts_op_has_conv",
    "reduction_indices",
]

#: Candidate ops of an edge (DARTS' PRIMITIVES).
DARTS_OPS: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
#: Intermediate nodes of a cell (0 and 1 are the cell inputs).
DARTS_NODES: tuple[int, ...] = (2, 3, 4, 5)
#: The eight edges ``"{n}_{k}"`` of a cell: input slot ``k`` of intermediate node ``n``, genotype order.
DARTS_EDGES: tuple[str, ...] = tuple(f"{n}_{k}" for n in DARTS_NODES for k in (0, 1))

Genotype = Sequence[Union[Tuple[str, int], Sequence[Union[str, int]]]]


class ReLUConvBN(nn.Module):
    """ReLU - Conv2d - BN (DARTS' preprocessing)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """ReLU - dilated depthwise conv - pointwise conv - BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked ReLU - depthwise conv - pointwise conv - BN (the first one strided)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, bias=False),
            nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=1, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class FactorizedReduce(nn.Module):
    """Halve the resolution: ReLU, two 1x1 stride-2 convs on ``x`` and ``x`` shifted by one pixel,
    concatenated (``c_out // 2`` channels each), BN."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Zero(nn.Module):
    """The ``none`` op: zeros of the (strided) input's shape."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def build_darts_op(op: str, channels: int, stride: int) -> nn.Module:
    """One DARTS op with ``channels`` in and out (DARTS' ``OPS`` table, ``affine=True``)."""
    if op == "none":
        return Zero(stride)
    if op == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if op == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels)
    if op == "sep_conv_3x3":
        return SepConv(channels, channels, 3, stride, 1)
    if op == "sep_conv_5x5":
        return SepConv(channels, channels, 5, stride, 2)
    if op == "dil_conv_3x3":
        return DilConv(channels, channels, 3, stride, 2, 2)
    if op == "dil_conv_5x5":
        return DilConv(channels, channels, 5, stride, 4, 2)
    raise ValueError(f"unknown DARTS op {op!r}; expected one of {list(DARTS_OPS)}")


def darts_op_has_conv(op: str, input_node: int, reduction: bool) -> bool:
    """Whether the edge ``op`` from ``input_node`` holds a Conv2d (so a learning rule acts on it):
    sep/dil convs, and ``skip_connect`` from a cell input of a reduction cell (FactorizedReduce)."""
    if op.startswith(("sep_conv", "dil_conv")):
        return True
    return op == "skip_connect" and reduction and int(input_node) < 2


def darts_genotype(genotype: Genotype) -> list[tuple[str, int]]:
    """Validate a cell genotype: 8 ``(op, input)`` pairs, two per node 2..5 in node order, with
    ``input < node``. Returns it as a list of tuples; errors raise ``ValueError``."""
    if isinstance(genotype, str):
        raise ValueError(f"a genotype is a list of (op, input) pairs, got the string {genotype!r}")
    pairs: list[tuple[str, int]] = []
    for item in genotype:
        if isinstance(item, str) or len(item) != 2:
            raise ValueError(f"genotype entries must be (op, input) pairs, got {item!r}")
        op, inp = item
        pairs.append((str(op), int(inp)))
    if len(pairs) != len(DARTS_EDGES):
        raise ValueError(f"a genotype needs {len(DARTS_EDGES)} (op, input) pairs (2 per node 2..5), got {len(pairs)}")
    for edge, (op, inp) in zip(DARTS_EDGES, pairs):
        node = int(edge.split("_")[0])
        if op not in DARTS_OPS:
            raise ValueError(f"edge {edge}: unknown DARTS op {op!r}; expected one of {list(DARTS_OPS)}")
        if not 0 <= inp < node:
            raise ValueError(f"edge {edge}: node {node} can only read nodes 0..{node - 1}, got input {inp}")
    return pairs


def reduction_indices(layers: int) -> tuple[int, ...]:
    """Positions of the reduction cells among ``layers`` cells (1/3 and 2/3 of the depth, DARTS)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


class DartsCell(nn.Module):
    """One DARTS cell of a discrete genotype (see the module docstring)."""

    def __init__(
        self,
        genotype: Genotype,
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = bool(reduction)
        self.preprocess0: nn.Module = (
            FactorizedReduce(c_prev_prev, channels) if reduction_prev else ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        )
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        pairs = darts_genotype(genotype)
        self.inputs = [inp for _, inp in pairs]
        self.edges = nn.ModuleDict(
            {
                edge: build_darts_op(op, channels, 2 if self.reduction and inp < 2 else 1)
                for edge, (op, inp) in zip(DARTS_EDGES, pairs)
            }
        )

    def forward(self, s0: Tensor, s1: Tensor) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for n in DARTS_NODES:
            states.append(sum(self.edges[f"{n}_{k}"](states[self.inputs[2 * (n - 2) + k]]) for k in (0, 1)))
        return torch.cat(states[2:], dim=1)


class DartsNet(nn.Module):
    """DARTS network for 32x32 images of a normal and a reduction genotype.

    Args:
        normal: genotype of the normal cells (8 ``(op, input)`` pairs).
        reduce: genotype of the reduction cells.
        C: initial channels (DARTS' evaluation: 36; 16 keeps it quick on a CPU).
        layers: number of cells (DARTS' evaluation: 20; at least 3, so both cell kinds occur).
        num_classes: classifier outputs.
        stem_multiplier: stem width is ``stem_multiplier * C`` (DARTS: 3).
    """

    def __init__(
        self,
        normal: Genotype,
        reduce: Genotype,
        C: int = 16,
        layers: int = 8,
        num_classes: int = 10,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        C, layers = int(C), int(layers)
        if layers < 3:
            raise ValueError(f"layers must be >= 3 (normal and reduction cells), got {layers}")
        if C < 1 or C % 2:
            raise ValueError(f"C must be a positive even number (FactorizedReduce halves it), got {C}")
        self.normal = darts_genotype(normal)
        self.reduce = darts_genotype(reduce)
        c_stem = int(stem_multiplier) * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        reductions = reduction_indices(layers)
        c_prev_prev, c_prev, c_curr = c_stem, c_stem, C
        reduction_prev = False
        cells: dict[str, nn.Module] = {}
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            genotype = self.reduce if reduction else self.normal
            cells[f"{'reduce' if reduction else 'normal'}_{i}"] = DartsCell(
                genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev
            )
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, len(DARTS_NODES) * c_curr
        self.cells = nn.ModuleDict(cells)
        self.classifier = nn.Linear(c_prev, int(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells.values():
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(s1, 1), 1))
