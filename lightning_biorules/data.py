"""CIFAR-10/100 as a :class:`lightning.LightningDataModule` backed by a decoded ``uint8`` tensor cache.

Images are decoded once (PIL for image files, the pickled arrays for torchvision's CIFAR format) into
``uint8`` tensors ``[N, 3, 32, 32]`` with ``int64`` labels and saved with :func:`torch.save` in a cache
directory, so later runs load a whole split in one read. Batches leave the dataloader as ``uint8``
tensors; augmentation (random crop with zero padding, horizontal flip) and normalisation run
vectorised over the batch on the training device in :meth:`CIFARDataModule.on_after_batch_transfer`.

Randomness (shuffle order, crops, flips) is a function of the datamodule's ``seed`` and the epoch only,
so a run resumed from an end-of-epoch checkpoint sees exactly the batches of an uninterrupted run.
"""

import hashlib
import io
import json
import multiprocessing
import os
import pickle
import sys
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Optional, Sequence

import lightning as L
import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.folder import find_classes, make_dataset
from torchvision.datasets.utils import download_and_extract_archive

__all__ = [
    "CIFAR_MEAN_STD",
    "CIFARDataModule",
    "CachedSplit",
    "EpochShuffleSampler",
    "TensorImageDataset",
    "collate_batch",
    "default_cache_dir",
    "derive_seed",
    "list_image_files",
    "normalize",
    "random_crop_flip",
]

#: Per-channel mean and standard deviation of the training split, in ``[0, 1]`` pixel units.
CIFAR_MEAN_STD: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100}
_TORCHVISION = {"cifar10": CIFAR10, "cifar100": CIFAR100}
_SPLITS = ("train", "test")
_IMAGE_SIZE = 32
_CROP_PADDING = 4
_DEFAULT_DATA_ROOT = "~/.cache/lightning_biorules/data"
#: Bump when the cache file contents change meaning, so stale files are never read.
_CACHE_FORMAT = 1
#: Below this many files, forking a decoding pool costs more than it saves.
_PARALLEL_DECODE_MIN = 2048


def derive_seed(seed: int, purpose: str, epoch: int) -> int:
    """A 63-bit seed for one ``purpose`` (``"shuffle"``, ``"augment"``) in one epoch, decorrelated by hashing."""
    digest = hashlib.sha256(f"{seed}/{purpose}/{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def default_cache_dir() -> Path:
    """Cache directory used when none is given: ``$BIORULES_CACHE`` or ``~/.cache/lightning_biorules``."""
    env = os.environ.get("BIORULES_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lightning_biorules"


# ----------------------------------------------------------------------------------------------------
# Batch transforms
# ----------------------------------------------------------------------------------------------------


def random_crop_flip(
    images: Tensor,
    padding: int = _CROP_PADDING,
    offsets: Optional[Tensor] = None,
    flip: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """Random crop with zero padding followed by a random horizontal flip, vectorised over a batch.

    Equivalent to torchvision's ``RandomCrop(size, padding)`` then ``RandomHorizontalFlip()`` applied
    to every image independently: the batch is padded once, each crop (already column-reversed where
    flipped, chosen with :func:`torch.where`) is gathered through one flat index.

    Args:
        images: ``[B, C, H, W]`` tensor of any dtype; the output has the same shape, dtype and device.
        padding: Zero padding added on every side before cropping back to ``H x W``.
        offsets: ``int64 [B, 2]`` crop origins ``(top, left)`` in padded coordinates, each in
            ``[0, 2 * padding]``; ``(padding, padding)`` is the uncropped image. Drawn uniformly when None.
        flip: ``bool [B]``, which crops to mirror left-right. Drawn with probability 0.5 when None.
        generator: Generator on ``images.device`` for the draws; None uses torch's default one.
    """
    b, c, h, w = images.shape
    device = images.device
    if offsets is None:
        offsets = torch.randint(0, 2 * padding + 1, (b, 2), device=device, generator=generator)
    if flip is None:
        flip = torch.rand(b, device=device, generator=generator) < 0.5
    padded = F.pad(images, (padding, padding, padding, padding))
    padded_width = w + 2 * padding
    rows = offsets[:, :1].to(device) + torch.arange(h, device=device)  # [B, H]
    cols = offsets[:, 1:].to(device) + torch.arange(w, device=device)  # [B, W]
    cols = torch.where(flip.to(device)[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * padded_width + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.flatten(2).gather(2, index).view(b, c, h, w)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``uint8 [B, C, H, W]`` -> ``float32`` ``(images / 255 - mean) / std`` with per-channel statistics."""
    stats = torch.tensor([mean, std], dtype=torch.float32, device=images.device).view(2, 1, -1, 1, 1)
    return images.to(torch.float32).div_(255).sub_(stats[0]).div_(stats[1])


# ----------------------------------------------------------------------------------------------------
# Dataset over cached tensors
# ----------------------------------------------------------------------------------------------------


class TensorImageDataset(Dataset[tuple[Tensor, Tensor]]):
    """Map-style dataset over in-memory ``uint8`` images and ``int64`` labels.

    :class:`~torch.utils.data.DataLoader` fetches a whole batch through :meth:`__getitems__` (one
    index operation); pair it with :func:`collate_batch`, which passes that batch through unchanged.
    """

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        """The batch ``(images[indices], labels[indices])``, already stacked."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[index]


def collate_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Collate for :class:`TensorImageDataset`: the batch arrives stacked, return it as is."""
    return batch


class EpochShuffleSampler(Sampler[int]):
    """A fresh random permutation every epoch, a pure function of ``(seed, epoch)``.

    Like :class:`~torch.utils.data.distributed.DistributedSampler`, the epoch is set from outside:
    Lightning calls :meth:`set_epoch` at the start of every training epoch (also after resuming);
    plain loops must call it themselves, or every epoch repeats the same order.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "shuffle", self.epoch))
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


# ----------------------------------------------------------------------------------------------------
# Split sources and the decoded-tensor cache
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedSplit:
    """One decoded split: ``images`` ``uint8 [N, 3, 32, 32]``, ``labels`` ``int64 [N]``.

    ``cache_file`` is where it is stored; ``from_cache`` tells whether this load read that file
    (True) or decoded the sources and wrote it (False).
    """

    images: Tensor
    labels: Tensor
    cache_file: Path
    from_cache: bool


@dataclass(frozen=True)
class _SplitSource:
    """What identifies a split's contents (``fingerprint``, hashed into the cache key) and how to decode it."""

    fingerprint: dict
    decode: Callable[[], tuple[Tensor, Tensor]]


def _balanced_indices(labels: Sequence[int], num_classes: int, size: Optional[int], where: str) -> list[int]:
    """Indices of a deterministic class-balanced subset, interleaved class by class.

    Takes the first ``size // num_classes`` items of every class in their given order (one more for the
    first ``size % num_classes`` classes), or all items when ``size`` is None. The result is ordered
    round-robin (first item of every class, then the second, ...), so any prefix is balanced too.
    """
    per_class: list[list[int]] = [[] for _ in range(num_classes)]
    for i, label in enumerate(labels):
        per_class[label].append(i)
    if size is not None:
        quotas = [size // num_classes + (c < size % num_classes) for c in range(num_classes)]
        short = [c for c in range(num_classes) if len(per_class[c]) < quotas[c]]
        if short:
            raise ValueError(
                f"{where}: cannot take a class-balanced subset of {size} images; class indices {short} "
                f"have fewer than {max(quotas)} images"
            )
        per_class = [items[:quota] for items, quota in zip(per_class, quotas)]
    ranked = sorted((rank, c, i) for c, items in enumerate(per_class) for rank, i in enumerate(items))
    return [i for _, _, i in ranked]


def _image_extensions() -> tuple[str, ...]:
    """Lower-case file extensions of every format PIL can open."""
    return tuple(Image.registered_extensions())


def list_image_files(split_dir: Path, classes: Sequence[str], size: Optional[int] = None) -> list[tuple[str, int]]:
    """``(path, label)`` of the images :class:`CIFARDataModule` takes from an ImageFolder split, in order.

    Files are found like :class:`torchvision.datasets.ImageFolder` (``split_dir/<class>/**``, sorted,
    any extension PIL reads); the subset is the first files of every class, interleaved class by class
    (see ``train_size`` in :class:`CIFARDataModule`).
    """
    class_to_idx = {name: i for i, name in enumerate(classes)}
    samples = make_dataset(str(split_dir), class_to_idx, extensions=_image_extensions())
    keep = _balanced_indices([label for _, label in samples], len(classes), size, str(split_dir))
    return [samples[i] for i in keep]


def _decode_image(path: str) -> np.ndarray:
    """One image file -> ``uint8 [32, 32, 3]`` RGB array."""
    with open(path, "rb") as fh:
        data = fh.read()
    with Image.open(io.BytesIO(data)) as image:
        if image.size != (_IMAGE_SIZE, _IMAGE_SIZE):
            raise ValueError(f"{path}: expected a {_IMAGE_SIZE}x{_IMAGE_SIZE} CIFAR image, got {image.size}")
        return np.asarray(image.convert("RGB"))


def _decode_files(paths: Sequence[str]) -> np.ndarray:
    """Image files -> ``uint8 [N, 32, 32, 3]``."""
    return np.stack([_decode_image(path) for path in paths])


def _decode_images(paths: Sequence[str]) -> Tensor:
    """Decode image files with PIL into ``uint8 [N, 3, 32, 32]``.

    Large lists are split over a pool of forked processes, one per available CPU (on Linux, where forking
    is cheap and needs no re-import of this module, unlike spawn; daemonic processes may not fork).
    """
    parallel = sys.platform.startswith("linux") and not multiprocessing.current_process().daemon
    workers = len(os.sched_getaffinity(0)) if parallel else 1
    if workers > 1 and len(paths) >= _PARALLEL_DECODE_MIN:
        step = -(-len(paths) // (4 * workers))
        chunks = [paths[i : i + step] for i in range(0, len(paths), step)]
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            arrays = pool.map(_decode_files, chunks)
    else:
        arrays = [_decode_files(paths)]
    return torch.from_numpy(np.concatenate(arrays)).permute(0, 3, 1, 2).contiguous()


def _image_folder_source(split_dir: Path, classes: Sequence[str], size: Optional[int]) -> _SplitSource:
    """Source over ``split_dir/<class>/*``.

    Fingerprinted by the selected file names and labels plus the modification time of every folder
    holding them, which changes whenever a file there is added, removed or renamed (one ``stat`` per
    folder rather than per file keeps a cache hit fast). A file rewritten in place under the same name
    is not noticed: delete the cache file in that case.
    """
    samples = list_image_files(split_dir, classes, size)
    listing = "".join(f"{path}\0{label}\n" for path, label in samples)
    folders = sorted({os.path.dirname(path) for path, _ in samples})
    fingerprint = {
        "count": len(samples),
        "files": hashlib.sha256(listing.encode()).hexdigest(),
        "folders": [[folder, os.stat(folder).st_mtime_ns] for folder in folders],
        "classes": list(classes),
        "decoder": f"PIL {PIL.__version__}",
    }

    def decode() -> tuple[Tensor, Tensor]:
        images = _decode_images([path for path, _ in samples])
        return images, torch.tensor([label for _, label in samples], dtype=torch.int64)

    return _SplitSource(fingerprint, decode)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")


def _torchvision_source(base_dir: Path, dataset: str, split: str, size: Optional[int]) -> _SplitSource:
    """Source over torchvision's pickled CIFAR batches; fingerprinted by each batch file's size and mtime."""
    tv_class = _TORCHVISION[dataset]
    files = [base_dir / name for name, _ in (tv_class.train_list if split == "train" else tv_class.test_list)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"missing {dataset} batch files {missing}; pass download=True to fetch them")
    fingerprint = {"files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]}

    def decode() -> tuple[Tensor, Tensor]:
        entries = [_unpickle(f) for f in files]
        data = np.concatenate([entry["data"] for entry in entries]).reshape(-1, 3, _IMAGE_SIZE, _IMAGE_SIZE)
        labels = [y for entry in entries for y in entry["labels" if "labels" in entry else "fine_labels"]]
        keep = _balanced_indices(labels, _NUM_CLASSES[dataset], size, str(base_dir / split))
        index = torch.as_tensor(keep, dtype=torch.long)
        return torch.from_numpy(data)[index].contiguous(), torch.tensor(labels, dtype=torch.int64)[index]

    return _SplitSource(fingerprint, decode)


def _read_cache(path: Path) -> Optional[tuple[Tensor, Tensor]]:
    """``(images, labels)`` from a cache file, or None if it is missing or unreadable."""
    try:
        blob = torch.load(path, weights_only=True)
        return blob["images"], blob["labels"]
    except FileNotFoundError:
        return None
    except Exception as err:  # noqa: BLE001 - a damaged file fails in many ways (zip, unpickler, keys); rebuild it
        warnings.warn(f"ignoring unreadable cache file {path} ({err!r}); decoding again", stacklevel=3)
        return None


def _write_cache(path: Path, images: Tensor, labels: Tensor, key: dict) -> None:
    """Save atomically: write a temporary file in the same directory, then :func:`os.replace` it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        torch.save({"images": images, "labels": labels, "key": json.dumps(key, sort_keys=True)}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------
# DataModule
# ----------------------------------------------------------------------------------------------------


def _layout_help(root: Path, dataset: str) -> str:
    return (
        f"expected either an ImageFolder layout ({root}/train/<class>/<image> and {root}/test/<class>/<image>) "
        f"or a torchvision CIFAR root containing {root}/{_TORCHVISION[dataset].base_folder} "
        f"(pass download=True to let torchvision fetch it)"
    )


def _detect_layout(root: Path, dataset: str, download: bool) -> Literal["imagefolder", "torchvision"]:
    """``"imagefolder"`` if ``root/train`` and ``root/test`` exist, else ``"torchvision"`` if its folder exists or
    ``download`` is set; raise otherwise."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        return "imagefolder"
    if download or (root / _TORCHVISION[dataset].base_folder).is_dir():
        return "torchvision"
    if not root.exists():
        raise FileNotFoundError(f"CIFAR data root {root} does not exist; {_layout_help(root, dataset)}")
    raise ValueError(f"CIFAR data root {root} has no recognised layout; {_layout_help(root, dataset)}")


class CIFARDataModule(L.LightningDataModule):
    """CIFAR-10/100 from an ImageFolder tree or torchvision's CIFAR files, cached as decoded ``uint8`` tensors.

    Batches are ``(images, labels)``: the dataloaders yield ``uint8 [B, 3, 32, 32]`` images, which
    :meth:`on_after_batch_transfer` (on the training device) turns into normalised ``float32``, after a
    random 4-pixel-padded crop and horizontal flip for training batches (see :meth:`transform_batch`).
    Validation and test both use the ``test`` split.

    Args:
        root: Data location, either an ImageFolder layout (``root/train/<class>/*`` and
            ``root/test/<class>/*``, any image format PIL reads, 32x32 images, classes sorted by name) or
            a torchvision CIFAR root (containing ``cifar-10-batches-py`` / ``cifar-100-python``, or to be
            downloaded there with ``download=True``). ImageFolder wins when both are present. None uses
            torchvision's files in ``~/.cache/lightning_biorules/data`` and downloads them if missing.
        dataset: ``"cifar10"`` or ``"cifar100"``: number of classes, normalisation statistics and
            torchvision file names.
        batch_size: Images per batch in every dataloader.
        train_size: Number of training images, a deterministic class-balanced subset (the first
            ``train_size // num_classes`` images of every class, in sorted file order / torchvision order);
            only those images are decoded. None takes the whole split.
        val_size: The same for the ``test`` split used by validation and test dataloaders.
        augment: Apply the random crop and flip to training batches; if False they are only normalised.
        num_workers: Dataloader worker processes (0 is usually fastest, a batch is one index operation);
            workers are kept alive between epochs when > 0.
        cache_dir: Directory for the decoded-tensor cache files. None uses ``$BIORULES_CACHE`` if set,
            else ``~/.cache/lightning_biorules``.
        download: Fetch torchvision's CIFAR archive into ``root`` in :meth:`prepare_data` if it is missing.
        seed: Seed of the training-set shuffle and of the crops and flips. Each epoch derives its own
            seeds from it (:func:`derive_seed`): a shuffle permutation (:class:`EpochShuffleSampler`) and
            a generator on the batch's device for the augmentation, independent of the global RNG (and so
            of :func:`lightning.seed_everything` and of how much randomness the model uses).
    """

    def __init__(
        self,
        root: Optional[str] = None,
        dataset: Literal["cifar10", "cifar100"] = "cifar10",
        batch_size: int = 128,
        train_size: Optional[int] = None,
        val_size: Optional[int] = None,
        augment: bool = True,
        num_workers: int = 0,
        cache_dir: Optional[str] = None,
        download: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if dataset not in _NUM_CLASSES:
            raise ValueError(f"dataset must be one of {sorted(_NUM_CLASSES)}, got {dataset!r}")
        for name, value in (("batch_size", batch_size), ("train_size", train_size), ("val_size", val_size)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.download = download or root is None
        self.root = Path(root if root is not None else _DEFAULT_DATA_ROOT).expanduser().resolve()
        self.layout = _detect_layout(self.root, dataset, self.download)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.splits: dict[str, CachedSplit] = {}
        self._classes: Optional[list[str]] = None
        self._augment_rng: Optional[tuple[int, torch.device, torch.Generator]] = None

    @property
    def num_classes(self) -> int:
        """10 for CIFAR-10, 100 for CIFAR-100."""
        return _NUM_CLASSES[self.hparams.dataset]

    @property
    def classes(self) -> list[str]:
        """Class names in label order (ImageFolder: sorted folder names; torchvision: the ``meta`` file)."""
        if self._classes is None:
            if self.layout == "imagefolder":
                classes, _ = find_classes(str(self.root / "train"))
            else:
                tv_class = _TORCHVISION[self.hparams.dataset]
                meta = self.root / tv_class.base_folder / tv_class.meta["filename"]
                if not meta.is_file():
                    raise FileNotFoundError(f"{meta} not found; call prepare_data() with download=True first")
                classes = _unpickle(meta)[tv_class.meta["key"]]
            if len(classes) != self.num_classes:
                raise ValueError(
                    f"{self.root} has {len(classes)} classes but dataset={self.hparams.dataset!r} "
                    f"needs {self.num_classes}"
                )
            self._classes = list(classes)
        return self._classes

    def _split_size(self, split: str) -> Optional[int]:
        return self.hparams.train_size if split == "train" else self.hparams.val_size

    def _split_source(self, split: str) -> tuple[_SplitSource, Path, dict]:
        """The split's source, its cache file and the key hashed into the file name.

        The key covers the cache format, dataset, layout, resolved root, split, subset size and the
        source fingerprint (file list and folder or file modification times), so changing any of them
        selects a different file.
        """
        size = self._split_size(split)
        if self.layout == "imagefolder":
            source = _image_folder_source(self.root / split, self.classes, size)
        else:
            base_dir = self.root / _TORCHVISION[self.hparams.dataset].base_folder
            source = _torchvision_source(base_dir, self.hparams.dataset, split, size)
        key = {
            "format": _CACHE_FORMAT,
            "dataset": self.hparams.dataset,
            "layout": self.layout,
            "root": str(self.root),
            "split": split,
            "size": size,
            "source": source.fingerprint,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        name = f"{self.hparams.dataset}-{split}-{size if size is not None else 'all'}-{digest}.pt"
        return source, self.cache_dir / name, key

    def _load_split(self, split: str) -> CachedSplit:
        """Read the split's cache file, or decode the split and write it."""
        source, path, key = self._split_source(split)
        cached = _read_cache(path)
        if cached is not None:
            return CachedSplit(*cached, cache_file=path, from_cache=True)
        images, labels = source.decode()
        _write_cache(path, images, labels, key)
        return CachedSplit(images, labels, cache_file=path, from_cache=False)

    def prepare_data(self) -> None:
        """Download torchvision's files if asked and missing, then build the cache files that don't exist yet."""
        if self.layout == "torchvision" and self.download:
            tv_class = _TORCHVISION[self.hparams.dataset]
            if not (self.root / tv_class.base_folder / tv_class.meta["filename"]).is_file():
                download_and_extract_archive(
                    tv_class.url, str(self.root), filename=tv_class.filename, md5=tv_class.tgz_md5
                )
        for split in _SPLITS:
            source, path, key = self._split_source(split)
            if not path.is_file():
                _write_cache(path, *source.decode(), key)

    def setup(self, stage: Optional[str] = None) -> None:
        """Load the splits the stage needs into :attr:`splits` (``"train"`` for fit, ``"test"`` always)."""
        for split in _SPLITS if stage in (None, "fit") else ("test",):
            if split not in self.splits:
                self.splits[split] = self._load_split(split)

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _dataloader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.splits:
            raise RuntimeError(f"the {split!r} split is not loaded; call setup() first")
        data = self.splits[split]
        sampler = None
        if shuffle:
            sampler = EpochShuffleSampler(len(data.labels), self.hparams.seed)
            sampler.set_epoch(self._current_epoch())
        return DataLoader(
            TensorImageDataset(data.images, data.labels),
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            collate_fn=collate_batch,
        )

    def train_dataloader(self) -> DataLoader:
        """Training split, ``uint8`` batches, reshuffled every epoch by :class:`EpochShuffleSampler`."""
        return self._dataloader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """The ``test`` split in a fixed, class-interleaved order."""
        return self._dataloader("test", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """The ``test`` split, as for validation."""
        return self._dataloader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """The ``test`` split, as for validation."""
        return self._dataloader("test", shuffle=False)

    def transform_batch(self, batch: tuple[Tensor, Tensor], train: bool) -> tuple[Tensor, Tensor]:
        """``(uint8 images, labels)`` -> ``(normalised float32 images, labels)``.

        With ``train`` (and ``augment``), images are first randomly cropped and flipped by
        :func:`random_crop_flip`, drawing from this epoch's augmentation generator on the images' device
        (epoch 0 when no trainer is attached); successive batches of an epoch continue its stream.
        """
        images, labels = batch
        if train and self.hparams.augment:
            images = random_crop_flip(images, _CROP_PADDING, generator=self._augment_generator(images.device))
        mean, std = CIFAR_MEAN_STD[self.hparams.dataset]
        return normalize(images, mean, std), labels

    def _augment_generator(self, device: torch.device) -> torch.Generator:
        """The augmentation generator of the current epoch on ``device``, seeded when the epoch starts."""
        epoch = self._current_epoch()
        if self._augment_rng is None or self._augment_rng[:2] != (epoch, device):
            generator = torch.Generator(device=device)
            generator.manual_seed(derive_seed(self.hparams.seed, "augment", epoch))
            self._augment_rng = (epoch, device, generator)
        return self._augment_rng[2]

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Augment (while the trainer is training) and normalise each batch on its device."""
        return self.transform_batch(batch, train=self.trainer is not None and self.trainer.training)
