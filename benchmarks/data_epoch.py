"""One training epoch of CIFAR-10 data: cached uint8 tensors + batch augmentation vs ImageFolder + PIL transforms.

    python benchmarks/data_epoch.py                  # all 50,000 training images
    python benchmarks/data_epoch.py --limit 10000    # a class-balanced subset

(a) ``CIFARDataModule``: decode once into a tensor cache (timed separately, in a fresh temporary cache
directory unless ``--cache-dir`` is given), then iterate the shuffled train dataloader and apply
``transform_batch(train=True)`` (random crop, flip, normalise, vectorised) to every batch.
(b) ``torchvision.datasets.ImageFolder`` over the same files with per-image ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` and a ``DataLoader`` with ``num_workers=0``.
Both yield the same kind of normalised float batches; only the iteration is timed. Run it alone: other
busy processes on the machine skew the numbers, the batched path most (its ops are multi-threaded; see
``--threads``).
"""

import argparse
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import ImageFolder

from lightning_biorules.data import CIFAR_MEAN_STD, CIFARDataModule, list_image_files

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def setup_datamodule(
    root: Path, limit: Optional[int], batch_size: int, cache_dir: Path
) -> tuple[CIFARDataModule, float]:
    """A set-up datamodule over ``limit`` training images and the seconds ``setup`` took."""
    # The datamodule also loads a validation split; val_size=10 keeps its share of the time negligible.
    dm = CIFARDataModule(str(root), train_size=limit, val_size=10, batch_size=batch_size, cache_dir=str(cache_dir))
    start = time.perf_counter()
    dm.setup("fit")
    return dm, time.perf_counter() - start


def cached_epoch(dm: CIFARDataModule) -> float:
    """Seconds for one epoch of the datamodule's train loader, each batch augmented and normalised."""
    start = time.perf_counter()
    for batch in dm.train_dataloader():
        dm.transform_batch(batch, train=True)
    return time.perf_counter() - start


def pil_epoch(root: Path, classes: list[str], limit: Optional[int], batch_size: int) -> tuple[int, float]:
    """Number of images and seconds for one epoch of ImageFolder + per-image PIL transforms, same files."""
    selected = {path for path, _ in list_image_files(root / "train", classes, limit)}
    mean, std = CIFAR_MEAN_STD["cifar10"]
    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    dataset = ImageFolder(str(root / "train"), transform=transform, is_valid_file=selected.__contains__)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    start = time.perf_counter()
    for _ in loader:
        pass
    return len(dataset), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="CIFAR-10 in ImageFolder layout")
    parser.add_argument("--limit", type=int, default=None, help="training images to use (default: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: a fresh temporary directory")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice); 1 avoids "
        "OpenMP stalls when other processes hold the cores"
    )
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory(prefix="biorules-bench-") as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        first, build_s = setup_datamodule(args.root, args.limit, args.batch_size, cache_dir)
        dm, load_s = setup_datamodule(args.root, args.limit, args.batch_size, cache_dir)
        n = len(dm.splits["train"].labels)
        print(f"images: {n}, batch size {args.batch_size}, torch threads {torch.get_num_threads()}")
        hit = " (no build: --cache-dir already held it)" if first.splits["train"].from_cache else ""
        print(f"one-time cache build:     {build_s:7.2f} s{hit}")
        print(f"cache load (later runs):  {load_s:7.2f} s")
        cached_s = cached_epoch(dm)
        pil_n, pil_s = pil_epoch(args.root, dm.classes, args.limit, args.batch_size)
    if pil_n != n:
        raise RuntimeError(f"the two pipelines saw different images: {n} vs {pil_n}")
    print(f"(a) cached tensors + batch augmentation: {cached_s:7.2f} s/epoch  ({n / cached_s:9.0f} img/s)")
    print(f"(b) ImageFolder + PIL transforms:        {pil_s:7.2f} s/epoch  ({n / pil_s:9.0f} img/s)")
    print(f"speed-up (b / a): {pil_s / cached_s:.1f}x")


if __name__ == "__main__":
    main()
