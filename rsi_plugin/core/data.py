"""Validation data for the scale sweep: an ImageNet-layout folder or any (image, label) dataset.

:func:`validation_loader` yields ``(images, labels)`` batches of RGB images in [0, 1] at the
model's *resize size* (256 for ImageNet models, 73 for ``"tiny"``): ``Resize(R)`` of the short
side, then ``CenterCrop(R)`` so that batches stack. The sweep applies the scale transform
(:func:`rsi_plugin.core.transforms.scale_crop`, which crops and resizes to the input size) to each
batch once per scale, so one decode serves every scale.

Bad files never stop a run: a file that cannot be decoded (truncated or corrupt JPEG, a text
file named ``.jpg``) is left out of its batch and recorded with the reason, and a file without
an image extension in an ImageNet-layout folder is recorded when the folder is listed. Both are
reported by :attr:`ValidationLoader.skipped`. Grayscale, palette, CMYK, RGBA and 16-bit images
are converted to 8-bit RGB.

Batches are fixed before any file is read: batch ``b`` holds items ``b * batch_size`` to
``(b + 1) * batch_size - 1`` of the (possibly limited) item list, whatever is skipped, so a
run can be resumed from a batch index and split across processes by batch
(:meth:`ValidationLoader.shard`) and still see exactly the same batches as one process.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from rsi_plugin.core.modelinfo import model_info
from rsi_plugin.core.registry import registered_class_names
from rsi_plugin.errors import DataError, InputTypeError, MissingFileError, RSIError

__all__ = ["SkippedFiles", "ValidationLoader", "validation_loader", "image_folder", "check_labels", "describe",
           "IMAGE_EXTENSIONS", "model_class_names", "map_class_folders", "imagenet_wnids"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif",
)
"""File extensions read as images in an ImageNet-layout folder (case-insensitive)."""

# Errors that mean "this item cannot be read", as opposed to a bug in the caller's code.
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)


@dataclass
class SkippedFiles:
    """Items left out of a dataset, each with the reason.

    Attributes:
        entries (dict): key (a file path, or ``"item <index>"`` for a dataset without
            paths) -> reason.
    """

    entries: dict[str, str] = field(default_factory=dict)

    def add(self, key: str, reason: str) -> None:
        """Record one skipped item (a key seen again keeps its first reason)."""
        self.entries.setdefault(str(key), str(reason))

    def update(self, other: "SkippedFiles | dict[str, str]") -> None:
        """Record every entry of ``other``."""
        items = other.entries if isinstance(other, SkippedFiles) else other
        for key, reason in items.items():
            self.add(key, reason)

    @property
    def count(self) -> int:
        """Number of skipped items."""
        return len(self.entries)

    def __len__(self) -> int:
        return self.count

    def to_frame(self):
        """A ``pandas.DataFrame`` with columns ``file, reason``."""
        import pandas as pd

        return pd.DataFrame({"file": list(self.entries), "reason": list(self.entries.values())},
                            columns=["file", "reason"])

    def summary(self, limit: int = 10) -> str:
        """One line per skipped item (the first ``limit``), or ``"no file skipped"``."""
        if not self.entries:
            return "no file skipped"
        lines = [f"{self.count} file(s) skipped:"]
        for key, reason in list(self.entries.items())[:limit]:
            lines.append(f"  {key}: {reason}")
        if self.count > limit:
            lines.append(f"  ... and {self.count - limit} more")
        return "\n".join(lines)


def _open_rgb(path: str) -> Image.Image:
    """Decode an image file fully and convert it to 8-bit RGB."""
    with open(path, "rb") as handle:
        image = Image.open(handle)
        image.load()  # decode now: truncated or corrupt data fails here, not later
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):  # 16-bit grayscale: keep the top 8 bits
        image = image.point(lambda v: v / 256).convert("L")
    elif image.mode in ("I", "F"):
        image = image.convert("L")
    if image.mode != "RGB":
        image = image.convert("RGB")  # L, LA, P, RGBA, CMYK, YCbCr, ...
    return image


def _resize_square(image: torch.Tensor | Image.Image, size: int) -> torch.Tensor:
    """``Resize(size)`` of the short side (bilinear, antialiased), ``CenterCrop(size)``, to a
    float tensor ``[3, size, size]`` in [0, 1]."""
    if isinstance(image, Image.Image):
        image = TF.pil_to_tensor(_to_rgb(image))
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise DataError(f"an image must be [C, H, W] with C in 1, 3, 4; got {tuple(image.shape)}")
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    elif image.shape[0] == 4:
        image = image[:3]
    if image.dtype == torch.uint8:
        image = image.float() / 255
    elif not image.is_floating_point():
        raise InputTypeError(f"image tensors must be uint8 or floating point in [0, 1], got {image.dtype}")
    if tuple(image.shape[-2:]) != (size, size):
        if min(image.shape[-2:]) != size:
            image = TF.resize(image, [size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        image = TF.center_crop(image, [size, size])
    return image.float().contiguous()


class _Prepared(Dataset):
    """Items of ``base`` as ``(image [3, R, R] or None, label, key, reason)``; reading errors
    become ``None`` with the reason instead of exceptions."""

    def __init__(self, base: Dataset, size: int) -> None:
        self.base, self.size = base, size
        self.samples = getattr(base, "samples", None)

    def __len__(self) -> int:
        return len(self.base)

    def key(self, index: int) -> str:
        if self.samples is not None:
            return str(self.samples[index][0])
        return f"item {index}"

    def __getitem__(self, index: int):
        try:
            item = self.base[index]
            image, label = item[0], item[1]
            if isinstance(image, Image.Image):
                image = _to_rgb(image)  # a lazily loaded PIL image decodes here
        except _READ_ERRORS as error:
            return None, -1, self.key(index), f"{type(error).__name__}: {error}"
        if isinstance(image, Image.Image) or isinstance(image, torch.Tensor):
            return _resize_square(image, self.size), int(label), self.key(index), ""
        raise InputTypeError(f"dataset items must be (PIL image or Tensor [C, H, W], label), "
                        f"got an image of type {type(image).__name__}")


def _collate(items: list) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    good = [(img, label) for img, label, _, _ in items if img is not None]
    skipped = {key: reason for img, _, key, reason in items if img is None}
    if good:
        images = torch.stack([img for img, _ in good])
        labels = torch.tensor([label for _, label in good], dtype=torch.long)
    else:  # every item of the batch was skipped; the loader gives the empty batch its shape
        images, labels = torch.zeros(0, 3, 0, 0), torch.zeros(0, dtype=torch.long)
    return images, labels, skipped


class _NotImages:
    """``is_valid_file`` of the image folder: image extensions pass, others are recorded."""

    def __init__(self) -> None:
        self.skipped = SkippedFiles()

    def __call__(self, path: str) -> bool:
        if os.path.basename(path).lower().endswith(IMAGE_EXTENSIONS):
            return True
        self.skipped.add(path, "not an image file (extension not in IMAGE_EXTENSIONS)")
        return False


_WNID = re.compile(r"^n\d{8}$")
_PREFIXED = re.compile(r"^(\d+)[_\-. ](.+)$")


def model_class_names(model: nn.Module | None) -> tuple[str, ...] | None:
    """The model's class names in label order, when known.

    A registered model: the names it registered (``"tiny"``: the shapes classes, registered by
    :mod:`rsi_plugin.zoo`; see :mod:`rsi_plugin.core.registry`); a torchvision ImageNet
    model (1000 classes): ``weights.meta["categories"]`` (``"tench"``, ``"goldfish"``, ...).
    ``None`` for other models.
    """
    if model is None:
        return None
    info = model_info(model)
    registered = registered_class_names(info.name)  # "tiny": the zoo registers its shapes classes
    if registered is not None:
        return registered if len(registered) == info.num_classes else None
    if info.num_classes == 1000:
        import torchvision

        try:
            enum = torchvision.models.get_model_weights(info.name)
        except (ValueError, KeyError):
            return None
        categories = next(iter(enum)).meta.get("categories")
        return tuple(categories) if categories and len(categories) == 1000 else None
    return None


def imagenet_wnids() -> tuple[str, ...]:
    """ImageNet-1k's 1000 WordNet ids in label order (``n01440764`` = label 0, ``tench``).

    Shipped with the package (``rsi_plugin/data/imagenet1k_wnids.txt``; the order of the
    ILSVRC-2012 class index that torchvision's and timm's ImageNet weights use), so a folder
    holding a subset of ImageNet's synset folders maps by id offline.

    Returns:
        tuple of 1000 str.
    """
    from importlib.resources import files

    text = files("rsi_plugin").joinpath("data", IMAGENET_WNIDS_FILE).read_text(encoding="ascii")
    return tuple(text.split())


#: the package data file of :func:`imagenet_wnids`
IMAGENET_WNIDS_FILE = "imagenet1k_wnids.txt"


def map_class_folders(folders: list[str], num_classes: int, class_names: tuple[str, ...] | list[str] | None = None,
                      root: str | os.PathLike = "") -> dict[str, int]:
    """The model's label of each class folder.

    A folder maps by, in this order: its name among ``class_names`` (``"star"``,
    ``"tench"``); a number prefix that agrees with the name after it (``"05_star"``, as
    :func:`rsi_plugin.zoo.export_imagefolder` writes; any ``"NN_..."`` when no names are
    known); a bare number (``"5"``). Folders that are all of a model's classes in sorted
    order — any ``num_classes`` folders of a model without class names — keep their
    sorted position. ImageNet-1k WordNet-id folders (``n01440764`` ...) of a 1000-class
    model map by id through :func:`imagenet_wnids`, so any subset of them keeps its true
    labels (unless ``class_names`` gives WordNet ids of its own, which then decide).
    Anything else (names the model does not have, WordNet ids outside ImageNet-1k) is an
    error rather than a silent relabelling.

    Args:
        folders (list of str): class folder names, sorted.
        num_classes (int): the model's number of classes.
        class_names (sequence of str, optional): the model's class names in label order
            (:func:`model_class_names`; WordNet ids here replace the shipped ImageNet-1k
            list, e.g. for a model trained with another class order).
        root (path): the data folder, for messages.

    Returns:
        dict folder -> label.

    Raises:
        ValueError: a folder that cannot be mapped, a label out of range, or two folders
            with one label.
    """
    names = list(class_names) if class_names is not None else None
    user_gave_wnids = names is not None and any(_WNID.match(str(n)) for n in names)
    if num_classes == 1000 and not user_gave_wnids and folders and all(_WNID.match(f) for f in folders):
        names = list(imagenet_wnids())  # ImageNet-1k synset folders map by id, any subset of them
    lookup: dict[str, int] = {}
    if names is not None:
        for i, name in enumerate(names):
            lookup.setdefault(str(name), i if str(name) not in lookup else -1)  # -1: ambiguous name
    mapping: dict[str, int] = {}
    unmapped: list[str] = []
    for folder in folders:
        label = None
        if folder in lookup and lookup[folder] >= 0:
            label = lookup[folder]
        elif (match := _PREFIXED.match(folder)) is not None:
            index, rest = int(match.group(1)), match.group(2)
            if names is None or (index < len(names) and names[index] == rest):
                label = index
        elif folder.isdigit():
            label = int(folder)
        if label is None:
            unmapped.append(folder)
        else:
            mapping[folder] = label
    if unmapped and len(folders) == num_classes and names is None:
        return {folder: i for i, folder in enumerate(sorted(folders))}  # the full set: sorted order
    ambiguous = [f for f in unmapped if lookup.get(f) == -1]
    if ambiguous:
        raise DataError(f"class folder(s) {', '.join(ambiguous)} of {root} name more than one class of the model; "
                         "name them by label number instead ('NNN_name')")
    if unmapped:
        shown = ", ".join(unmapped[:5]) + (f" (+{len(unmapped) - 5} more)" if len(unmapped) > 5 else "")
        if names is not None and all(_WNID.match(f) for f in unmapped):
            hint = ("WordNet-id folders map by id: to ImageNet-1k's 1000 ids (rsi_plugin.core.data."
                    "imagenet_wnids()) for a 1000-class model, else to the WordNet ids given as class_names=; "
                    "these are not among them (pass class_names= with the model's WordNet ids in label order)")
        elif names is not None:
            sample = ", ".join(repr(n) for n in names[:10]) + (", ..." if len(names) > 10 else "")
            hint = f"valid class names: {sample} (or 'NN_name' / a label number)"
        else:
            hint = (f"the model has {num_classes} classes and no class names: name the folders by label "
                    f"number ('0' .. '{num_classes - 1}', or 'NN_anything'), or give all {num_classes} class "
                    "folders (taken in sorted order)")
        raise DataError(f"class folder(s) {shown} of {root} cannot be mapped to the model's classes; {hint}")
    bad = {f: label for f, label in mapping.items() if not 0 <= label < num_classes}
    if bad:
        raise DataError(f"class folder(s) {bad} of {root} give labels outside the model's 0..{num_classes - 1}")
    labels = list(mapping.values())
    if len(set(labels)) != len(labels):
        twice = sorted({f for f, label in mapping.items() if labels.count(label) > 1})
        raise DataError(f"class folders {twice} of {root} map to the same class of the model")
    return mapping


def image_folder(root: str | os.PathLike, model: nn.Module | None = None,
                 class_names: tuple[str, ...] | list[str] | None = None) -> tuple[Dataset, SkippedFiles]:
    """An ImageNet-layout folder (``root/<class>/<file>``) as a torchvision ``ImageFolder``.

    With a ``model`` (or ``class_names``), each class folder gets the model's label of its
    class (:func:`map_class_folders`), so a folder holding a subset of the classes
    (``05_star/`` alone) keeps its true labels, and a folder whose classes cannot be mapped
    is an error before any image is read. Without either, labels are the class folders'
    indices in sorted order (for ImageNet's synset folders, ``n01440764`` ...
    ``n15075141``, torchvision's class order). Images are decoded with PIL and converted to
    RGB; files without an image extension are left out and reported.

    Args:
        root (str or path): the folder.
        model (nn.Module, optional): whose classes the labels are (:func:`model_class_names`,
            ``rsi_info.num_classes``).
        class_names (sequence of str, optional): the model's class names in label order,
            instead of :func:`model_class_names`.

    Returns:
        (dataset, :class:`SkippedFiles` of the non-image files found).

    Raises:
        FileNotFoundError: ``root`` is not a folder or holds no class folder.
        ValueError: class folders that cannot be mapped to the model's classes.
    """
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"data folder not found: {root} (expected ImageNet layout root/<class>/<image>)")
    check = _NotImages()
    try:
        dataset = ImageFolder(str(root), loader=_open_rgb, is_valid_file=check, allow_empty=True)
    except FileNotFoundError as error:
        raise MissingFileError(f"{root}: {error} (expected ImageNet layout root/<class>/<image>)") from error
    if model is not None or class_names is not None:
        num_classes = model_info(model).num_classes if model is not None else len(class_names)
        names = class_names if class_names is not None else model_class_names(model)
        mapping = map_class_folders(list(dataset.classes), num_classes, names, root)
        relabel = {index: mapping[folder] for folder, index in dataset.class_to_idx.items()}
        if any(old != new for old, new in relabel.items()):
            logger.info("class folders of %s mapped to the model's labels: %s", root,
                        ", ".join(f"{f}->{mapping[f]}" for f in dataset.classes[:10]))
        dataset.samples = [(path, relabel[label]) for path, label in dataset.samples]
        dataset.imgs = dataset.samples
        dataset.targets = [label for _, label in dataset.samples]
        dataset.class_to_idx = dict(mapping)
    return dataset, check.skipped


@dataclass
class ValidationLoader:
    """Batches ``(images [B, 3, R, R] in [0, 1], labels [B])`` of a dataset, with skipped
    items reported in :attr:`skipped`.

    Build it with :func:`validation_loader`. Iterating yields this shard's batches; the
    global batch index of each is available through :meth:`batches`.

    Attributes:
        dataset (Dataset): items ``(PIL image or Tensor, label)``.
        resize_size (int): side R of the images yielded.
        input_size (int): the model's input side (kept for the sweep).
        batch_size (int): items per batch (before skipped items are dropped).
        workers (int): DataLoader worker processes.
        indices (list of int): the items used, in order (all, or ``limit`` evenly spaced).
        rank, world_size (int): this shard takes batches ``b`` with ``b % world_size == rank``.
        skipped (SkippedFiles): items left out so far (non-image files are known up front,
            undecodable ones once their batch has been read).
    """

    dataset: Dataset
    resize_size: int
    input_size: int
    batch_size: int = 64
    workers: int = 0
    indices: list[int] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1
    skipped: SkippedFiles = field(default_factory=SkippedFiles)
    pin_memory: bool = False

    @property
    def num_images(self) -> int:
        """Items in the whole (unsharded) selection, skipped ones included."""
        return len(self.indices)

    @property
    def num_batches(self) -> int:
        """Batches of the whole (unsharded) selection."""
        return -(-len(self.indices) // self.batch_size)

    def local_batches(self, start: int = 0) -> list[int]:
        """Global indices of this shard's batches, from batch ``start`` on."""
        return [b for b in range(max(0, start), self.num_batches) if b % self.world_size == self.rank]

    def __len__(self) -> int:
        return len(self.local_batches())

    def shard(self, rank: int, world_size: int) -> "ValidationLoader":
        """The same selection split by batch across ``world_size`` processes.

        Raises:
            ValueError: ``rank`` not in ``[0, world_size)``.
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise RSIError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        return ValidationLoader(self.dataset, self.resize_size, self.input_size, self.batch_size, self.workers,
                                list(self.indices), rank, world_size, self.skipped, self.pin_memory)

    def batches(self, start: int = 0) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """Yield ``(global batch index, images, labels)`` for this shard's batches from ``start``.

        Undecodable items are dropped from their batch (a batch may come out smaller, or
        empty) and recorded in :attr:`skipped`.
        """
        order = self.local_batches(start)
        if not order:
            return
        plan = [self.indices[b * self.batch_size:(b + 1) * self.batch_size] for b in order]
        loader = DataLoader(_Prepared(self.dataset, self.resize_size), batch_sampler=plan,
                            num_workers=self.workers, collate_fn=_collate, pin_memory=self.pin_memory)
        for b, (images, labels, skipped) in zip(order, loader):
            for key, reason in skipped.items():
                if key not in self.skipped.entries:
                    logger.warning("skipped %s: %s", key, reason)
            self.skipped.update(skipped)
            if images.shape[0] == 0:
                images = torch.zeros(0, 3, self.resize_size, self.resize_size)
            yield b, images, labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _, images, labels in self.batches():
            yield images, labels


def _subset(n: int, limit: int | None) -> list[int]:
    if limit is None or limit >= n:
        return list(range(n))
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise RSIError(f"limit must be a positive integer or None, got {limit!r}")
    if limit == 1:
        return [0]
    # evenly spaced over the item list: every class of a sorted ImageFolder is represented
    return [round(i * (n - 1) / (limit - 1)) for i in range(limit)]


def validation_loader(
    root_or_dataset: str | os.PathLike | Dataset | DataLoader | ValidationLoader | tuple | torch.Tensor,
    model: nn.Module | None = None,
    batch_size: int = 64,
    workers: int = 0,
    limit: int | None = None,
    resize_size: int | None = None,
    input_size: int | None = None,
    class_names: tuple[str, ...] | list[str] | None = None,
    map_classes: bool = True,
) -> ValidationLoader:
    r"""Validation batches at the model's resize size, bad files skipped and reported.

    Each item is decoded (PIL, any mode converted to RGB), resized so its short side is
    ``R`` (bilinear, antialiased) and centre-cropped to ``R x R``; the scale transform and
    the normalisation come later, per scale, in the sweep.

    Args:
        root_or_dataset: an ImageNet-layout folder (``root/<class>/<image>``); any torch
            ``Dataset`` whose items are ``(PIL image or Tensor [C, H, W], label)`` (tensors
            uint8, or float in [0, 1]); a ``DataLoader`` (its dataset is used); a pair of
            tensors ``(images [N, C, H, W], labels [N])``; or a :class:`ValidationLoader`
            (returned as is when nothing is to change).
        model (nn.Module, optional): takes ``R`` and the input size from ``model.rsi_info``
            (256 / 224 for ImageNet models, 73 / 64 for ``"tiny"``).
        batch_size (int): items per batch. Default 64.
        workers (int): DataLoader worker processes. Default 0 (decode in this process).
        limit (int, optional): use only ``limit`` items, evenly spaced over the dataset
            (so a sorted ImageNet folder keeps every class).
        resize_size, input_size (int, optional): override the model's sizes.
        class_names (sequence of str, optional): for a folder: the model's class names in
            label order, when :func:`model_class_names` does not know them (e.g. the 1000
            WordNet ids for a subset of ImageNet's synset folders). A folder's class
            folders are mapped to the model's labels by name (:func:`map_class_folders`)
            whenever a model or ``class_names`` is given.
        map_classes (bool): ``False`` for images whose labels are not used (natural
            images for a scan): class folders keep their sorted indices, whatever their names.

    Returns:
        :class:`ValidationLoader`; its ``skipped`` attribute reports left-out files.

    Raises:
        FileNotFoundError: a folder that does not exist.
        ValueError: bad ``batch_size``, ``workers`` or ``limit``; class folders that
            cannot be mapped to the model's classes.
        TypeError: an unsupported ``root_or_dataset``.
    """
    info = model_info(model) if model is not None else None
    resize_size = resize_size or (info.resize_size if info else None)
    input_size = input_size or (info.input_size if info else None)
    if resize_size is None or input_size is None:
        raise RSIError("give a model (its rsi_info has the sizes) or resize_size and input_size")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RSIError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(workers, int) or workers < 0:
        raise RSIError(f"workers must be an integer >= 0, got {workers!r}")
    skipped = SkippedFiles()
    if isinstance(root_or_dataset, ValidationLoader):
        given = root_or_dataset
        same = (given.batch_size == batch_size and given.resize_size == resize_size and limit is None)
        if same:
            return given
        root_or_dataset = given.dataset
        skipped.update(given.skipped)
    if isinstance(root_or_dataset, (str, os.PathLike)):
        dataset, skipped = image_folder(root_or_dataset, model=model if map_classes else None,
                                        class_names=class_names if map_classes else None)
    elif isinstance(root_or_dataset, DataLoader):
        dataset = root_or_dataset.dataset
    elif isinstance(root_or_dataset, torch.Tensor):
        dataset = TensorDataset(root_or_dataset, torch.zeros(len(root_or_dataset), dtype=torch.long))
    elif isinstance(root_or_dataset, (tuple, list)) and len(root_or_dataset) == 2 and all(
            isinstance(t, torch.Tensor) for t in root_or_dataset):
        images, labels = root_or_dataset
        if images.dim() != 4 or labels.dim() != 1 or len(images) != len(labels):
            raise DataError(f"(images, labels) must be [N, C, H, W] and [N], got "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        dataset = TensorDataset(images, labels)
    elif isinstance(root_or_dataset, Dataset):
        dataset = root_or_dataset
    else:
        raise InputTypeError("data must be an ImageNet-layout folder, a torch Dataset of (image, label), a DataLoader, "
                        f"a pair (images, labels) of tensors or a ValidationLoader; got {type(root_or_dataset).__name__}")
    if skipped.count and isinstance(root_or_dataset, (str, os.PathLike)):
        logger.warning("%d non-image file(s) in %s left out", skipped.count, root_or_dataset)
    pin = bool(model is not None and next(iter(model.parameters()), torch.empty(0)).is_cuda)
    return ValidationLoader(dataset, int(resize_size), int(input_size), batch_size, workers,
                            _subset(len(dataset), limit), 0, 1, skipped, pin)


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """Raise ValueError when a label is outside ``[0, num_classes)``."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(f"labels must lie in [0, {num_classes}), got range "
                         f"[{int(labels.min())}, {int(labels.max())}]: does the data's class order match the model?")


def describe(loader: ValidationLoader) -> dict[str, Any]:
    """What identifies a selection of data (for a sweep's resume check)."""
    return {"num_images": loader.num_images, "resize_size": loader.resize_size, "input_size": loader.input_size}

