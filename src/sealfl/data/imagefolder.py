"""Image folders: ``ROOT/<class name>/<image>.png|.jpg|.jpeg``, one subdirectory per class.

The layout most users already have (and the one torchvision's ``ImageFolder`` reads; sealfl does
not use torchvision). Classes are the subdirectory names in sorted order, so two parties with the
same folders get the same labels; images within a class are read in sorted name order, so a
load is reproducible. Files directly under ``ROOT`` are ignored (a README, a licence); hidden
files (``.DS_Store``) are skipped; anything else in a class directory that is not a PNG or JPEG
is refused rather than silently dropped, because a silently smaller data set is the worse
surprise.

Pixels are decoded with Pillow (installed with matplotlib) and converted to ``RGB`` (3 channels)
or ``L`` (1 channel). Without ``size`` every image must have the first one's size; with it, each
is resized (bilinear). Decompression bombs (Pillow's pixel limit) are refused like any other bad
file, naming it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from sealfl.data.images import ImageSet
from sealfl.errors import ConfigError

__all__ = ["IMAGE_SUFFIXES", "read_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""File name endings read as images (compared case-insensitively)."""


def _decode(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    # Imported here, not at the top, so `import sealfl.data` does not load Pillow.
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.format not in ("PNG", "JPEG"):
                    raise ConfigError(
                        f"{path}: expected a PNG or JPEG image, got {img.format or 'unknown'}"
                    )
                img.load()
                converted = img.convert(mode)
    except ConfigError:
        raise
    except (
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise ConfigError(f"{path}: not a readable image: {exc}") from exc
    if size is not None and converted.size != (size[1], size[0]):
        converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    pixels = np.asarray(converted, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return pixels.transpose(2, 0, 1)


def read_image_folder(
    root: str | os.PathLike[str],
    *,
    size: tuple[int, int] | None = None,
    mode: Literal["RGB", "L"] = "RGB",
) -> ImageSet:
    """Read every image under ``root``, labelled by its subdirectory.

    Parameters
    ----------
    root
        A directory whose subdirectories are the classes.
    size
        ``(height, width)`` to resize every image to; ``None`` requires all images to have the
        same size already.
    mode
        ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel).

    Raises
    ------
    ConfigError
        If ``root`` has no class directories, a class directory has no images, holds a
        subdirectory or a file that is not a PNG/JPEG, an image cannot be decoded, or sizes
        differ without ``size``; the message names the file.
    """
    base = Path(root)
    if mode not in ("RGB", "L"):
        raise ConfigError(f"image folder: mode must be 'RGB' or 'L', got {mode!r}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ConfigError(f"image folder: size must be (height, width) >= 1, got {size!r}")
    if not base.is_dir():
        raise ConfigError(f"{base}: no such directory")
    classes = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(f"{base}: no class subdirectories (expected ROOT/<class>/<image>)")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, class_dir in enumerate(classes):
        files = []
        for entry in sorted(class_dir.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                raise ConfigError(
                    f"{entry}: nested directory in class {class_dir.name!r}; expected only images"
                )
            if entry.suffix.lower() not in IMAGE_SUFFIXES:
                raise ConfigError(
                    f"{entry}: not an image file (expected a name ending in "
                    f"{'/'.join(IMAGE_SUFFIXES)})"
                )
            files.append(entry)
        if not files:
            raise ConfigError(f"{class_dir}: class {class_dir.name!r} has no images")
        for f in files:
            pixels = _decode(f, mode, size)
            if images and pixels.shape != images[0].shape:
                h, w = images[0].shape[1:]
                raise ConfigError(
                    f"{f}: image is {pixels.shape[2]}x{pixels.shape[1]} (width x height), "
                    f"expected {w}x{h} like the first image; pass size=(height, width) to resize"
                )
            images.append(pixels)
            labels.append(label)
    return ImageSet(
        np.stack(images),
        np.asarray(labels, dtype=np.int64),
        tuple(c.name for c in classes),
    )
