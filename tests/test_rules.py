"""Each rule's backward against its closed form, computed by hand from B."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_biorules import (
    MatrixFeedbackRule,
    apply_rules,
    available_rules,
    get_rule,
    register_rule,
    remove_rules,
    rule_map,
)

MATRIX_RULES = ["fa", "usf", "brsf", "frsf"]
CONV_CASES = [
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, bias=True),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=1, padding=2, dilation=2, bias=False),
    dict(in_channels=4, out_channels=8, kernel_size=3, stride=2, padding=1, groups=2, bias=True),
    dict(in_channels=6, out_channels=6, kernel_size=5, stride=1, padding="same", groups=3, dilation=1, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=4, stride=1, padding="same", bias=True),  # uneven 'same'
    dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, padding_mode="reflect", bias=True),
]


def _feedback_used(layer: nn.Module) -> torch.Tensor:
    """B for the backward just run, computed by hand from the rule's definition."""
    rule, w = layer.feedback, layer.weight.detach()
    if rule.name == "fa":
        return rule.matrix
    if rule.name == "usf":
        receptive = math.prod(w.shape[2:]) if w.dim() > 2 else 1
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        return math.sqrt(2.0 / (fan_in + fan_out)) * torch.sign(w)
    if rule.name in ("brsf", "frsf"):
        return rule.magnitude * torch.sign(w)
    raise AssertionError(rule.name)


def _grads(layer, x, grad_out):
    x = x.clone().requires_grad_(True)
    for p in layer.parameters():
        p.grad = None
    out = layer(x)
    out.backward(grad_out)
    return x.grad, {n: p.grad.clone() for n, p in layer.named_parameters()}


def test_registry_lists_the_six_rules():
    assert available_rules() == ["bp", "brsf", "dfa", "fa", "frsf", "usf"]
    with pytest.raises(ValueError, match=r"Unknown learning rule 'fx'.*bp, brsf, dfa, fa, frsf, usf"):
        get_rule("fx")


@pytest.mark.parametrize("rule", MATRIX_RULES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matrix_rules_match_closed_form(rule, bias):
    torch.manual_seed(0)
    layer = nn.Linear(5, 3, bias=bias)
    reference = copy.deepcopy(layer)
    apply_rules(layer, rule, seed=1)
    x, delta = torch.randn(7, 5), torch.randn(7, 3)
    grad_x, grads = _grads(layer, x, delta)
    B = _feedback_used(layer)
    assert not torch.equal(B, layer.weight.detach())
    torch.testing.assert_close(grad_x, delta @ B)  # δ_in = Bᵀδ (row-major: δ·B)
    torch.testing.assert_close(grads["weight"], delta.t() @ x)  # dW = δ·xᵀ, the true local gradient
    _, true_grads = _grads(reference, x, delta)
    for name in true_grads:
        torch.testing.assert_close(grads[name], true_grads[name])


@pytest.mark.parametrize("rule", MATRIX_RULES)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items() if k not in ("in_channels", "out_channels")))
def test_conv_matrix_rules_match_closed_form(rule, case):
    torch.manual_seed(0)
    layer = nn.Conv2d(**case)
    reference = copy.deepcopy(layer)
    apply_rules(layer, rule, seed=2)
    x = torch.randn(2, case["in_channels"], 9, 9)
    delta = torch.randn_like(reference(x))
    grad_x, grads = _grads(layer, x, delta)
    B = _feedback_used(layer)
    # Closed form: the input gradient of the same convolution with weights B, i.e. conv_transpose(δ, B).
    probe = copy.deepcopy(reference)
    with torch.no_grad():
        probe.weight.copy_(B)
    expected_x, _ = _grads(probe, x, delta)
    torch.testing.assert_close(grad_x, expected_x)
    _, true_grads = _grads(reference, x, delta)
    assert set(grads) == set(true_grads)
    for name in true_grads:
        torch.testing.assert_close(grads[name], true_grads[name])


def test_conv_closed_form_against_conv_transpose_formula():
    torch.manual_seed(0)
    layer = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    apply_rules(layer, "fa", seed=3)
    x = torch.randn(2, 4, 10, 10)
    delta = torch.randn(2, 6, 5, 5)
    grad_x, grads = _grads(layer, x, delta)
    B = layer.feedback.matrix
    expected = F.conv_transpose2d(delta, B, stride=2, padding=1, output_padding=1, groups=2)
    torch.testing.assert_close(grad_x, expected)
    torch.testing.assert_close(grads["bias"], delta.sum((0, 2, 3)))


@pytest.mark.parametrize("make", [lambda: nn.Linear(6, 4), lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2)])
def test_fa_with_b_equal_w_is_backprop(make):
    torch.manual_seed(0)
    net = nn.Sequential(make(), nn.Tanh())
    reference = copy.deepcopy(net)
    apply_rules(net, "fa")
    net[0].feedback.matrix.copy_(net[0].weight.detach())
    x = torch.randn(3, 6) if isinstance(net[0], nn.Linear) else torch.randn(3, 4, 8, 8)
    g_a, grads_a = _grads(net, x, torch.ones_like(reference(x)))
    g_b, grads_b = _grads(reference, x, torch.ones_like(reference(x)))
    assert torch.equal(g_a, g_b)
    for name in grads_b:
        assert torch.equal(grads_a[name], grads_b[name])


def test_bp_rule_is_native_backprop():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    reference = copy.deepcopy(net)
    apply_rules(net, "bp")
    x = torch.randn(2, 3, 4, 4)
    g_a, grads_a = _grads(net, x, torch.ones(2, 2))
    g_b, grads_b = _grads(reference, x, torch.ones(2, 2))
    assert torch.equal(g_a, g_b) and all(torch.equal(grads_a[n], grads_b[n]) for n in grads_b)


def test_usf_uses_sign_of_current_weight_after_optimizer_step():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    apply_rules(layer, "usf")
    opt = torch.optim.SGD(layer.parameters(), lr=10.0)  # large steps flip signs
    x, delta = torch.randn(5, 4), torch.randn(5, 3)
    sign_before = torch.sign(layer.weight.detach()).clone()
    layer(x).backward(delta)
    opt.step()
    assert not torch.equal(sign_before, torch.sign(layer.weight.detach()))
    grad_x, _ = _grads(layer, x, delta)
    s = math.sqrt(2.0 / (4 + 3))
    torch.testing.assert_close(grad_x, delta @ (s * torch.sign(layer.weight.detach())))


def test_brsf_redraws_each_training_step_not_in_eval():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    apply_rules(layer, "brsf")
    x, delta = torch.randn(5, 4), torch.randn(5, 3)
    seen = []
    for _ in range(2):
        grad_x, _ = _grads(layer, x, delta)
        B = _feedback_used(layer)
        torch.testing.assert_close(grad_x, delta @ B)
        seen.append(B.clone())
    assert not torch.equal(seen[0], seen[1])
    assert (torch.sign(seen[0]) == torch.sign(seen[1])).all()  # sign-concordant with W both times
    layer.eval()
    magnitude = layer.feedback.magnitude.clone()
    step = int(layer.feedback.step)
    grad_x, _ = _grads(layer, x, delta)  # eval forward with gradients on: no redraw
    assert torch.equal(layer.feedback.magnitude, magnitude) and int(layer.feedback.step) == step
    torch.testing.assert_close(grad_x, delta @ (magnitude * torch.sign(layer.weight.detach())))


def test_frsf_magnitude_stays_fixed():
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3, padding=1)
    apply_rules(layer, "frsf")
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    magnitude = layer.feedback.magnitude.clone()
    for _ in range(3):
        layer(torch.randn(2, 3, 5, 5)).square().sum().backward()
        opt.step()
    assert torch.equal(layer.feedback.magnitude, magnitude)
    assert (magnitude >= 0).all()


@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
def test_dfa_hidden_gradient_is_projected_output_error_through_activation(activation):
    """Two-layer MLP y = W2 f(W1 x + b1) + b2, cross-entropy loss; all by hand."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), activation(), nn.Linear(7, 3))
    apply_rules(net, "dfa")
    x, target = torch.randn(4, 5), torch.tensor([0, 2, 1, 2])
    xg = x.clone().requires_grad_(True)
    F.cross_entropy(net(xg), target).backward()

    W1, b1, W2 = net[0].weight.detach(), net[0].bias.detach(), net[2].weight.detach()
    a1 = x @ W1.t() + b1
    h1 = activation()(a1)
    y = h1 @ W2.t() + net[2].bias.detach()
    e = (torch.softmax(y, 1) - F.one_hot(target, 3)) / 4  # ∂L/∂y for the mean cross-entropy
    B2, B1 = net[2].feedback.matrix, net[0].feedback.matrix
    assert B2.shape == (3, 7) and B1.shape == (3, 5)
    if activation is nn.Tanh:
        fprime = 1 - torch.tanh(a1) ** 2
    else:
        fprime = (a1 > 0).float()
    delta1 = (e @ B2) * fprime  # DFA: δa1 = (B·e) ⊙ f'(a1)
    torch.testing.assert_close(net[2].weight.grad, e.t() @ h1)  # output layer: exact local gradient
    torch.testing.assert_close(net[0].weight.grad, delta1.t() @ x)
    torch.testing.assert_close(net[0].bias.grad, delta1.sum(0))
    torch.testing.assert_close(xg.grad, e @ B1)


def test_dfa_conv_input_gradient_is_projection_and_weight_gradient_local():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, groups=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    reference = copy.deepcopy(net)
    apply_rules(net, {"0": "dfa", "*": "bp"})
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = net(x)
    out.backward(torch.ones_like(out))
    e = torch.ones(2, 5)
    torch.testing.assert_close(x.grad, (e @ net[0].feedback.matrix).reshape(x.shape))
    reference(x.detach()).backward(torch.ones(2, 5))
    torch.testing.assert_close(net[0].weight.grad, reference[0].weight.grad)  # bp above: exact δ arrives


def test_dfa_wrong_output_layer_is_reported():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 3)  # registered first, runs last
            self.body = nn.Linear(4, 8)

        def forward(self, x):
            return self.head(torch.relu(self.body(x)))

    net = apply_rules(Net(), "dfa")
    with pytest.raises(RuntimeError, match="output_layer"):
        net(torch.randn(2, 4)).sum().backward()
    net = apply_rules(remove_rules(Net()), "dfa", output_layer="head")
    net(torch.randn(2, 4)).sum().backward()
    assert net.head.feedback.matrix.shape == (3, 8) and net.body.weight.grad is not None


def test_rules_inactive_without_grad_and_state_dict_round_trip():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    apply_rules(net, {"0": "dfa", "3": "brsf"})
    x = torch.randn(2, 3, 8, 8)
    net(x).sum().backward()
    fresh = apply_rules(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)),
                        {"0": "dfa", "3": "brsf"})
    fresh.load_state_dict(net.state_dict())  # dfa's lazily drawn matrix and brsf's step come back
    for key, value in net.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x))


def test_feedback_buffers_are_not_parameters_and_parameters_are_kept():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    before = [id(p) for p in net.parameters()]
    apply_rules(net, "fa")
    assert [id(p) for p in net.parameters()] == before
    assert any("feedback.matrix" in k for k in net.state_dict())
    assert not any("feedback" in n for n, _ in net.named_parameters())
    remove_rules(net)
    assert type(net[0]) is nn.Linear and not any("feedback" in k for k in net.state_dict())


def test_seeded_conversion_is_deterministic():
    def build():
        torch.manual_seed(5)
        return apply_rules(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), "fa")

    a, b = build(), build()
    assert torch.equal(a[0].feedback.matrix, b[0].feedback.matrix)
    assert not torch.equal(a[0].feedback.matrix[:2], a[1].feedback.matrix)  # layers get distinct seeds


@pytest.mark.parametrize("init", ["xavier", "kaiming", "xavier_uniform", "kaiming_uniform"])
def test_init_options_scale(init):
    layer = apply_rules(nn.Linear(400, 300), "fa", init=init, seed=0)
    std = layer.feedback.matrix.std().item()
    expected = math.sqrt(2 / 700) if init.startswith("xavier") else math.sqrt(2 / 400)
    assert abs(std - expected) / expected < 0.05


def test_third_party_rule_registers_and_trains():
    @register_rule("half_w_test")
    class HalfW(MatrixFeedbackRule):
        def feedback_matrix(self, weight):
            return weight.detach() * 0.5

    layer = apply_rules(nn.Linear(3, 2), "half_w_test")
    assert rule_map(layer) == {"": "half_w_test"}
    x, delta = torch.randn(4, 3), torch.randn(4, 2)
    grad_x, _ = _grads(layer, x, delta)
    torch.testing.assert_close(grad_x, delta @ (0.5 * layer.weight.detach()))


@pytest.mark.parametrize("rule", ["fa", "usf", "brsf", "frsf", "dfa"])
def test_rules_under_bf16_autocast(rule):
    """Mixed precision: the rule's op runs in the autocast dtype, parameter gradients come back in float32."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    apply_rules(net, rule)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
        assert out.dtype == torch.bfloat16
        F.cross_entropy(out.float(), torch.tensor([0, 2])).backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    for p in net.parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
