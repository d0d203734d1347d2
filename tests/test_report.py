"""``nas.report`` on a real search: top-k YAML export, rule map and curve PNGs, text summary, ``biorules report``.

One tiny random search on real CIFAR-10 images (sequential engine, 4 trials of one batch) is run
once for the module, with one candidate made to fail through ``BIORULES_NAS_FAULT``. Everything
else reads its ``search_result.json``.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from lightning_biorules.nas.report import (
    export_top_k,
    load_search,
    plot_rule_map,
    plot_search_curve,
    rank_trials,
    report_main,
    resolve_experiment,
    summarize,
)
from lightning_biorules.nas.search import FAULT_ENV, run_search

pytestmark = pytest.mark.slow  # a real search on CIFAR-10 images (about 20 s for the whole file)

PAPER_RULES = ["bp", "fa", "usf", "brsf", "frsf", "dfa"]
#: seed 0's random search draws rule_0 = dfa for exactly one of its first 4 candidates (trial 1)
FAULT = ("rule_0", "dfa")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAILED_RED = np.array([0xD6, 0x27, 0x28]) / 255  # matplotlib's C3, the failed-trial marker


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("report_cache"))


@pytest.fixture(scope="module")
def search(cifar10_root, cache_dir, tmp_path_factory) -> Path:
    """Work dir of a finished 4-trial random search with one injected failure."""
    work = tmp_path_factory.mktemp("report_search")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(FAULT_ENV, f"raise:{FAULT[0]}={FAULT[1]}")
        run_search(
            str(cifar10_root), strategy="random", engine="sequential", max_trials=4, seed=0,
            space="macro", space_options={"rules": PAPER_RULES}, trial_epochs=1, limit_train_batches=1, train_size=100, val_size=50,
            batch_size=50, work_dir=str(work), cache_dir=cache_dir,
        )
    return work


@pytest.fixture
def result(search) -> dict:
    return load_search(search)


def _expected_ranking(trials: list[dict]) -> list[int]:
    ok = [t for t in trials if t["status"] == "trained" and t["accuracy"] is not None]
    return [t["index"] for t in sorted(ok, key=lambda t: (-t["accuracy"], t["index"]))]


def _header(path: Path) -> list[str]:
    return [line[2:] for line in path.read_text().splitlines() if line.startswith("# ")]


def _png(path: Path) -> np.ndarray:
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return mpimg.imread(path)


def _red_pixels(image: np.ndarray) -> int:
    return int((np.abs(image[..., :3] - FAILED_RED).max(axis=-1) < 0.08).sum())


# ---------------------------------------------------------------------------------------------
def test_load_search_from_dir_file_and_experiment_id(search, tmp_path):
    from_dir = load_search(search)
    assert from_dir == load_search(search / "search_result.json")
    assert len(from_dir["journal_records"]) == 4  # the search's trials.jsonl
    assert len(from_dir["trials"]) == 4 and from_dir["strategy"] == "random"
    assert resolve_experiment(from_dir["experiment_id"], search.parent) == search
    assert resolve_experiment(str(search)) == search
    with pytest.raises(FileNotFoundError, match="neither a path nor an experiment id"):
        resolve_experiment("no_such_id", search.parent)
    with pytest.raises(FileNotFoundError):
        load_search(tmp_path)

    # without a journal beside it (older searches): tolerated; a half-written last line is skipped
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    saved = json.loads((search / "search_result.json").read_text())
    saved.pop("journal", None)
    (copy_dir / "search_result.json").write_text(json.dumps(saved))
    assert "journal_records" not in load_search(copy_dir)
    lines = (search / "trials.jsonl").read_text().splitlines() + ['{"v": 1, "sample"']
    (copy_dir / "trials.jsonl").write_text("\n".join(lines) + "\n")
    assert load_search(copy_dir)["journal_records"] == from_dir["journal_records"]


def test_the_fault_made_one_trial_fail(result):
    failed = [t for t in result["trials"] if t["status"] != "trained"]
    assert failed, f"seed 0 drew no candidate with {FAULT[0]}={FAULT[1]}; pick another fault label"
    assert all(t["arch"][FAULT[0]] == FAULT[1] and t["accuracy"] is None for t in failed)
    assert len(failed) < len(result["trials"]) - 1  # at least two succeeded


def test_top_k_order_and_ties(result, tmp_path):
    expected = _expected_ranking(result["trials"])
    assert [t["index"] for t in rank_trials(result)] == expected
    paths = export_top_k(result, 3, tmp_path)
    assert [p.name for p in paths] == [f"rank{i}.yaml" for i in range(1, len(expected[:3]) + 1)]
    for rank, (path, index) in enumerate(zip(paths, expected), start=1):
        header = _header(path)
        trial = next(t for t in result["trials"] if t["index"] == index)
        assert f"rank {rank} " in header[0]
        assert f"trial {index} " in header[1] and f"val_acc {trial['accuracy']:.4f}" in header[1]
        assert header[2] == f"train it: biorules fit --config {path.name}"
    # rank 1 is the search's own best, its config the search's best.yaml config
    assert yaml.safe_load(paths[0].read_text()) == result["best_config"]

    # the same trials with accuracies set to force an order and a tie: accuracy first, then index
    varied = copy.deepcopy(result)
    ok = [t for t in varied["trials"] if t["accuracy"] is not None]
    ok[0]["accuracy"], ok[1]["accuracy"], ok[2]["accuracy"] = 0.2, 0.5, 0.5
    expected_varied = _expected_ranking(varied["trials"])
    assert expected_varied == [ok[1]["index"], ok[2]["index"], ok[0]["index"]]
    assert [t["index"] for t in rank_trials(varied, 2)] == expected_varied[:2]

    # more asked than succeeded: one file per successful trial; a smaller export removes stale files
    paths = export_top_k(result, 10, tmp_path)
    assert len(paths) == len(expected)
    export_top_k(result, 1, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("rank*.yaml")) == ["rank1.yaml"]
    with pytest.raises(ValueError):
        export_top_k(result, 0, tmp_path)


def test_exported_configs_build_the_trial_models(result, tmp_path):
    from lightning_biorules.module import ImageClassifier

    ranked = rank_trials(result)
    paths = export_top_k(result, len(ranked), tmp_path)
    assert len(paths) == len(ranked)
    for path, trial in zip(paths, ranked):
        config = yaml.safe_load(path.read_text())
        assert set(config) == {"model", "data", "trainer"}
        assert config["data"] == result["best_config"]["data"]
        assert config["trainer"] == result["best_config"]["trainer"]
        model = ImageClassifier(**config["model"])
        arch = trial["arch"]
        n = sum(key.startswith("op_") for key in arch)
        assert list(model.backbone.ops) == [arch[f"op_{i}"] for i in range(n)]
        rules = model.rules
        assert rules.pop("stem.0") == "bp" and rules.pop("classifier") == "bp"
        for name, rule in rules.items():
            assert rule == arch[f"rule_{name.split('.')[1]}"], (path.name, name)
        weighted = {int(name.split(".")[1]) for name in rules}
        for i in range(n):  # every searched layer with weights carries its rule
            assert (i in weighted) == (len(model.backbone.layers[i]) > 0)


def test_exported_yaml_trains_with_biorules_fit(result, cache_dir, tmp_path):
    from lightning_biorules.cli import main as biorules

    paths = export_top_k(result, 2, tmp_path / "top")
    biorules([
        "fit", "--config", str(paths[-1]), f"--data.cache_dir={cache_dir}",
        "--data.train_size=100", "--data.val_size=50", "--data.batch_size=50", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1",
        f"--trainer.default_root_dir={tmp_path / 'fit'}", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ])
    assert list((tmp_path / "fit").rglob("*.ckpt")), "biorules fit did not save a checkpoint"


def test_plots_are_pngs(result, tmp_path):
    from lightning_biorules.module import ImageClassifier

    rule_map = _png(plot_rule_map(result, tmp_path / "rule_map.png"))
    curve = _png(plot_search_curve(result, tmp_path / "curve.png"))
    n_layers = len(ImageClassifier(**result["best_config"]["model"]).rules)
    assert rule_map.shape[1] >= 600 and rule_map.shape[0] >= 28 * n_layers  # a legible row per layer
    assert curve.shape[0] >= 300 and curve.shape[1] >= 600
    assert rule_map[..., :3].std() > 0.05 and curve[..., :3].std() > 0.05  # not blank
    # from a config (path or dict) as well
    config_path = export_top_k(result, 1, tmp_path / "top")[0]
    assert _png(plot_rule_map(config_path, tmp_path / "from_yaml.png")).shape == rule_map.shape


def test_failed_trial_in_summary_and_curve(result, tmp_path):
    failed = [t["index"] for t in result["trials"] if t["status"] != "trained"]
    ok = [t for t in result["trials"] if t["status"] == "trained"]
    text = summarize(result)
    assert f"trials: 4 ({len(ok)} succeeded, {len(failed)} failed: {', '.join(map(str, failed))})" in text
    assert "failed trials" in text
    with_failure = _png(plot_search_curve(result, tmp_path / "with.png"))
    without = copy.deepcopy(result)
    without["trials"] = [t for t in without["trials"] if t["status"] == "trained"]
    without_failure = _png(plot_search_curve(without, tmp_path / "without.png"))
    assert _red_pixels(with_failure) > 20 and _red_pixels(without_failure) == 0


def test_summary_contents(result):
    text = summarize(result, k=2)
    best = max(t["accuracy"] for t in result["trials"] if t["accuracy"] is not None)
    assert math.isclose(result["best_accuracy"], best)
    assert f"best accuracy: {best:.4f}" in text
    assert "strategy: random" in text and "engine: sequential" in text and "space: macro" in text
    assert result["experiment_id"] in text
    first = rank_trials(result, 1)[0]
    row = next(line for line in text.splitlines() if line.strip().startswith("1 "))
    assert row.split()[:3] == ["1", str(first["index"]), f"{first['accuracy']:.4f}"]
    assert f"0:{first['arch']['op_0']}/{first['arch']['rule_0']}" in row
    assert "rule frequency" in text and "top-2" in text and "all trials" in text
    # rule counts over all trials: 6 searched layers each
    rule_lines = text.split("rule frequency")[1].split("op frequency")[0].strip().splitlines()[2:]
    counts = [[int(n) for n in re.findall(r"(\d+) \(\s*\d+%\)", line)] for line in rule_lines]
    assert all(len(c) == 2 for c in counts), rule_lines
    assert sum(top for top, _ in counts) == 6 * 2
    assert sum(everywhere for _, everywhere in counts) == 6 * len(result["trials"])


def test_report_main_end_to_end(search, tmp_path, capsys):
    out = tmp_path / "report"
    written = report_main([str(search), "--top_k", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["rank1.yaml", "rank2.yaml", "rule_map.png", "search_curve.png"]
    assert sorted(p.name for p in written) == names
    assert "best accuracy:" in printed and f"wrote to {out}" in printed
    assert all(str(p) in printed for p in written)

    # by experiment id under a search root, no plots, default output folder EXP/report
    exp_id = load_search(search)["experiment_id"]
    written = report_main([exp_id, "--search_root", str(search.parent), "--no-plots", "--top_k", "1"])
    assert [p.name for p in written] == ["rank1.yaml"]
    assert (search / "report" / "rank1.yaml").is_file() and not (search / "report" / "rule_map.png").exists()
