"""lightning-biorules: bio-inspired learning rules, chosen per layer, for PyTorch Lightning.

Implements the rules searched in Hamzaoui & Baghdadi, "Neural Architecture Search with Mixed Bio-inspired
Learning Rules", ECAI 2025 (arXiv:2507.13485): bp, fa, usf, brsf, frsf and dfa on ``nn.Linear`` and
``nn.Conv2d``.
"""

from lightning_biorules.callback import BioRules
from lightning_biorules.convert import (
    FeedbackConv2d,
    FeedbackLayer,
    FeedbackLinear,
    apply_rules,
    is_converted,
    remove_rules,
    rule_map,
)
from lightning_biorules.data import CIFARDataModule
from lightning_biorules.module import ImageClassifier
from lightning_biorules.optim import BioRulesOptimizer
from lightning_biorules.rule_space import RuleSpace, RuleSpaceLike
from lightning_biorules.rules import (
    INITIALIZERS,
    BackpropRule,
    BatchwiseRandomSignFeedback,
    DirectFeedbackAlignment,
    FeedbackAlignment,
    FeedbackRule,
    FixedRandomSignFeedback,
    MatrixFeedbackRule,
    UniformSignFeedback,
    available_rules,
    get_rule,
    register_rule,
    unregister_rule,
)

__version__ = "0.1.0"

__all__ = [
    "INITIALIZERS",
    "BackpropRule",
    "BatchwiseRandomSignFeedback",
    "BioRules",
    "BioRulesOptimizer",
    "CIFARDataModule",
    "DirectFeedbackAlignment",
    "FeedbackAlignment",
    "FeedbackConv2d",
    "FeedbackLayer",
    "FeedbackLinear",
    "FeedbackRule",
    "FixedRandomSignFeedback",
    "ImageClassifier",
    "MatrixFeedbackRule",
    "RuleSpace",
    "RuleSpaceLike",
    "UniformSignFeedback",
    "apply_rules",
    "available_rules",
    "get_rule",
    "is_converted",
    "register_rule",
    "remove_rules",
    "rule_map",
    "unregister_rule",
]
