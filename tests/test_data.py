"""Tests of :mod:`lightning_biorules.data` on the real CIFAR-10 JPEGs in ``../shared/data/cifar10``."""

import argparse
import os
import pickle
import re
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from torch import Tensor, nn

from lightning_biorules.data import (
    CIFAR_MEAN_STD,
    CIFARDataModule,
    EpochShuffleSampler,
    default_cache_dir,
    list_image_files,
    random_crop_flip,
)

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_SIZE, VAL_SIZE, BATCH_SIZE = 105, 50, 16


def pil_pixels(path: str) -> Tensor:
    """``uint8 [3, 32, 32]`` as PIL decodes the file."""
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


def normalized_by_hand(images: Tensor) -> Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in CIFAR_MEAN_STD["cifar10"])
    return (images.double() / 255 - mean) / std


def make_datamodule(root: Path, cache_dir: Path, **kwargs: object) -> CIFARDataModule:
    options = {"train_size": TRAIN_SIZE, "val_size": VAL_SIZE, "batch_size": BATCH_SIZE, **kwargs}
    return CIFARDataModule(str(root), cache_dir=str(cache_dir), **options)


@pytest.fixture
def datamodule(cifar10_root: Path, tmp_path: Path) -> CIFARDataModule:
    dm = make_datamodule(cifar10_root, tmp_path / "cache")
    dm.setup("fit")
    return dm


def train_batch(dm: CIFARDataModule, n: int = BATCH_SIZE) -> tuple[Tensor, Tensor]:
    split = dm.splits["train"]
    return split.images[:n], split.labels[:n]


# ----------------------------------------------------------------------------------------------------
# Decoding, subsets, cache
# ----------------------------------------------------------------------------------------------------


def test_subset_shapes_balance_and_labels(datamodule: CIFARDataModule, cifar10_root: Path) -> None:
    assert datamodule.layout == "imagefolder"
    assert datamodule.classes == CIFAR10_CLASSES
    assert datamodule.num_classes == 10
    for split, size in (("train", TRAIN_SIZE), ("test", VAL_SIZE)):
        data = datamodule.splits[split]
        assert data.images.shape == (size, 3, 32, 32) and data.images.dtype == torch.uint8
        assert data.labels.shape == (size,) and data.labels.dtype == torch.int64
        files = list_image_files(cifar10_root / split, CIFAR10_CLASSES, size)
        assert data.labels.tolist() == [label for _, label in files]
        assert all(Path(path).parent.name == CIFAR10_CLASSES[label] for path, label in files)
    # 105 = 10 * 10 + 5: the first five classes get one extra image; 50 splits evenly.
    assert datamodule.splits["train"].labels.bincount().tolist() == [11] * 5 + [10] * 5
    assert datamodule.splits["test"].labels.bincount().tolist() == [5] * 10
    # The subset is the first files of each class in sorted order, interleaved class by class.
    train_files = list_image_files(cifar10_root / "train", CIFAR10_CLASSES, TRAIN_SIZE)
    airplanes = [Path(path).name for path, label in train_files if label == 0]
    assert airplanes == sorted(os.listdir(cifar10_root / "train" / "airplane"))[:11]
    assert datamodule.splits["train"].labels[:10].tolist() == list(range(10))


def test_cached_pixels_equal_pil_decode(datamodule: CIFARDataModule, cifar10_root: Path) -> None:
    for split, size in (("train", TRAIN_SIZE), ("test", VAL_SIZE)):
        images = datamodule.splits[split].images
        for i, (path, _) in enumerate(list_image_files(cifar10_root / split, CIFAR10_CLASSES, size)):
            assert torch.equal(images[i], pil_pixels(path)), path


def test_cache_file_reused(cifar10_root: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    first = make_datamodule(cifar10_root, cache_dir)
    first.setup("fit")
    assert not any(data.from_cache for data in first.splits.values())
    files = {split: data.cache_file for split, data in first.splits.items()}
    assert all(path.parent == cache_dir and path.is_file() for path in files.values())
    assert sorted(os.listdir(cache_dir)) == sorted(path.name for path in files.values())  # no temp files left
    mtimes = {split: path.stat().st_mtime_ns for split, path in files.items()}

    second = make_datamodule(cifar10_root, cache_dir)
    second.prepare_data()  # caches exist: nothing is rebuilt
    second.setup("fit")
    for split, data in second.splits.items():
        assert data.from_cache and data.cache_file == files[split]
        assert data.cache_file.stat().st_mtime_ns == mtimes[split]
        assert torch.equal(data.images, first.splits[split].images)
        assert torch.equal(data.labels, first.splits[split].labels)

    other_size = make_datamodule(cifar10_root, cache_dir, val_size=20)
    other_size.setup("validate")
    assert set(other_size.splits) == {"test"}
    assert not other_size.splits["test"].from_cache and other_size.splits["test"].cache_file != files["test"]


def test_unreadable_cache_is_rebuilt(cifar10_root: Path, tmp_path: Path) -> None:
    first = make_datamodule(cifar10_root, tmp_path, train_size=20, val_size=10)
    first.setup("validate")
    cache_file = first.splits["test"].cache_file
    cache_file.write_bytes(b"truncated")
    second = make_datamodule(cifar10_root, tmp_path, train_size=20, val_size=10)
    with pytest.warns(UserWarning, match="unreadable cache file"):
        second.setup("validate")
    assert not second.splits["test"].from_cache
    assert torch.equal(second.splits["test"].images, first.splits["test"].images)
    assert torch.load(cache_file, weights_only=True)["images"].shape == (10, 3, 32, 32)


def test_prepare_data_builds_cache_for_setup(cifar10_root: Path, tmp_path: Path) -> None:
    dm = make_datamodule(cifar10_root, tmp_path / "cache", train_size=20, val_size=10)
    dm.prepare_data()
    assert len(os.listdir(tmp_path / "cache")) == 2
    dm.setup()
    assert all(data.from_cache for data in dm.splits.values())


def test_cache_dir_resolution(cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIORULES_CACHE", str(tmp_path / "from_env"))
    assert CIFARDataModule(str(cifar10_root)).cache_dir == tmp_path / "from_env"
    assert CIFARDataModule(str(cifar10_root), cache_dir=str(tmp_path / "explicit")).cache_dir == tmp_path / "explicit"
    monkeypatch.delenv("BIORULES_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "lightning_biorules"


def make_torchvision_root(cifar10_root: Path, root: Path, per_class: int) -> None:
    """Write ``per_class`` real images per class in torchvision's pickled ``cifar-10-batches-py`` format."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": CIFAR10_CLASSES, "num_vis": 3072}, fh)
    for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        samples = list_image_files(cifar10_root / split, CIFAR10_CLASSES, per_class * len(CIFAR10_CLASSES))
        for name, part in zip(names, np.array_split(np.arange(len(samples)), len(names))):
            entry = {
                "batch_label": name,
                "labels": [samples[i][1] for i in part],
                "data": torch.stack([pil_pixels(samples[i][0]) for i in part]).flatten(1).numpy(),
                "filenames": [Path(samples[i][0]).name for i in part],
            }
            with open(base / name, "wb") as fh:
                pickle.dump(entry, fh)


def test_torchvision_layout_matches_image_folder(cifar10_root: Path, tmp_path: Path) -> None:
    make_torchvision_root(cifar10_root, tmp_path / "tv", per_class=3)
    torchvision_dm = CIFARDataModule(str(tmp_path / "tv"), train_size=20, val_size=30, cache_dir=str(tmp_path / "c"))
    assert torchvision_dm.layout == "torchvision" and torchvision_dm.classes == CIFAR10_CLASSES
    torchvision_dm.setup()
    folder_dm = make_datamodule(cifar10_root, tmp_path / "c", train_size=20, val_size=30)
    folder_dm.setup()
    for split in ("train", "test"):
        assert torch.equal(torchvision_dm.splits[split].images, folder_dm.splits[split].images)
        assert torch.equal(torchvision_dm.splits[split].labels, folder_dm.splits[split].labels)
        assert torchvision_dm.splits[split].cache_file != folder_dm.splits[split].cache_file


# ----------------------------------------------------------------------------------------------------
# Errors and configuration
# ----------------------------------------------------------------------------------------------------


def test_bad_roots_name_the_path(cifar10_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        CIFARDataModule(str(missing))
    (tmp_path / "empty" / "train").mkdir(parents=True)  # no test/ and no cifar-10-batches-py
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "empty")) + ".*ImageFolder.*cifar-10-batches-py"):
        CIFARDataModule(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="has 10 classes but dataset='cifar100' needs 100"):
        CIFARDataModule(str(cifar10_root), dataset="cifar100", cache_dir=str(tmp_path)).setup()
    with pytest.raises(ValueError, match="class-balanced subset of 60000"):
        CIFARDataModule(str(cifar10_root), train_size=60000, cache_dir=str(tmp_path)).setup()
    assert not any(tmp_path.glob("*.pt"))


def test_lightning_cli_signature(cifar10_root: Path, tmp_path: Path) -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(CIFARDataModule, "data")
    config = parser.parse_args(
        ["--data.root", str(cifar10_root), "--data.train_size", "20", "--data.cache_dir", str(tmp_path)]
    )
    dm = parser.instantiate_classes(config).data
    assert isinstance(dm, CIFARDataModule)
    assert dm.hparams.train_size == 20 and dm.hparams.batch_size == 128 and dm.num_classes == 10
    with pytest.raises(argparse.ArgumentError):
        parser.parse_args(["--data.dataset", "mnist"])


# ----------------------------------------------------------------------------------------------------
# Batch transforms
# ----------------------------------------------------------------------------------------------------


def test_random_crop_flip_known_offsets(datamodule: CIFARDataModule) -> None:
    images, _ = train_batch(datamodule, 4)
    offsets = torch.tensor([[4, 4], [0, 0], [8, 3], [1, 7]])
    flip = torch.tensor([False, False, True, True])
    out = random_crop_flip(images, padding=4, offsets=offsets, flip=flip)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.zeros(4, 3, 40, 40, dtype=torch.uint8)
    padded[:, :, 4:36, 4:36] = images
    for i, ((top, left), mirrored) in enumerate(zip(offsets.tolist(), flip.tolist())):
        expected = padded[i, :, top : top + 32, left : left + 32]
        assert torch.equal(out[i], expected.flip(-1) if mirrored else expected)
    assert torch.equal(out[0], images[0])  # centred, unflipped: unchanged
    assert (out[1, :, :4] == 0).all() and (out[1, :, :, :4] == 0).all()  # top-left crop shows the padding


def test_training_augmentation_is_random_and_seeded(
    datamodule: CIFARDataModule, cifar10_root: Path, tmp_path: Path
) -> None:
    images, labels = train_batch(datamodule)
    first, out_labels = datamodule.transform_batch((images, labels), train=True)
    second, _ = datamodule.transform_batch((images, labels), train=True)
    assert first.shape == (BATCH_SIZE, 3, 32, 32) and first.dtype == torch.float32
    assert out_labels is labels
    assert not torch.equal(first, second)  # the epoch's stream moves on from batch to batch
    # Same datamodule seed: same stream, whatever the global RNG does; another seed: another stream.
    L.seed_everything(123)
    seeded, _ = make_datamodule(cifar10_root, tmp_path).transform_batch((images, labels), train=True)
    assert torch.equal(seeded, first)
    other, _ = make_datamodule(cifar10_root, tmp_path, seed=1).transform_batch((images, labels), train=True)
    assert not torch.equal(other, first)
    # Every output is the normalised version of one of the 9 * 9 * 2 crops/flips of its input.
    grid = torch.cartesian_prod(torch.arange(9), torch.arange(9))
    offsets, flip = grid.repeat(2, 1), torch.arange(2 * len(grid)) >= len(grid)
    for image, augmented in zip(images, seeded):
        candidates = normalized_by_hand(random_crop_flip(image.expand(len(offsets), -1, -1, -1), 4, offsets, flip))
        distance = (candidates - augmented.double()).abs().flatten(1).amax(1)
        assert distance.min() < 1e-5


@pytest.mark.parametrize("augment, train", [(True, False), (False, True)])
def test_batch_only_normalised(cifar10_root: Path, tmp_path: Path, augment: bool, train: bool) -> None:
    dm = make_datamodule(cifar10_root, tmp_path, augment=augment)
    dm.setup("validate")
    images, labels = dm.splits["test"].images[:BATCH_SIZE], dm.splits["test"].labels[:BATCH_SIZE]
    out, _ = dm.transform_batch((images, labels), train=train)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), normalized_by_hand(images), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------
# Dataloaders and a real Trainer
# ----------------------------------------------------------------------------------------------------


def test_dataloaders(datamodule: CIFARDataModule, cifar10_root: Path, tmp_path: Path) -> None:
    train = list(datamodule.train_dataloader())
    assert len(train) == -(-TRAIN_SIZE // BATCH_SIZE)
    images, labels = train[0]
    assert images.shape == (BATCH_SIZE, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    all_labels = torch.cat([y for _, y in train])
    assert not torch.equal(all_labels, datamodule.splits["train"].labels)  # shuffled ...
    assert torch.equal(all_labels.sort().values, datamodule.splits["train"].labels.sort().values)  # ... permutation

    same_seed = make_datamodule(cifar10_root, tmp_path / "cache")
    same_seed.setup("fit")
    assert torch.equal(next(iter(same_seed.train_dataloader()))[0], images)
    val_images, val_labels = next(iter(datamodule.val_dataloader()))
    assert torch.equal(val_images, datamodule.splits["test"].images[:BATCH_SIZE])
    assert torch.equal(val_labels, datamodule.splits["test"].labels[:BATCH_SIZE])

    with_workers = make_datamodule(cifar10_root, tmp_path / "cache", num_workers=1)
    with_workers.setup("test")
    loader = with_workers.test_dataloader()
    assert loader.persistent_workers and not datamodule.test_dataloader().persistent_workers
    assert torch.equal(next(iter(loader))[0], val_images)


def test_epoch_shuffle_sampler() -> None:
    sampler = EpochShuffleSampler(100, seed=0)
    epoch0 = list(sampler)
    assert sorted(epoch0) == list(range(100)) and len(sampler) == 100
    assert list(sampler) == epoch0  # a function of (seed, epoch) only
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    assert list(EpochShuffleSampler(100, seed=1)) != epoch0


def test_dataloader_before_setup_raises(cifar10_root: Path, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="call setup"):
        make_datamodule(cifar10_root, tmp_path).train_dataloader()


class TinyClassifier(L.LightningModule):
    """Linear classifier that records the batches it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
        self.train_batches: list[Tensor] = []
        self.val_batches: list[Tensor] = []

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        self.train_batches.append(batch[0])
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.val_batches.append(batch[0])
        self.log("val_loss", F.cross_entropy(self.net(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def make_trainer(root_dir: Path, max_epochs: int = 1, **kwargs: object) -> L.Trainer:
    options = {"logger": False, "enable_checkpointing": False, **kwargs}
    return L.Trainer(
        max_epochs=max_epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=root_dir,
        **options,
    )


def test_trainer_fit(cifar10_root: Path, tmp_path: Path) -> None:
    dm = make_datamodule(cifar10_root, tmp_path / "cache")
    model = TinyClassifier()
    trainer = make_trainer(tmp_path)
    trainer.fit(model, datamodule=dm)
    assert trainer.state.finished and trainer.global_step == 2
    assert len(model.train_batches) == 2
    padding_value = normalized_by_hand(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)).float()
    for batch in model.train_batches:
        assert batch.shape == (BATCH_SIZE, 3, 32, 32) and batch.dtype == torch.float32
        assert (batch == padding_value).all(1).any()  # augmented: zero padding shows in crops
    expected_val = normalized_by_hand(dm.splits["test"].images[:BATCH_SIZE]).float()
    for batch in model.val_batches:  # sanity check + epoch-end validation: only normalised
        torch.testing.assert_close(batch, expected_val, atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`")
def test_resumed_run_sees_the_same_batches(cifar10_root: Path, tmp_path: Path) -> None:
    L.seed_everything(0)
    straight = TinyClassifier()
    make_trainer(tmp_path / "a", max_epochs=2).fit(straight, datamodule=make_datamodule(cifar10_root, tmp_path))
    L.seed_everything(0)
    first = TinyClassifier()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    make_trainer(tmp_path / "b", callbacks=[checkpoint], enable_checkpointing=True).fit(
        first, datamodule=make_datamodule(cifar10_root, tmp_path)
    )
    L.seed_everything(123)  # shuffle and augmentation depend on the datamodule seed and epoch only
    resumed = TinyClassifier()
    make_trainer(tmp_path / "c", max_epochs=2).fit(
        resumed, datamodule=make_datamodule(cifar10_root, tmp_path), ckpt_path=checkpoint.last_model_path
    )
    assert len(straight.train_batches) == 4
    assert not torch.equal(straight.train_batches[0], straight.train_batches[2])  # epochs differ ...
    for seen, expected in zip(first.train_batches + resumed.train_batches, straight.train_batches):
        assert torch.equal(seen, expected)  # ... and resuming replays them exactly
