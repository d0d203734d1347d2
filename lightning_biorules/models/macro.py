"""A small macro search-space network for 32x32 images.

``MacroNet`` is a plain chain of searchable layers: ``stem`` (conv3x3 + BN + ReLU), then
``layers.0 .. layers.{N-1}`` (each one op from :data:`MACRO_OPS`, an ``nn.Sequential`` of
Conv2d(s) + BN + ReLU), global average pooling and ``classifier`` (``nn.Linear``).

The layers are grouped into ``len(channels)`` stages of ``layers_per_stage`` layers. The first
layer of every stage but the first halves the resolution (stride 2) and changes the channel
count (the first stage keeps the stem's 32x32 resolution and width, as in CIFAR ResNets), so
with the default three stages the feature maps are 32x32 -> 16x16 -> 8x8. ``skip_connect`` is
the identity in a normal layer and a 1x1 stride-2 convolution + BN in a reducing layer.

This module deliberately does not import the backbone registry (``models/__init__.py``
registers ``MacroNet`` as the ``"macro"`` backbone), so it can be imported on its own.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

__all__ = ["MACRO_OPS", "MacroNet", "build_op", "layer_shapes", "macro_rule_space"]

#: Candidate operations of one searchable layer, in the order NNI's choices list them.
MACRO_OPS: tuple[str, ...] = (
    "conv3x3",
    "conv5x5",
    "dil_conv3x3",
    "sep_conv3x3",
    "sep_conv5x5",
    "skip_connect",
)


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


def _sep_conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    # depthwise (groups=C) then pointwise 1x1
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=kernel // 2, groups=c_in, bias=False),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=False),
    )


def _is_identity(op: str, c_in: int, c_out: int, stride: int) -> bool:
    return op == "skip_connect" and stride == 1 and c_in == c_out


def build_op(op: str, c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Build one candidate operation (always an ``nn.Sequential``; ``skip_connect`` in a normal
    layer is an empty one, i.e. the identity)."""
    if op == "conv3x3":
        return _conv_bn_relu(c_in, c_out, 3, stride)
    if op == "conv5x5":
        return _conv_bn_relu(c_in, c_out, 5, stride)
    if op == "dil_conv3x3":
        return _conv_bn_relu(c_in, c_out, 3, stride, dilation=2)
    if op == "sep_conv3x3":
        return _sep_conv(c_in, c_out, 3, stride)
    if op == "sep_conv5x5":
        return _sep_conv(c_in, c_out, 5, stride)
    if op == "skip_connect":
        if _is_identity(op, c_in, c_out, stride):
            return nn.Sequential()  # identity
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
            nn.BatchNorm2d(c_out),
        )
    raise ValueError(f"unknown macro op {op!r}; expected one of {list(MACRO_OPS)}")


def _stage_layout(num_layers: int, num_stages: int, layers_per_stage: int | None) -> int:
    if num_stages < 1:
        raise ValueError("channels must name at least one stage")
    if layers_per_stage is None:
        if num_layers % num_stages != 0:
            raise ValueError(
                f"{num_layers} ops cannot be split evenly into {num_stages} stages; "
                "pass layers_per_stage or a matching number of ops"
            )
        layers_per_stage = num_layers // num_stages
    if layers_per_stage < 1 or layers_per_stage * num_stages != num_layers:
        raise ValueError(
            f"got {num_layers} ops but {num_stages} stages x {layers_per_stage} layers per stage"
        )
    return layers_per_stage


def layer_shapes(
    num_layers: int, channels: Sequence[int] = (16, 32, 64), layers_per_stage: int | None = None
) -> list[tuple[int, int, int]]:
    """``(c_in, c_out, stride)`` of each searchable layer of a :class:`MacroNet`."""
    channels = [int(c) for c in channels]
    per_stage = _stage_layout(num_layers, len(channels), layers_per_stage)
    shapes = []
    c_in = channels[0]
    for i in range(num_layers):
        stage, pos = divmod(i, per_stage)
        c_out = channels[stage]
        shapes.append((c_in, c_out, 2 if (pos == 0 and stage > 0) else 1))
        c_in = c_out
    return shapes


class MacroNet(nn.Module):
    """Chain of searchable layers for 32x32 inputs.

    Args:
        ops: one op name from :data:`MACRO_OPS` per layer; ``len(ops)`` must equal
            ``len(channels) * layers_per_stage``.
        num_classes: outputs of ``classifier``.
        channels: width of each stage (the stem outputs ``channels[0]``).
        layers_per_stage: layers in each stage; inferred from ``len(ops)`` when ``None``.
    """

    def __init__(
        self,
        ops: Sequence[str],
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32, 64),
        layers_per_stage: int | None = None,
    ) -> None:
        super().__init__()
        ops = [str(op) for op in ops]
        channels = [int(c) for c in channels]
        if not ops:
            raise ValueError("MacroNet needs at least one op")
        for op in ops:
            if op not in MACRO_OPS:
                raise ValueError(f"unknown macro op {op!r}; expected one of {list(MACRO_OPS)}")
        per_stage = _stage_layout(len(ops), len(channels), layers_per_stage)

        self.ops = tuple(ops)
        self.channels = tuple(channels)
        self.layers_per_stage = per_stage

        self.stem = _conv_bn_relu(3, channels[0], 3, 1)
        shapes = layer_shapes(len(ops), channels, per_stage)
        self.layers = nn.ModuleList(build_op(op, *shape) for op, shape in zip(ops, shapes))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
        x = self.pool(x).flatten(1)
        return self.classifier(x)


def macro_rule_space(
    rules: Sequence[str],
    stem_rule: str = "bp",
    classifier_rule: str = "bp",
    ops: Sequence[str] | None = None,
    channels: Sequence[int] = (16, 32, 64),
    layers_per_stage: int | None = None,
) -> dict[str, str]:
    """Map one learning rule per searchable layer to ``rule_space`` glob patterns.

    Returns ``{"stem.*": stem_rule, "layers.0.*": rules[0], ..., "classifier": classifier_rule}``
    (insertion-ordered; the patterns never overlap, so first-match order does not matter).

    With ``ops`` (and the net's ``channels`` / ``layers_per_stage``), layers that are the
    identity (``skip_connect`` in a non-reducing layer: no weights) get no pattern, since the
    rule engine rejects patterns that match no layer.
    """
    skip: set[int] = set()
    if ops is not None:
        if len(ops) != len(rules):
            raise ValueError(f"{len(ops)} ops but {len(rules)} rules")
        shapes = layer_shapes(len(ops), channels, layers_per_stage)
        skip = {i for i, (op, shape) in enumerate(zip(ops, shapes)) if _is_identity(str(op), *shape)}
    space: dict[str, str] = {"stem.*": str(stem_rule)}
    for i, rule in enumerate(rules):
        if i not in skip:
            space[f"layers.{i}.*"] = str(rule)
    space["classifier"] = str(classifier_rule)
    return space
