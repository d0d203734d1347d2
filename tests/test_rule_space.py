"""rule_space forms and every bad-input error, raised before any training."""

import pytest
import torch
from torch import nn

from lightning_biorules import FeedbackRule, RuleSpace, apply_rules, is_converted, register_rule, rule_map
from lightning_biorules.models import build_backbone


def resnet():
    return build_backbone("resnet20", num_classes=10)


def test_single_rule_applies_to_every_linear_and_conv():
    model = apply_rules(resnet(), "usf")
    rules = rule_map(model)
    assert len(rules) == 19 + 2 + 1  # 19 3x3 convs, 2 1x1 shortcut convs, the classifier
    assert set(rules.values()) == {"usf"}


def test_mapping_first_match_wins_default_and_unmatched_bp():
    model = apply_rules(resnet(), {"layer1.*": "fa", "layer1.0.conv1": "dfa", "layer3.*conv2": "brsf"})
    rules = rule_map(model)
    assert rules["layer1.0.conv1"] == "fa"  # first match wins
    assert rules["layer3.2.conv2"] == "brsf"
    assert rules["layer2.0.conv1"] == "bp" and rules["fc"] == "bp"  # unmatched keep exact backprop
    model = apply_rules(resnet(), {"fc": "bp", "*": "frsf"})
    assert rule_map(model)["fc"] == "bp" and rule_map(model)["layer2.1.conv2"] == "frsf"


def test_keep_ends_bp_is_the_papers_convention():
    rules = rule_map(apply_rules(resnet(), "dfa", keep_ends_bp=True))
    assert rules["conv1"] == "bp" and rules["fc"] == "bp"
    assert set(v for k, v in rules.items() if k not in ("conv1", "fc")) == {"dfa"}


def test_unknown_rule_names_value_and_choices():
    with pytest.raises(ValueError, match=r"Unknown learning rule 'fx'\. Valid rules: bp, brsf, dfa, fa, frsf, usf"):
        apply_rules(resnet(), "fx")
    with pytest.raises(ValueError, match=r"pattern 'layer1\.\*'.*Unknown learning rule 'sign'"):
        RuleSpace.parse({"layer1.*": "sign"})


def test_pattern_matching_no_layer_lists_layers():
    model = resnet()
    with pytest.raises(ValueError, match=r"pattern 'layer9\.\*' -> 'fa' matches no layer\. Layers: conv1, layer1\.0\.conv1"):
        apply_rules(model, {"layer9.*": "fa"})
    assert not is_converted(model)  # nothing changed


def test_rule_forced_on_batchnorm_is_refused():
    with pytest.raises(ValueError, match=r"'layer1\.0\.bn1' -> 'fa' matches only BatchNorm2d modules"):
        apply_rules(resnet(), {"layer1.0.bn1": "fa"})


def test_rule_on_unsupported_layer_type_is_refused():
    @register_rule("linear_only_test")
    class LinearOnly(FeedbackRule):
        supported_layers = (nn.Linear,)

    with pytest.raises(ValueError, match=r"rule 'linear_only_test' cannot handle layer 'conv1' of type Conv2d; it supports Linear"):
        apply_rules(resnet(), {"conv1": "linear_only_test"})


def test_bad_init_output_layer_and_double_conversion():
    with pytest.raises(ValueError, match=r"Unknown feedback init 'orthogonal'\. Valid choices: kaiming, kaiming_uniform, xavier"):
        apply_rules(resnet(), "fa", init="orthogonal")
    with pytest.raises(ValueError, match=r"output_layer 'head' is not a Linear/Conv2d layer"):
        apply_rules(resnet(), "dfa", output_layer="head")
    model = apply_rules(resnet(), "fa")
    with pytest.raises(ValueError, match="already has learning rules"):
        apply_rules(model, "fa")


def test_model_without_layers_and_bad_types():
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        apply_rules(nn.Sequential(nn.ReLU()), "fa")
    with pytest.raises(TypeError, match="rule_space must be"):
        RuleSpace.parse(3)
    with pytest.raises(ValueError, match="empty"):
        RuleSpace.parse({})


def test_subclass_of_linear_is_converted_and_keeps_its_behaviour():
    class ScaledLinear(nn.Linear):
        def extra_repr(self):
            return "scaled"

    model = apply_rules(nn.Sequential(ScaledLinear(3, 2)), "fa")
    assert isinstance(model[0], ScaledLinear) and model[0].extra_repr() == "scaled"
    assert model(torch.randn(1, 3)).shape == (1, 2)
