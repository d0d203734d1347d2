"""The search-space registry and the NAS-Bench-201 / DARTS cell spaces with a learning rule per edge.

Every space: seeded random samples freeze, build through ``ImageClassifier(**config["model"])``
and train a step; the rules of the built model are checked by hand against the architecture; the
config <-> architecture round trips; one tiny real training per cell space on CIFAR-10 images.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from lightning_biorules.models import build_backbone
from lightning_biorules.models.darts import DARTS_EDGES, DARTS_OPS, DartsNet, darts_op_has_conv, reduction_indices
from lightning_biorules.models.nb201 import NB201_EDGES, NB201Net
from lightning_biorules.module import ImageClassifier
from lightning_biorules.nas import darts_space, nb201_space
from lightning_biorules.nas.darts_space import DartsSearchSpace
from lightning_biorules.nas.nb201_space import NB201SearchSpace
from lightning_biorules.nas.space import MacroSearchSpace
from lightning_biorules.nas.spaces import (
    SPACES,
    arch_from_config,
    available_spaces,
    build_space,
    describe_space,
    register_space,
    space_labels,
    space_main,
    space_options,
    space_size,
)

#: the paper's six rules, explicitly: other tests may register extra rules in the global registry
RULES = ["bp", "fa", "usf", "brsf", "frsf", "dfa"]

#: small, quick variants of every space (CPU, a few hundred images)
SMALL = {
    "macro": dict(layers_per_stage=1, channels=(8, 16, 32), rules=RULES),
    "nb201": dict(C=8, N=1, rules=RULES),
    "nb201_stage": dict(C=8, N=1, rules=RULES, rule_sharing="stage", search_ends=True),
    "darts": dict(C=8, layers=3, rules=RULES),
    "darts_cell": dict(C=8, layers=4, rules=RULES, rule_sharing="cell", search_ends=True, ops=DARTS_OPS),
}


def _space(key: str):
    return build_space(key.split("_")[0], **SMALL[key])


def _frozen(space, sample_overrides: dict, seed: int = 0):
    """A full sample of ``space``: seeded random values, then ``sample_overrides``."""
    sample = dict(space.random(random_state=np.random.RandomState(seed)).arch)
    sample = {label: sample[label] for label in space_labels(space)}
    sample.update(sample_overrides)
    return space.freeze(sample)


def _described(text: str, label: str) -> str:
    """The ``[count] choices`` part of ``label``'s line in a :func:`describe_space` text."""
    lines = [line.split(None, 1) for line in text.splitlines() if line.startswith("  ")]
    found = [rest for name, rest in lines if name == label]
    assert len(found) == 1, f"{label} not described once"
    return found[0]


def _convs(model: nn.Module, prefix: str) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n.startswith(prefix)]


def _train_step(model: ImageClassifier, every_layer: bool = True) -> None:
    """Forward + backward on a random batch: the loss is finite, stem and classifier get a non-zero
    gradient and every gradient is finite; with ``every_layer`` every Conv2d/Linear gets one.

    (A DARTS genotype whose cells never read one of their inputs leaves layers without a gradient:
    e.g. a reduction genotype that never reads input 1 makes the previous cell dead, as in DARTS.)
    """
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = nn.functional.cross_entropy(model(x), y)
    assert torch.isfinite(loss)
    loss.backward()
    layers = [m for m in model.backbone.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    grads = [layer.weight.grad for layer in layers]
    if every_layer:
        assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    assert grads[0].abs().sum() > 0 and grads[-1].abs().sum() > 0  # stem and classifier


# ---------------------------------------------------------------------------------------------
# registry, describe_space, biorules space
# ---------------------------------------------------------------------------------------------
def test_registry():
    assert available_spaces() == ["darts", "macro", "nb201"]
    assert SPACES["macro"] is MacroSearchSpace
    assert SPACES["nb201"] is NB201SearchSpace
    assert SPACES["darts"] is DartsSearchSpace
    assert isinstance(build_space("nb201", N=1), NB201SearchSpace)
    assert list(space_options("nb201")) == [
        "C", "N", "rule_sharing", "ops", "rules", "search_ends", "end_rule", "num_classes"
    ]
    assert list(space_options("darts"))[:3] == ["C", "layers", "rule_sharing"]


def test_registry_errors():
    with pytest.raises(ValueError, match=r"Unknown search space 'nope'\. Valid spaces: darts, macro, nb201"):
        build_space("nope")
    with pytest.raises(ValueError, match=r"Unknown option\(s\) cells for search space 'nb201'\. Valid options: C, N, "):
        build_space("nb201", cells=3)
    with pytest.raises(ValueError, match="rule_sharing must be 'cells' or 'stage'"):
        build_space("nb201", rule_sharing="edge")
    with pytest.raises(ValueError, match="rule_sharing must be 'type' or 'cell'"):
        build_space("darts", rule_sharing="stage")
    with pytest.raises(ValueError, match="unknown learning rule"):
        build_space("darts", rules=["bp", "nope"])
    with pytest.raises(TypeError, match="FreezableModelSpace"):
        register_space("bad")(nn.Linear)
    assert "bad" not in SPACES


def test_describe_nb201():
    text = describe_space("nb201", N=1, rules=RULES)
    for edge in NB201_EDGES:
        assert _described(text, f"op_{edge}") == "[5] none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3"
        assert _described(text, f"rule_{edge}") == "[6] bp, fa, usf, brsf, frsf, dfa"
    assert "rule_stem = bp" in text and "rule_classifier = bp" in text
    ops, rules = 5**6, 6**6
    assert ops == 15625
    assert f"size (op/input labels): {ops} (1.562e+04)" in text
    assert f"size (rule labels):     {rules} (4.666e+04)" in text
    assert f"size (total):           {ops * rules} (7.290e+08)" in text

    staged = build_space("nb201", N=1, rules=RULES, rule_sharing="stage")
    assert len(space_labels(staged)) == 6 + 18
    assert "stage2/rule_3<-1" in space_labels(staged)
    assert space_size(staged) == 5**6 * 6**18
    assert space_size(build_space("nb201", N=1, rules=RULES, search_ends=True), rule_labels=True) == 6 ** (6 + 4)


def test_describe_darts():
    text = describe_space("darts", layers=3, rules=RULES)
    assert _described(text, "normal/input_5_1") == "[5] 0, 1, 2, 3, 4"
    assert space_labels(build_space("darts", layers=3))["reduce/input_3_0"] == ["0", "1", "2"]
    assert _described(text, "reduce/op_2_0") == (
        "[7] max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5"
    )
    assert _described(text, "reduce/rule_4_1") == "[6] bp, fa, usf, brsf, frsf, dfa"
    assert len([line for line in text.splitlines() if line.startswith("  ")]) == 48 + 3  # labels + fixed
    inputs = 2 * 2 * 3 * 3 * 4 * 4 * 5 * 5  # two input choices per node 2..5
    per_type = inputs * 7**8
    assert f"size (op/input labels): {per_type**2} ({per_type**2:.3e})" in text
    assert f"size (rule labels):     {6**16} (2.821e+12)" in text
    space = build_space("darts", layers=4, rules=RULES, rule_sharing="cell")
    assert space_size(space, rule_labels=True) == 6 ** (8 * 4)
    assert {"normal_0/rule_2_0", "reduce_1/rule_5_1", "reduce_2/rule_2_0", "normal_3/rule_3_1"} <= set(space_labels(space))


def test_biorules_space_command(capsys):
    space_main(["nb201", "--N", "1", "--rules", "bp,fa", "--rule_sharing", "stage"])
    out = capsys.readouterr().out
    assert _described(out, "stage1/rule_3<-1") == "[2] bp, fa"
    assert f"size (total):           {5**6 * 2**18} " in out

    space_main(["--help"])
    out = capsys.readouterr().out
    assert "usage: biorules space NAME" in out and "nb201" in out and "darts" in out and "--rule_sharing" in out

    with pytest.raises(SystemExit) as exc:
        space_main([])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        space_main(["nope"])
    assert "Valid spaces: darts, macro, nb201" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        space_main(["darts", "--cells", "3"])
    assert "Valid options: --C, --layers, --rule_sharing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        space_main(["darts", "--layers", "2"])
    assert "layers must be >= 3" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# backbones
# ---------------------------------------------------------------------------------------------
def test_nb201_backbone():
    ops = ["nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "nor_conv_3x3", "none"]
    net = build_backbone("nb201", num_classes=7, cell_ops=ops, C=8, N=2)
    assert isinstance(net, NB201Net)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    convs = _convs(net, "")
    assert convs[0] == "stem.0" and convs[-1] == "classifier"
    # 3 conv edges x 2 cells x 3 stages, each edge one conv; 2 reduction blocks of 3 convs
    assert sorted({n.split(".")[4] for n in _convs(net, "stages.")}) == ["1<-0", "2<-1", "3<-1"]
    assert len(_convs(net, "stages.")) == 3 * 2 * 3
    assert _convs(net, "reductions.1") == ["reductions.1.conv_a.op.1", "reductions.1.conv_b.op.1", "reductions.1.downsample.1"]
    assert net.stages[2][1].edges["3<-1"].op[1].in_channels == 32
    assert NB201Net({e: "none" for e in NB201_EDGES}, C=4, N=1)(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="unknown NAS-Bench-201 op"):
        NB201Net(["conv"] * 6)
    with pytest.raises(ValueError, match="needs 6 ops"):
        NB201Net(["none"] * 5)


def test_darts_backbone():
    normal = [("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 2), ("max_pool_3x3", 0),
              ("none", 3), ("avg_pool_3x3", 1), ("sep_conv_5x5", 4), ("dil_conv_3x3", 2)]
    reduce = [("skip_connect", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("sep_conv_3x3", 1),
              ("avg_pool_3x3", 0), ("dil_conv_3x3", 3), ("none", 1), ("sep_conv_5x5", 4)]
    net = build_backbone("darts", num_classes=5, normal=normal, reduce=reduce, C=8, layers=5)
    assert isinstance(net, DartsNet)
    assert list(net.cells) == ["normal_0", "reduce_1", "normal_2", "reduce_3", "normal_4"]
    assert reduction_indices(8) == (2, 5) and reduction_indices(20) == (6, 13)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    convs = _convs(net, "")
    assert convs[0] == "stem.0" and convs[-1] == "classifier"
    # sep_conv: two dw+pw pairs; dil_conv: one; skip from a cell input of a reduction cell: FactorizedReduce
    assert len(_convs(net, "cells.normal_0.edges.2_0.")) == 4
    assert len(_convs(net, "cells.normal_0.edges.3_0.")) == 2
    assert _convs(net, "cells.normal_0.edges.2_1.") == []
    assert _convs(net, "cells.reduce_1.edges.2_0.") == ["cells.reduce_1.edges.2_0.conv_1", "cells.reduce_1.edges.2_0.conv_2"]
    assert _convs(net, "cells.reduce_1.edges.3_0.") == []  # skip from node 2: identity
    assert _convs(net, "cells.normal_2.preprocess0.") == ["cells.normal_2.preprocess0.conv_1", "cells.normal_2.preprocess0.conv_2"]
    assert darts_op_has_conv("skip_connect", 1, reduction=True) and not darts_op_has_conv("skip_connect", 1, reduction=False)
    with pytest.raises(ValueError, match="node 2 can only read nodes 0..1"):
        DartsNet([("sep_conv_3x3", 2)] + normal[1:], reduce)
    with pytest.raises(ValueError, match="layers must be >= 3"):
        DartsNet(normal, reduce, layers=2)


# ---------------------------------------------------------------------------------------------
# every space: random samples build and train
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", sorted(SMALL))
def test_random_samples_build_and_train(key):
    space = _space(key)
    seen = set()
    for seed in range(3):
        frozen = space.random(random_state=np.random.RandomState(seed))
        assert set(space_labels(space)) <= set(frozen.arch)
        seen.add(tuple(sorted(map(str, frozen.arch.items()))))
        config = frozen.to_config(model={"lr": 0.05}, data={"batch_size": 8}, trainer={"max_epochs": 1})
        assert config["data"] == {"batch_size": 8} and config["trainer"] == {"max_epochs": 1}
        assert yaml.safe_load(yaml.safe_dump(config)) == config  # plain YAML
        model = ImageClassifier(**config["model"])
        _train_step(model, every_layer=not key.startswith("darts"))
        assert model.rules["classifier"] == frozen.arch["rule_classifier"]
        assert model.rules["stem.0"] == frozen.arch["rule_stem"]
    assert len(seen) == 3


@pytest.mark.parametrize("key", ["nb201_stage", "darts_cell"])
@pytest.mark.parametrize("model_format", ["simplified", "raw"])
def test_nni_random_strategy_samples_freeze(key, model_format):
    """NNI's Random strategy samples, NNI's model formats freeze them (FreezableModelSpace)."""
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.space import RawFormatModelSpace, SimplifiedModelSpace
    from nni.nas.strategy import Random

    space = _space(key)
    fmt = {"simplified": SimplifiedModelSpace, "raw": RawFormatModelSpace}[model_format]
    executable = fmt.from_model(space, FunctionalEvaluator(len))
    strategy = Random(seed=1)
    archs = []
    for _ in range(2):
        candidate = strategy.random(executable)
        frozen = candidate.executable_model()
        assert type(frozen) is type(space)
        assert {k: frozen.arch[k] for k in candidate.sample} == candidate.sample
        archs.append(frozen.arch)
        # every value is a string: a sample stored as {label: str(value)} (search records) freezes back
        assert space.freeze({k: str(v) for k, v in candidate.sample.items()}).arch == frozen.arch
        ImageClassifier(**frozen.to_config()["model"])
    assert archs[0] != archs[1]


# ---------------------------------------------------------------------------------------------
# NB201: rules by hand
# ---------------------------------------------------------------------------------------------
NB201_OPS_HAND = {
    "op_1<-0": "none", "op_2<-0": "skip_connect", "op_2<-1": "nor_conv_1x1",
    "op_3<-0": "avg_pool_3x3", "op_3<-1": "nor_conv_3x3", "op_3<-2": "nor_conv_3x3",
}


def test_nb201_cells_sharing_rules():
    space = build_space("nb201", C=8, N=2, rules=RULES)
    rules = {"rule_1<-0": "fa", "rule_2<-0": "dfa", "rule_2<-1": "brsf", "rule_3<-0": "fa",
             "rule_3<-1": "usf", "rule_3<-2": "frsf"}
    frozen = space.freeze({**NB201_OPS_HAND, **rules})
    assert frozen.arch == {**NB201_OPS_HAND, **rules, "rule_stem": "bp", "rule_reduction_0": "bp",
                           "rule_reduction_1": "bp", "rule_classifier": "bp"}
    config = frozen.to_config()
    assert config["model"]["backbone"] == "nb201"
    assert config["model"]["backbone_kwargs"] == {
        "cell_ops": [NB201_OPS_HAND[f"op_{e}"] for e in NB201_EDGES], "C": 8, "N": 2
    }
    assert config["model"]["rule_space"] == {
        "stem.*": "bp",
        "stages.*.edges.2<-1.*": "brsf",
        "stages.*.edges.3<-1.*": "usf",
        "stages.*.edges.3<-2.*": "frsf",
        "reductions.0.*": "bp",
        "reductions.1.*": "bp",
        "classifier": "bp",
    }
    model = ImageClassifier(**config["model"])
    got = model.rules
    for s in range(3):
        for k in range(2):
            assert got[f"stages.{s}.{k}.edges.3<-1.op.1"] == "usf"  # edge 3<-1, nor_conv_3x3
            assert got[f"stages.{s}.{k}.edges.2<-1.op.1"] == "brsf"
    # none / skip / pool edges have no layer and get no rule
    assert not [n for n in got if any(f"edges.{e}." in n for e in ("1<-0", "2<-0", "3<-0"))]
    assert got["reductions.0.conv_a.op.1"] == got["stem.0"] == got["classifier"] == "bp"
    _train_step(model)


def test_nb201_stage_sharing_gives_rules_per_stage():
    space = build_space("nb201", C=8, N=2, rules=RULES, rule_sharing="stage", search_ends=True)
    sample = {**NB201_OPS_HAND, "rule_stem": "fa", "rule_reduction_0": "usf", "rule_reduction_1": "frsf",
              "rule_classifier": "dfa"}
    stage_rules = {0: "fa", 1: "usf", 2: "brsf"}
    for s in range(3):
        for e in NB201_EDGES:
            sample[f"stage{s}/rule_{e}"] = "bp" if e != "3<-1" else stage_rules[s]
    frozen = space.freeze(sample)
    config = frozen.to_config()
    assert config["model"]["rule_space"]["stages.1.*.edges.3<-1.*"] == "usf"
    got = ImageClassifier(**config["model"]).rules
    for s, rule in stage_rules.items():
        for k in range(2):
            assert got[f"stages.{s}.{k}.edges.3<-1.op.1"] == rule
            assert got[f"stages.{s}.{k}.edges.3<-2.op.1"] == "bp"
    assert got["stem.0"] == "fa" and got["classifier"] == "dfa"
    assert got["reductions.0.downsample.1"] == "usf" and got["reductions.1.conv_b.op.1"] == "frsf"


@pytest.mark.parametrize("key", ["nb201", "nb201_stage"])
def test_nb201_config_arch_round_trip(key):
    space = _space(key)
    for seed in range(4):
        frozen = space.random(random_state=np.random.RandomState(seed))
        config = yaml.safe_load(yaml.safe_dump(frozen.to_config()))
        sharing = SMALL[key].get("rule_sharing", "cells")
        arch = nb201_space.arch_from_config(config, rule_sharing=sharing)
        assert set(arch) == set(frozen.arch)
        for label, value in frozen.arch.items():  # conv-less edges' rules read back as bp
            edge = label.split("rule_")[-1]
            if label.startswith("op_") or edge not in NB201_EDGES or frozen.arch[f"op_{edge}"] in ("nor_conv_1x1", "nor_conv_3x3"):
                assert arch[label] == value, label
            else:
                assert arch[label] == "bp", label
        assert space.freeze(arch).to_config() == config  # config -> arch -> config is exact
        assert arch_from_config(config) == nb201_space.arch_from_config(config)


# ---------------------------------------------------------------------------------------------
# DARTS: rules by hand
# ---------------------------------------------------------------------------------------------
def _darts_sample(rules: dict) -> dict:
    sample = {}
    for t in ("normal", "reduce"):
        for e in DARTS_EDGES:
            sample[f"{t}/op_{e}"] = "sep_conv_3x3" if e == "2_0" else "skip_connect" if e == "2_1" else "max_pool_3x3"
            sample[f"{t}/input_{e}"] = "0" if e != "2_1" else "1"
    sample.update(rules)
    return sample


def test_darts_type_sharing_reduce_rules_differ_from_normal():
    space = build_space("darts", C=8, layers=5, rules=RULES)
    rules = {f"{t}/rule_{e}": "bp" for t in ("normal", "reduce") for e in DARTS_EDGES}
    rules.update({"normal/rule_2_0": "fa", "reduce/rule_2_0": "usf", "normal/rule_2_1": "dfa", "reduce/rule_2_1": "frsf"})
    frozen = space.freeze(_darts_sample(rules))
    config = frozen.to_config()
    assert config["model"]["backbone_kwargs"]["normal"][:2] == [["sep_conv_3x3", 0], ["skip_connect", 1]]
    assert config["model"]["rule_space"] == {
        "stem.*": "bp",
        "cells.*.preprocess*": "bp",
        "cells.normal_*.edges.2_0.*": "fa",
        "cells.reduce_*.edges.2_0.*": "usf",
        "cells.reduce_*.edges.2_1.*": "frsf",  # skip from input 1 of a reduction cell: FactorizedReduce
        "classifier": "bp",
    }
    model = ImageClassifier(**config["model"])
    got = model.rules
    for cell in ("normal_0", "normal_2", "normal_4"):
        convs = [n for n in got if n.startswith(f"cells.{cell}.edges.2_0.")]
        assert len(convs) == 4 and {got[n] for n in convs} == {"fa"}
        assert not [n for n in got if n.startswith(f"cells.{cell}.edges.2_1.")]  # identity skip: no rule
    for cell in ("reduce_1", "reduce_3"):
        assert {got[n] for n in got if n.startswith(f"cells.{cell}.edges.2_0.")} == {"usf"}
        assert got[f"cells.{cell}.edges.2_1.conv_1"] == got[f"cells.{cell}.edges.2_1.conv_2"] == "frsf"
    assert got["cells.normal_2.preprocess0.conv_1"] == "bp" and got["cells.normal_0.preprocess1.op.1"] == "bp"
    assert not [n for n in got if ".edges.3_" in n]  # max pools
    _train_step(model)


def test_darts_cell_sharing_and_ends():
    space = build_space("darts", C=8, layers=4, rules=RULES, rule_sharing="cell", search_ends=True)
    cells = ["normal_0", "reduce_1", "reduce_2", "normal_3"]
    rules = {f"{c}/rule_{e}": "bp" for c in cells for e in DARTS_EDGES}
    rules.update({"normal_0/rule_2_0": "fa", "normal_3/rule_2_0": "dfa", "reduce_1/rule_2_0": "usf",
                  "reduce_2/rule_2_0": "brsf", "rule_stem": "usf", "rule_preprocess": "frsf", "rule_classifier": "fa"})
    frozen = space.freeze(_darts_sample(rules))
    got = ImageClassifier(**frozen.to_config()["model"]).rules
    for cell, rule in [("normal_0", "fa"), ("normal_3", "dfa"), ("reduce_1", "usf"), ("reduce_2", "brsf")]:
        assert {got[n] for n in got if n.startswith(f"cells.{cell}.edges.2_0.")} == {rule}
    assert got["stem.0"] == "usf" and got["classifier"] == "fa"
    assert {got[n] for n in got if ".preprocess" in n} == {"frsf"}


@pytest.mark.parametrize("key", ["darts", "darts_cell"])
def test_darts_config_arch_round_trip(key):
    space = _space(key)
    sharing = SMALL[key].get("rule_sharing", "type")
    for seed in range(4):
        frozen = space.random(random_state=np.random.RandomState(seed))
        config = yaml.safe_load(yaml.safe_dump(frozen.to_config()))
        arch = darts_space.arch_from_config(config, rule_sharing=sharing)
        assert set(arch) == set(frozen.arch)
        for label, value in frozen.arch.items():
            scope, _, name = label.rpartition("/")
            if not name.startswith("rule_") or not scope:
                assert arch[label] == value, label
                continue
            t, edge = scope.split("_")[0], name[len("rule_"):]
            op, inp = frozen.arch[f"{t}/op_{edge}"], frozen.arch[f"{t}/input_{edge}"]
            expected = value if darts_op_has_conv(op, inp, reduction=t == "reduce") else "bp"
            assert arch[label] == expected, label
        assert space.freeze(arch).to_config() == config
        assert arch_from_config(config) == darts_space.arch_from_config(config)


# ---------------------------------------------------------------------------------------------
# real training through the search's train_config
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("key", ["nb201_stage", "darts"])
def test_tiny_real_training(key, cifar10_root):
    from lightning_biorules.nas.search import train_config

    frozen = _space(key).random(random_state=np.random.RandomState(3))
    config = frozen.to_config(
        model={"lr": 0.05},
        data={"root": str(cifar10_root), "train_size": 100, "val_size": 50, "batch_size": 50},
        trainer={"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1},
    )
    acc = train_config(config)
    assert math.isfinite(acc) and 0.0 <= acc <= 1.0
