"""Shared pytest fixtures."""

from pathlib import Path

import pytest

#: CIFAR-10 in ImageFolder layout, in the ``shared/`` folder beside the repository checkout.
CIFAR10_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """Path of the real CIFAR-10 images (``train/<class>/*.jpg``, ``test/<class>/*.jpg``); fails if absent."""
    missing = [str(CIFAR10_ROOT / split) for split in ("train", "test") if not (CIFAR10_ROOT / split).is_dir()]
    if missing:
        pytest.fail(
            f"CIFAR-10 test data not found: {', '.join(missing)} missing. The tests expect the ImageFolder copy "
            f"of CIFAR-10 at ../shared/data/cifar10 relative to the repository root ({CIFAR10_ROOT}).",
            pytrace=False,
        )
    return CIFAR10_ROOT


@pytest.fixture(autouse=True)
def _isolated_biorules_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point ``$BIORULES_CACHE`` at a per-session temporary folder so no test writes to the user's home."""
    monkeypatch.setenv("BIORULES_CACHE", str(tmp_path_factory.getbasetemp() / "biorules_cache"))


@pytest.fixture(autouse=True)
def _restore_rule_registry():
    """Rules a test registers are removed after it, so no test sees another's plug-ins."""
    from lightning_biorules import available_rules, unregister_rule

    before = set(available_rules())
    yield
    for name in set(available_rules()) - before:
        unregister_rule(name)


def _experiment_processes(experiment_id: str) -> list:
    """PIDs of an NNI experiment's processes (its Node manager, its trials), found with psutil,
    independently of the package's own process handling."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        try:
            if experiment_id in (proc.info.get("cmdline") or []) or proc.environ().get("NNI_EXP_ID") == experiment_id:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


@pytest.fixture
def experiment_processes():
    """``experiment_processes(experiment_id) -> [pid, ...]``: what is left running of an NNI experiment."""
    return _experiment_processes
