"""Autograd functions that run the exact forward of ``nn.Linear`` / ``nn.Conv2d`` and a modified backward.

Every bio-inspired rule keeps the weight gradient local and exact, ``dW = δ·xᵀ`` (for a convolution, the
correlation of ``δ`` with the input), and changes only the error sent down to the layer's input:

* matrix feedback (fa, usf, brsf, frsf):  ``δ_in = Bᵀ·δ``  with a feedback tensor ``B`` shaped like ``W``;
* direct feedback alignment (dfa):         ``δ_in = B·e``   with ``e`` the network's output error.

See Hamzaoui & Baghdadi, "Neural Architecture Search with Mixed Bio-inspired Learning Rules",
ECAI 2025 (arXiv:2507.13485), and Nøkland, "Direct Feedback Alignment Provides Learning in Deep Neural
Networks", NeurIPS 2016.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd import Function

__all__ = [
    "ErrorTap",
    "capture_output_error",
    "dfa_conv2d",
    "dfa_linear",
    "feedback_conv2d",
    "feedback_linear",
]


class ErrorTap:
    """Holds the network's output error ``e = ∂L/∂y`` of the current backward pass.

    The output layer wraps its result with :func:`capture_output_error`; autograd reaches that node before
    any layer below it, so every DFA layer can read ``e`` later in the same backward pass.
    """

    def __init__(self, output_layer: str = "") -> None:
        self.error: Optional[Tensor] = None
        self.output_layer = output_layer
        self.last_layer_was_output = True

    def read(self) -> Tensor:
        if self.error is None:
            raise RuntimeError(
                "dfa: no output error was captured in this backward pass. The loss must be computed from "
                "the output of the layer named as dfa output layer (pass `output_layer=` to name it)."
            )
        return self.error


class _CaptureError(Function):
    @staticmethod
    def forward(ctx: Any, output: Tensor, tap: ErrorTap) -> Tensor:
        ctx.tap = tap
        return output.view_as(output)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        if not ctx.tap.last_layer_was_output:
            raise RuntimeError(
                f"dfa: another Linear/Conv2d ran after {ctx.tap.output_layer!r}, which dfa takes as the network's "
                "output layer. Name the layer whose output is the network output with `output_layer=`."
            )
        ctx.tap.error = grad_output.detach()
        return grad_output, None


def capture_output_error(output: Tensor, tap: ErrorTap) -> Tensor:
    """Identity whose backward stores ``∂L/∂output`` in ``tap`` (any loss, same backward pass)."""
    return _CaptureError.apply(output, tap)


def _linear_weight_grads(
    ctx: Any, grad_output: Tensor, input: Tensor, has_bias: bool
) -> tuple[Optional[Tensor], Optional[Tensor]]:
    grad_weight = grad_bias = None
    if ctx.needs_input_grad[1]:
        grad_weight = grad_output.reshape(-1, grad_output.shape[-1]).t().mm(input.reshape(-1, input.shape[-1]))
    if has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad_output.reshape(-1, grad_output.shape[-1]).sum(0)
    return grad_weight, grad_bias


class _FeedbackLinear(Function):
    @staticmethod
    def forward(ctx: Any, input: Tensor, weight: Tensor, bias: Optional[Tensor], feedback: Tensor) -> Tensor:
        ctx.save_for_backward(input, feedback)
        ctx.has_bias = bias is not None
        return F.linear(input, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Optional[Tensor], ...]:
        input, feedback = ctx.saved_tensors
        grad_input = grad_output.matmul(feedback) if ctx.needs_input_grad[0] else None
        grad_weight, grad_bias = _linear_weight_grads(ctx, grad_output, input, ctx.has_bias)
        return grad_input, grad_weight, grad_bias, None


class _DFALinear(Function):
    @staticmethod
    def forward(ctx: Any, input: Tensor, weight: Tensor, bias: Optional[Tensor], rule: Any) -> Tensor:
        ctx.save_for_backward(input)
        ctx.has_bias = bias is not None
        ctx.rule = rule
        return F.linear(input, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Optional[Tensor], ...]:
        (input,) = ctx.saved_tensors
        grad_input = ctx.rule.project_error(input) if ctx.needs_input_grad[0] else None
        grad_weight, grad_bias = _linear_weight_grads(ctx, grad_output, input, ctx.has_bias)
        return grad_input, grad_weight, grad_bias, None


def _autocast(input: Tensor, *tensors: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
    """Under autocast, cast the op's tensors to the autocast dtype first, as autocast does for native ops.

    The casts are differentiable, so parameter gradients come back in the parameters' dtype.
    """
    device_type = input.device.type
    if not torch.is_autocast_enabled(device_type):
        return (input, *tensors)
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t if t is None or not t.is_floating_point() else t.to(dtype) for t in (input, *tensors))


def feedback_linear(input: Tensor, weight: Tensor, bias: Optional[Tensor], feedback: Tensor) -> Tensor:
    """``F.linear`` whose backward sends ``δ_in = δ·B`` (``B`` shaped like ``weight``) down to ``input``."""
    return _FeedbackLinear.apply(*_autocast(input, weight, bias, feedback))


def dfa_linear(input: Tensor, weight: Tensor, bias: Optional[Tensor], rule: Any) -> Tensor:
    """``F.linear`` whose backward sends ``rule.project_error(input)`` (``B·e``) down to ``input``."""
    return _DFALinear.apply(*_autocast(input, weight, bias), rule)


def _conv_grads(
    ctx: Any, grad_output: Tensor, input: Tensor, weight_for_input: Tensor, need_input: bool
) -> tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
    # One native kernel call gives the input gradient through `weight_for_input` and the exact weight and
    # bias gradients (which depend on the weight's shape only), so a rule costs what backprop costs.
    need_weight = ctx.needs_input_grad[1]
    need_bias = ctx.bias_sizes is not None and ctx.needs_input_grad[2]
    grad_input, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
        grad_output,
        input,
        weight_for_input,
        ctx.bias_sizes,
        ctx.stride,
        ctx.padding,
        ctx.dilation,
        False,
        [0, 0],
        ctx.groups,
        [need_input, need_weight, need_bias],
    )
    return grad_input, grad_weight, grad_bias


def _save_conv_args(ctx: Any, bias: Optional[Tensor], weight: Tensor, stride: Sequence[int],
                    padding: Sequence[int], dilation: Sequence[int], groups: int) -> None:
    ctx.bias_sizes = [weight.shape[0]] if bias is not None else None
    ctx.stride, ctx.padding, ctx.dilation, ctx.groups = list(stride), list(padding), list(dilation), groups
    ctx.weight_shape = weight.shape


class _FeedbackConv2d(Function):
    @staticmethod
    def forward(ctx: Any, input: Tensor, weight: Tensor, bias: Optional[Tensor], feedback: Tensor,
                stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
        _save_conv_args(ctx, bias, weight, stride, padding, dilation, groups)
        ctx.save_for_backward(input, feedback)
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Optional[Tensor], ...]:
        input, feedback = ctx.saved_tensors
        grads = _conv_grads(ctx, grad_output, input, feedback, ctx.needs_input_grad[0])
        return (*grads, None, None, None, None, None)


class _DFAConv2d(Function):
    @staticmethod
    def forward(ctx: Any, input: Tensor, weight: Tensor, bias: Optional[Tensor], rule: Any,
                stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
        _save_conv_args(ctx, bias, weight, stride, padding, dilation, groups)
        ctx.save_for_backward(input, weight)
        ctx.rule = rule
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Optional[Tensor], ...]:
        input, weight = ctx.saved_tensors
        # The input gradient through W would be discarded: it is never computed.
        _, grad_weight, grad_bias = _conv_grads(ctx, grad_output, input, weight, False)
        grad_input = ctx.rule.project_error(input) if ctx.needs_input_grad[0] else None
        return grad_input, grad_weight, grad_bias, None, None, None, None, None


def _explicit_padding(input: Tensor, weight: Tensor, padding: Any, dilation: Sequence[int]) -> tuple[Tensor, list[int]]:
    """Resolve ``'same'``/``'valid'`` padding into integers (pre-padding the input when 'same' is uneven)."""
    if not isinstance(padding, str):
        return input, list(padding)
    if padding == "valid":
        return input, [0, 0]
    totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
    if all(t % 2 == 0 for t in totals):
        return input, [t // 2 for t in totals]
    # Uneven 'same' padding: extra zero on the right/bottom, as torch does.
    pad = []
    for total in reversed(totals):
        pad += [total // 2, total - total // 2]
    return F.pad(input, pad), [0, 0]


def feedback_conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor], feedback: Tensor,
                    stride: Sequence[int], padding: Any, dilation: Sequence[int], groups: int) -> Tensor:
    """``F.conv2d`` whose backward sends down the transposed convolution of ``δ`` with ``B`` (not ``W``)."""
    input, padding = _explicit_padding(input, weight, padding, dilation)
    input, weight, bias, feedback = _autocast(input, weight, bias, feedback)
    return _FeedbackConv2d.apply(input, weight, bias, feedback, stride, padding, dilation, groups)


def dfa_conv2d(input: Tensor, weight: Tensor, bias: Optional[Tensor], rule: Any,
               stride: Sequence[int], padding: Any, dilation: Sequence[int], groups: int) -> Tensor:
    """``F.conv2d`` whose backward sends ``rule.project_error(input)`` (``B·e``) down to ``input``."""
    input, padding = _explicit_padding(input, weight, padding, dilation)
    input, weight, bias = _autocast(input, weight, bias)
    return _DFAConv2d.apply(input, weight, bias, rule, stride, padding, dilation, groups)
