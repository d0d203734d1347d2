"""Learning rules: how a layer sends its error down, and the registry that maps names to rules.

All rules keep the local weight gradient ``dW = δ·xᵀ`` exact and change only the error sent to the layer's
input (Hamzaoui & Baghdadi, ECAI 2025, arXiv:2507.13485, Sec. 2):

=========  ==============================================================================================
``bp``     ``δ_in = Wᵀ·δ`` (exact backprop; native autograd).
``fa``     ``δ_in = Bᵀ·δ``, ``B`` fixed random, never trained (Lillicrap et al., 2016).
``usf``    ``B = s·sign(W)``, ``s = √(2/(fan_in+fan_out))``, recomputed from the current ``W`` every step.
``brsf``   ``B = |R_t|·sign(W)``, ``R_t`` redrawn for every training batch (never in eval).
``frsf``   ``B = |R|·sign(W)``, ``R`` drawn once and fixed.
``dfa``    ``δ_in = B·e``: a fixed random projection of the network's output error ``e`` (Nøkland, 2016).
           The layer below receives ``B·e`` through the exact derivative of the activation (and
           BatchNorm) between them, which is DFA's ``δa = (B·e) ⊙ f'(a)``.
=========  ==============================================================================================

Each rule is a small :class:`torch.nn.Module` attached to one layer as ``layer.feedback``; its feedback
tensors are buffers, so optimizers never see them and checkpoints hold them.

A third party adds a rule with :func:`register_rule`::

    @register_rule("my_rule")
    class MyRule(MatrixFeedbackRule):
        def feedback_matrix(self, weight):
            return weight.detach() * 0.5
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_biorules.functional import (
    ErrorTap,
    dfa_conv2d,
    dfa_linear,
    feedback_conv2d,
    feedback_linear,
)

__all__ = [
    "BackpropRule",
    "BatchwiseRandomSignFeedback",
    "DirectFeedbackAlignment",
    "FeedbackAlignment",
    "FeedbackRule",
    "FixedRandomSignFeedback",
    "INITIALIZERS",
    "MatrixFeedbackRule",
    "UniformSignFeedback",
    "available_rules",
    "get_rule",
    "register_rule",
    "unregister_rule",
]

_RULES: Dict[str, Type["FeedbackRule"]] = {}
R = TypeVar("R", bound=Type["FeedbackRule"])


def register_rule(name: str) -> Callable[[R], R]:
    """Class decorator adding a :class:`FeedbackRule` subclass to the registry under ``name``."""

    def decorator(cls: R) -> R:
        if not (isinstance(cls, type) and issubclass(cls, FeedbackRule)):
            raise TypeError(f"register_rule({name!r}) expects a FeedbackRule subclass, got {cls!r}")
        if name in _RULES and _RULES[name] is not cls:
            raise ValueError(f"A rule named {name!r} is already registered ({_RULES[name].__name__}).")
        cls.name = name
        _RULES[name] = cls
        return cls

    return decorator


def unregister_rule(name: str) -> None:
    """Remove the rule registered as ``name`` (e.g. a plug-in's rule in a test)."""
    get_rule(name)
    del _RULES[name]


def available_rules() -> List[str]:
    """Sorted names of all registered rules."""
    return sorted(_RULES)


def get_rule(name: str) -> Type["FeedbackRule"]:
    """The rule class registered as ``name``; a clear ``ValueError`` names the valid choices otherwise."""
    try:
        return _RULES[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown learning rule {name!r}. Valid rules: {', '.join(available_rules())}.") from None


def _xavier(t: Tensor, g: torch.Generator) -> Tensor:
    return nn.init.xavier_normal_(t, generator=g)


def _xavier_uniform(t: Tensor, g: torch.Generator) -> Tensor:
    return nn.init.xavier_uniform_(t, generator=g)


def _kaiming(t: Tensor, g: torch.Generator) -> Tensor:
    return nn.init.kaiming_normal_(t, nonlinearity="relu", generator=g)


def _kaiming_uniform(t: Tensor, g: torch.Generator) -> Tensor:
    return nn.init.kaiming_uniform_(t, nonlinearity="relu", generator=g)


INITIALIZERS: Dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {
    "xavier": _xavier,
    "xavier_uniform": _xavier_uniform,
    "kaiming": _kaiming,
    "kaiming_uniform": _kaiming_uniform,
}


def check_init(init: str) -> str:
    if init not in INITIALIZERS:
        raise ValueError(f"Unknown feedback init {init!r}. Valid choices: {', '.join(sorted(INITIALIZERS))}.")
    return init


def _seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) % (2**63))
    return generator


def _fans(weight_shape: Sequence[int]) -> Tuple[int, int]:
    receptive = math.prod(weight_shape[2:]) if len(weight_shape) > 2 else 1
    return weight_shape[1] * receptive, weight_shape[0] * receptive


class FeedbackRule(nn.Module):
    """Base class: one instance per layer, stored as ``layer.feedback``.

    Subclasses implement :meth:`linear` and :meth:`conv2d` (the layer's forward with the rule's backward).

    Args:
        weight: the layer's weight (shape only, plus device and dtype; never kept).
        init: how random feedback tensors are drawn, one of :data:`INITIALIZERS`.
        seed: seeds every random draw of this rule, so a rule is reproducible and identical on every
            rank of a distributed run; saved in checkpoints.
    """

    name: ClassVar[str] = "base"
    supported_layers: ClassVar[Tuple[Type[nn.Module], ...]] = (nn.Linear, nn.Conv2d)

    def __init__(self, weight: Tensor, init: str = "xavier", seed: int = 0) -> None:
        super().__init__()
        self.init = check_init(init)
        self.register_buffer("seed", torch.tensor(int(seed) % (2**63), dtype=torch.long))

    def draw(self, shape: Sequence[int], device: torch.device, dtype: torch.dtype, offset: int = 0) -> Tensor:
        """A random tensor from the rule's initializer, determined by ``(seed, offset)``."""
        return self.fill_(torch.empty(tuple(shape), device=device, dtype=dtype), offset)

    def fill_(self, tensor: Tensor, offset: int = 0) -> Tensor:
        """Overwrite ``tensor`` in place with the draw determined by ``(seed, offset)``."""
        generator = _seeded_generator(tensor.device, int(self.seed) + 0x9E3779B97F4A7C15 * offset)
        return INITIALIZERS[self.init](tensor, generator)

    def linear(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    def conv2d(self, input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int],
               padding: object, dilation: Sequence[int], groups: int) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"init={self.init!r}"


@register_rule("bp")
class BackpropRule(FeedbackRule):
    """Exact backpropagation, ``B = W``: the layer runs native ``F.linear``/``F.conv2d``."""

    def linear(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        return F.linear(input, weight, bias)

    def conv2d(self, input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int],
               padding: object, dilation: Sequence[int], groups: int) -> Tensor:
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    def extra_repr(self) -> str:
        return ""


class MatrixFeedbackRule(FeedbackRule):
    """Rules that send ``δ_in = Bᵀ·δ`` with a feedback tensor ``B`` shaped like ``W``.

    Subclasses implement :meth:`feedback_matrix`; it is called once per forward pass with gradients on.
    """

    def feedback_matrix(self, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def linear(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if not torch.is_grad_enabled():
            return F.linear(input, weight, bias)
        return feedback_linear(input, weight, bias, self.feedback_matrix(weight))

    def conv2d(self, input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int],
               padding: object, dilation: Sequence[int], groups: int) -> Tensor:
        if not torch.is_grad_enabled():
            return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
        return feedback_conv2d(input, weight, bias, self.feedback_matrix(weight), stride, padding, dilation, groups)


@register_rule("fa")
class FeedbackAlignment(MatrixFeedbackRule):
    """Feedback alignment (Lillicrap et al., 2016): ``B`` fixed random, drawn once from ``init``."""

    def __init__(self, weight: Tensor, init: str = "xavier", seed: int = 0) -> None:
        super().__init__(weight, init, seed)
        self.register_buffer("matrix", self.draw(weight.shape, weight.device, weight.dtype))

    def feedback_matrix(self, weight: Tensor) -> Tensor:
        return self.matrix


@register_rule("usf")
class UniformSignFeedback(MatrixFeedbackRule):
    """Uniform sign-concordant feedback: ``B = s·sign(W)``, ``s = √(2/(fan_in+fan_out))``, from the current ``W``."""

    def __init__(self, weight: Tensor, init: str = "xavier", seed: int = 0) -> None:
        super().__init__(weight, init, seed)
        fan_in, fan_out = _fans(weight.shape)
        self.scale = math.sqrt(2.0 / (fan_in + fan_out))

    def feedback_matrix(self, weight: Tensor) -> Tensor:
        return torch.sign(weight.detach()).mul_(self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}"


@register_rule("frsf")
class FixedRandomSignFeedback(MatrixFeedbackRule):
    """Fixed random-magnitude sign-concordant feedback: ``B = |R|·sign(W)``, ``R`` drawn once."""

    def __init__(self, weight: Tensor, init: str = "xavier", seed: int = 0) -> None:
        super().__init__(weight, init, seed)
        self.register_buffer("magnitude", self.draw(weight.shape, weight.device, weight.dtype).abs_())

    def feedback_matrix(self, weight: Tensor) -> Tensor:
        return torch.sign(weight.detach()).mul_(self.magnitude)


@register_rule("brsf")
class BatchwiseRandomSignFeedback(MatrixFeedbackRule):
    """Batchwise random-magnitude sign-concordant feedback: ``B = |R_t|·sign(W)``.

    ``R_t`` is redrawn at every forward pass in training mode (one per training batch), never in eval.
    It is a function of ``(seed, step)``, so it is identical on every rank and after a resume; the
    current ``|R_t|`` and ``step`` are buffers saved in checkpoints.
    """

    def __init__(self, weight: Tensor, init: str = "xavier", seed: int = 0) -> None:
        super().__init__(weight, init, seed)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("magnitude", self.draw(weight.shape, weight.device, weight.dtype).abs_())

    def redraw(self) -> None:
        """Draw a new ``|R_t|`` (called once per training batch)."""
        self.step += 1
        with torch.no_grad():
            self.fill_(self.magnitude, offset=int(self.step)).abs_()

    def feedback_matrix(self, weight: Tensor) -> Tensor:
        if self.training:
            self.redraw()
        return torch.sign(weight.detach()).mul_(self.magnitude)


@register_rule("dfa")
class DirectFeedbackAlignment(FeedbackRule):
    """Direct feedback alignment (Nøkland, 2016): the error sent down is ``B·e``.

    ``e = ∂L/∂y`` is the gradient at the network's output, captured in the same backward pass by an
    :class:`~lightning_biorules.functional.ErrorTap` that :func:`~lightning_biorules.apply_rules` attaches to
    the output layer, so any loss works in an unchanged ``training_step``. ``B`` (``[dim(e), *input_shape]``)
    is fixed random; it is drawn on the first backward pass, when ``dim(e)`` and the input shape are known,
    from the rule's seed. Since the input gradient through ``W`` would be discarded, it is never computed.
    """

    def __init__(self, weight: Tensor, init: str = "xavier", seed: int = 0) -> None:
        super().__init__(weight, init, seed)
        self.register_buffer("matrix", torch.empty(0, device=weight.device, dtype=weight.dtype))
        self.tap: Optional[ErrorTap] = None

    def project_error(self, input: Tensor) -> Tensor:
        """``B·e`` shaped and typed like the layer's ``input`` (called from the backward pass)."""
        if self.tap is None:
            raise RuntimeError("dfa rule is not connected to an output error tap; convert with apply_rules().")
        error = self.tap.read()
        error = error.reshape(error.shape[0], -1).to(self.matrix.dtype)  # the matrix keeps the weight's dtype
        per_sample = math.prod(input.shape[1:])
        if self.matrix.numel() == 0:
            # Drawn as [per_sample, dim(e)] so that xavier/kaiming see fan_in = dim(e) and fan_out = input size.
            self.matrix = self.draw((per_sample, error.shape[1]), error.device, self.matrix.dtype).t().contiguous()
        if self.matrix.shape != (error.shape[1], per_sample):
            raise RuntimeError(
                f"dfa feedback matrix has shape {tuple(self.matrix.shape)} but this pass needs "
                f"{(error.shape[1], per_sample)} (output error size, per-sample input size); input sizes must "
                "stay fixed under dfa."
            )
        return error.mm(self.matrix).reshape(input.shape).to(input.dtype)

    def linear(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if not torch.is_grad_enabled():
            return F.linear(input, weight, bias)
        return dfa_linear(input, weight, bias, self)

    def conv2d(self, input: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int],
               padding: object, dilation: Sequence[int], groups: int) -> Tensor:
        if not torch.is_grad_enabled():
            return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
        return dfa_conv2d(input, weight, bias, self, stride, padding, dilation, groups)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:  # type: ignore[no-untyped-def]
        # The matrix is drawn lazily: adopt the checkpoint's shape before the default loader copies it.
        saved = state_dict.get(prefix + "matrix")
        if saved is not None and saved.shape != self.matrix.shape:
            self.matrix = torch.empty_like(saved, device=self.matrix.device, dtype=self.matrix.dtype)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
