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
