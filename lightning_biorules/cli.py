"""The ``biorules`` command: ``fit``/``validate``/``test`` through LightningCLI; ``search``, ``space`` and
``report`` for NNI architecture search.

    biorules fit --model.rule_space=usf --data.root ../shared/data/cifar10
    biorules fit --config examples/resnet20_usf.yaml
    biorules search --data.root ../shared/data/cifar10 --max_trials 4
    biorules space nb201
    biorules report biorules_runs/search
"""

from __future__ import annotations

import importlib
import sys
from typing import List, Optional

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from lightning_biorules.data import CIFARDataModule
from lightning_biorules.module import ImageClassifier

__all__ = ["BioRulesCLI", "main"]

USAGE = """usage: biorules {fit,validate,test,predict,search,space,report} ...

  fit/validate/test/predict   train or evaluate ImageClassifier on CIFAR (LightningCLI; see `biorules fit --help`)
  search                      NNI search over per-layer ops and learning rules (see `biorules search --help`)
  space NAME                  print a search space's labels, choices and size
  report EXP                  summarise a finished search: top-k configs, rule map and search curve plots
"""

# Sub-commands outside LightningCLI: name -> (module, function taking the remaining argv).
NAS_COMMANDS = {
    "search": ("lightning_biorules.nas.search", "main"),
    "space": ("lightning_biorules.nas.spaces", "space_main"),
    "report": ("lightning_biorules.nas.report", "report_main"),
}


class BioRulesCLI(LightningCLI):
    """LightningCLI over :class:`ImageClassifier` and :class:`CIFARDataModule`, seeded, one log dir per run."""

    def add_arguments_to_parser(self, parser):  # type: ignore[no-untyped-def]
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")

    def instantiate_classes(self) -> None:
        # Bad values (rule names, patterns, paths) are reported as usage errors, before any training.
        try:
            super().instantiate_classes()
        except (ValueError, FileNotFoundError) as err:
            self._parser(self.subcommand).error(str(err))


def run_lightning_cli(args: Optional[List[str]] = None) -> BioRulesCLI:
    return BioRulesCLI(
        ImageClassifier,
        CIFARDataModule,
        args=args,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={
            "max_epochs": 200,  # the usual CIFAR ResNet schedule; the cosine LR anneals over it
            "callbacks": [ModelCheckpoint(monitor="val_acc", mode="max", save_last=True,
                                          filename="{epoch}-{val_acc:.4f}")],
        },
    )


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``biorules`` console script; ``argv`` defaults to ``sys.argv[1:]``."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in NAS_COMMANDS:
        module, function = NAS_COMMANDS[words[0]]
        getattr(importlib.import_module(module), function)(words[1:])
        return
    if not words or words == ["-h"] or words == ["--help"]:
        print(USAGE)
        if not words:
            sys.exit(2)
        return
    run_lightning_cli(argv)


if __name__ == "__main__":
    main()
