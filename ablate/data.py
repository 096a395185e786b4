"""Data sets as uint8 tensors: decoded and resized once, cached on disk, augmented on the device.

Small image data sets fit in memory many times over (CIFAR-10 at 32 px is 150 MB of uint8),
so, as in the CIFAR-10 speedrun work (airbench), a data set is decoded once into one
(N, 3, S, S) uint8 tensor, kept on the training device, and batches are cut, cropped and
flipped there with tensor ops. No DataLoader workers decode images every epoch.

Names chosen by users live in one registry, ``DATASETS``; an unknown name lists the valid ones.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ablate.config import DatasetConfig
from ablate.errors import ConfigError, DataError

__all__ = [
    "DATASETS",
    "ImageTensors",
    "Read",
    "Splits",
    "check_dataset",
    "load_images",
    "split_indices",
    "DeviceImages",
    "crop_flip_draws",
    "crop_flip",
    "register_dataset",
    "save_atomic",
]

CACHE_VERSION = 2  # 2: the official test split travels with the images
# ImageNet statistics: the same normalisation for every data set keeps ImageNet weights usable.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageTensors:
    images: torch.Tensor  # (N, 3, S, S) uint8
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]
    official_test: np.ndarray | None = None  # indices of the data set's official test images, if it has them

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Splits:
    """Indices into an ImageTensors; disjoint, fixed by the data set config alone."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class Read:
    """What a reader returns: ``n`` (image, label) items, the class names, and, for a data set
    with an official test split, the indices (in the reader's order) of its official test images."""

    items: Iterable[tuple[object, int]]
    n: int
    classes: tuple[str, ...]
    official_test: np.ndarray | None = None


Reader = Callable[[DatasetConfig, Path], Read]
DATASETS: dict[str, tuple[Reader, bool]] = {}  # name -> (reader, needs files under root)


def register_dataset(name: str, needs_root: bool = True) -> Callable[[Reader], Reader]:
    def wrap(fn: Reader) -> Reader:
        DATASETS[name] = (fn, needs_root)
        return fn

    return wrap


# ---------------------------------------------------------------------------------------------
# Readers: each yields (image, label) with image a PIL image or an (H, W, C) uint8 array.


@register_dataset("digits", needs_root=False)
def _digits(cfg: DatasetConfig, root: Path):
    """scikit-learn's 1,797 real 8x8 handwritten digits: ships in the package, needs no network."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Values are 0..16 ink counts; scale to 0..255 grey levels.
    images = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    return Read(zip(images, bunch.target.tolist()), len(images), tuple(str(c) for c in bunch.target_names))


def _torchvision(cls_name: str, cfg: DatasetConfig, root: Path, **kwargs):
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    try:
        return cls(root=str(root), download=cfg.download, **kwargs)
    except RuntimeError as exc:
        if "not found" in str(exc).lower() or "corrupted" in str(exc).lower():
            raise DataError(
                f"dataset {cfg.name!r}: no files found under data root {root}; "
                f"set dataset.download: true to download it there, or set dataset.root"
            ) from None
        raise
    except OSError as exc:  # download switched on but no network
        raise DataError(f"dataset {cfg.name!r}: could not get it into {root}: {exc}") from None


@register_dataset("cifar10")
def _cifar10(cfg: DatasetConfig, root: Path):
    """The 50,000 training images, then the 10,000 of the official test set."""
    parts = [_torchvision("CIFAR10", cfg, root, train=flag) for flag in (True, False)]
    images = np.concatenate([p.data for p in parts])  # (N, 32, 32, 3) uint8
    labels = sum((list(p.targets) for p in parts), [])
    test = np.arange(len(parts[0].data), len(images))
    return Read(zip(images, labels), len(images), tuple(parts[0].classes), official_test=test)


@register_dataset("caltech101")
def _caltech101(cfg: DatasetConfig, root: Path):
    ds = _torchvision("Caltech101", cfg, root, target_type="category")
    return Read(iter(ds), len(ds), tuple(ds.categories))


@register_dataset("flowers102")
def _flowers102(cfg: DatasetConfig, root: Path):
    """The official train, validation and test splits in a row; the last is the official test set."""
    parts = [_torchvision("Flowers102", cfg, root, split=s) for s in ("train", "val", "test")]
    n = sum(len(p) for p in parts)
    test = np.arange(n - len(parts[2]), n)
    return Read((item for p in parts for item in p), n, tuple(str(i) for i in range(102)), official_test=test)


@register_dataset("imagefolder")
def _imagefolder(cfg: DatasetConfig, root: Path):
    """A user's own images: one sub-folder of ``dataset.root`` per class."""
    import torchvision.datasets as tvd

    if not root.is_dir():
        raise DataError(f"dataset 'imagefolder': data root {root} does not exist")
    try:
        ds = tvd.ImageFolder(str(root))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"dataset 'imagefolder': {exc}") from None

    def items():
        for i in range(len(ds)):
            path = ds.samples[i][0]
            try:
                yield ds[i]
            except OSError as exc:
                raise DataError(f"dataset 'imagefolder': cannot read image {path}: {exc}") from None

    return Read(items(), len(ds), tuple(ds.classes))


# ---------------------------------------------------------------------------------------------


def data_root(cfg: DatasetConfig, base: Path) -> Path:
    """The data root: absolute, or relative to the study file's folder."""
    root = Path(os.path.expanduser(cfg.root))
    return root if root.is_absolute() else base / root


def check_dataset(cfg: DatasetConfig, base: Path) -> None:
    """Fail early, before any storage exists, on an unknown name or a root with no files.

    Raises:
        ConfigError: unknown data set name.
        DataError: the data set needs files under its root and neither they nor the
            download switch are there.
    """
    if cfg.name not in DATASETS:
        raise ConfigError(f"dataset.name: unknown data set {cfg.name!r}; expected one of: {', '.join(sorted(DATASETS))}")
    _, needs_root = DATASETS[cfg.name]
    root = data_root(cfg, base)
    if needs_root and not cfg.download and not root.is_dir():
        raise DataError(
            f"dataset {cfg.name!r}: data root {root} does not exist; "
            f"set dataset.download: true to download it there, or set dataset.root"
        )


def _cache_path(cfg: DatasetConfig, root: Path) -> Path:
    key = f"{cfg.name}|{cfg.image_size}|{root.resolve()}|v{CACHE_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    home = Path(os.environ.get("ABLATE_CACHE", Path.home() / ".cache" / "ablate"))
    return home / f"{cfg.name}-{cfg.image_size}px-{digest}.pt"


def load_images(cfg: DatasetConfig, base: Path) -> ImageTensors:
    """The whole data set at ``cfg.image_size``, as uint8 tensors, from the disk cache if there.

    The cache lives under ``$ABLATE_CACHE`` (default ``~/.cache/ablate``), keyed by name, size
    and data root, and is written atomically so that a killed worker never leaves half a file.
    """
    check_dataset(cfg, base)
    root = data_root(cfg, base)
    path = _cache_path(cfg, root)
    if path.exists():
        blob = torch.load(path, weights_only=True)
        test = blob["official_test"]
        return ImageTensors(blob["images"], blob["labels"], tuple(blob["classes"]),
                            None if test is None else test.numpy())
    reader, _ = DATASETS[cfg.name]
    read = reader(cfg, root)
    n = read.n
    images = torch.empty((n, 3, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.int64)
    count = 0
    for i, (image, label) in enumerate(read.items):
        images[i] = _to_square_uint8(image, cfg.image_size)
        labels[i] = int(label)
        count += 1
    if count != n:
        raise DataError(f"dataset {cfg.name!r}: expected {n} images, read {count}")
    test = None if read.official_test is None else np.asarray(read.official_test, dtype=np.int64)
    save_atomic({"images": images, "labels": labels, "classes": list(read.classes),
                 "official_test": None if test is None else torch.from_numpy(test)}, path)
    return ImageTensors(images, labels, read.classes, test)


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a killed worker never
    leaves half a cache file or checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _to_square_uint8(image: object, size: int) -> torch.Tensor:
    """(3, size, size) uint8 from a PIL image or an (H, W, C) array; grey becomes RGB."""
    if hasattr(image, "convert"):  # PIL
        image = np.asarray(image.convert("RGB"))
    arr = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    if arr.ndim == 2:
        arr = arr[..., None]
    x = arr.permute(2, 0, 1)  # (C, H, W)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    if x.shape[1:] != (size, size):
        x = F.interpolate(x[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        x = x.round().clamp(0, 255).to(torch.uint8)
    return x


def split_indices(labels: torch.Tensor, cfg: DatasetConfig, official_test: np.ndarray | None = None) -> Splits:
    """Stratified, seeded train / validation / test indices.

    With ``cfg.subset`` a stratified subset of that many images is drawn first (by
    ``cfg.split_seed``). The test split is then the data set's official test images among them
    (``official_test``, as its reader gives them: CIFAR-10, Flowers-102), else the stratified
    ``cfg.test_fraction`` that ``cfg.split_seed`` draws; either way it never depends on the
    partition seed, so every run of a study is tested on the same examples. The rest is split
    into train and validation by ``cfg.partition`` (the partition seed; ``split_seed`` when
    unset), validation taking ``val_fraction / (1 - test_fraction)`` of it, as when the test
    split is drawn.

    Raises:
        DataError: a class too small to be split.
    """
    from sklearn.model_selection import train_test_split

    y = labels.numpy()
    idx = np.arange(len(y))
    try:
        if cfg.subset is not None and cfg.subset < len(idx):
            idx, _ = train_test_split(idx, train_size=cfg.subset, stratify=y[idx], random_state=cfg.split_seed)
        if official_test is not None:
            official = np.isin(idx, official_test)
            rest, test = idx[~official], idx[official]
        else:
            rest, test = train_test_split(idx, test_size=cfg.test_fraction, stratify=y[idx],
                                          random_state=cfg.split_seed)
        val_share = cfg.val_fraction / (1.0 - cfg.test_fraction)
        # + 1: with the partition seed unset, the partition is the one split_seed always drew
        train, val = train_test_split(rest, test_size=val_share, stratify=y[rest], random_state=cfg.partition + 1)
    except ValueError as exc:
        raise DataError(f"dataset {cfg.name!r}: cannot split {len(idx)} images by class: {exc}") from None
    return Splits(np.sort(train), np.sort(val), np.sort(test))


def _on_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` (on the CPU) on ``device``; to CUDA from pinned memory, without blocking the host.

    For what an epoch copies (its permutation and draws), not for the one-time upload: pinning
    makes a second host copy (rounded up to a power of two by the caching host allocator) that
    the allocator keeps for the process's life.
    """
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class DeviceImages:
    """Images on the training device, cut into normalised float batches.

    ``DeviceImages(images, labels, device)`` uploads them; :meth:`rows` is a view of some of
    them (a split) that shares the uploaded tensors. ``examples`` are the data-set indices of
    a view's images, in its order, and ``example_labels`` their labels, both on the CPU.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                 examples: np.ndarray | None = None):
        # once, before training: a plain copy (a pinned one would keep a second host copy of the data set)
        self.images = images.to(device)  # (N, 3, S, S) uint8
        self.labels = labels.to(device)  # (N,) int64
        self.device = device
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
        self.index: torch.Tensor | None = None  # a view's rows in the uploaded tensors, on the device
        self.examples = np.arange(len(labels)) if examples is None else np.asarray(examples)
        self.example_labels = labels.numpy()
        self._uploaded = (self.examples, self.example_labels)

    def rows(self, rows: np.ndarray) -> DeviceImages:
        """A view of the uploaded images ``rows`` (indices into them), sharing their tensors."""
        view = copy.copy(self)
        view.index = _on_device(torch.as_tensor(rows, dtype=torch.int64), self.device)
        examples, labels = self._uploaded
        view.examples, view.example_labels = examples[rows], labels[rows]
        return view

    def __len__(self) -> int:
        return len(self.examples)

    def batches(
        self,
        batch_size: int,
        *,
        order: torch.Generator | None = None,
        augment: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An epoch's batches: (x (B, 3, S, S) float32 normalised, y (B,) int64).

        Shuffled by ``order``, cropped and flipped by the numbers ``augment`` draws (none without
        it). Every random number of the epoch is drawn here, up front, in a fixed order (the
        permutation from ``order``; then the shifts and flips of every image from ``augment``),
        and reaches the device in one copy that does not block the host: a step then needs no
        host sync, and a seed sees the same batches alone or fused.
        """
        n = len(self)
        perm = _on_device(torch.randperm(n, generator=order), self.device) if order is not None else None
        draws = _on_device(crop_flip_draws(n, self.images.shape[-1], augment), self.device) \
            if augment is not None else None
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        return self._cut(batch_size, perm, draws, stop)

    def _cut(self, batch_size: int, perm: torch.Tensor | None, draws: torch.Tensor | None,
             stop: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if perm is None:
            perm = torch.arange(len(self), device=self.device)
        rows = perm if self.index is None else self.index[perm]
        for start in range(0, stop, batch_size):
            idx = rows[start : start + batch_size]
            x = self.images[idx]
            if draws is not None:
                x = crop_flip(x, draws[:, start : start + batch_size])
            yield (x.float() - self.mean) / self.std, self.labels[idx]


def crop_flip_draws(n: int, size: int, generator: torch.Generator | None, pad: int | None = None) -> torch.Tensor:
    """The random numbers of :func:`crop_flip` for ``n`` images of ``size`` px: (3, n) int64 on
    the CPU, rows dy, dx and flip, drawn in that order from ``generator`` (CPU), so that a seed
    gives the same augmentation on every device."""
    pad = max(1, size // 8) if pad is None else pad
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = (torch.rand(n, generator=generator) < 0.5).long()
    return torch.stack([dy, dx, flip])


def crop_flip(x: torch.Tensor, draws: torch.Tensor, pad: int | None = None) -> torch.Tensor:
    """Translation by up to ``pad`` px (reflect padding) and horizontal flip, per image, by ``draws``.

    x: (B, C, H, W); draws: (3, B) from :func:`crop_flip_draws` on x's device (dy, dx in
    [0, 2 pad], flip 0 or 1). Tensor ops only: no host sync.
    """
    b, c, h, w = x.shape
    pad = max(1, h // 8) if pad is None else pad
    dy, dx, flip = draws[0], draws[1], draws[2].bool()
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="reflect").to(x.dtype)  # (B, C, H+2p, W+2p)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])[:, None, :, None]  # (B, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]
