"""Models by name: the one place a run's ``model = "..."`` setting becomes a network.

A federation agrees on a model by name (plus the flat-buffer manifest, which pins every shape),
so the names are stable strings:

============  ==============================================================  ==========
name          network                                                         parameters
============  ==============================================================  ==========
resnet8       :class:`CifarResNet` depth 8, option A (digits, fast demos)         75,290
resnet20      depth 20, option A (He et al. 2016)                                269,722
resnet32      depth 32, option A                                                 464,154
resnet44      depth 44, option A                                                 658,586
resnet56      depth 56, option A                                                 853,018
resnet56-v2   the reference system's pre-activation ResNet-56 (24 px crops)      855,834
small-cnn     :class:`SmallCNN` (8x8 digits)                                     151,402
============  ==============================================================  ==========

Counts are for 3 input channels and 10 classes (small-cnn: 1 channel, 8x8 images).
"""

from __future__ import annotations

from torch import nn

from sealfl.errors import ConfigError
from sealfl.models.nn.resnet import CifarResNet
from sealfl.models.nn.small import SmallCNN

__all__ = ["MODEL_NAMES", "build_model", "count_parameters"]

_RESNETS: dict[str, tuple[int, str]] = {
    "resnet8": (8, "a"),
    "resnet20": (20, "a"),
    "resnet32": (32, "a"),
    "resnet44": (44, "a"),
    "resnet56": (56, "a"),
    "resnet56-v2": (56, "v2"),
}

MODEL_NAMES: tuple[str, ...] = (*_RESNETS, "small-cnn")
"""Every name :func:`build_model` accepts."""


def build_model(
    name: str, *, num_classes: int = 10, in_channels: int = 3, image_size: int = 32
) -> nn.Module:
    """Return a freshly initialised network (seed torch first for reproducible weights).

    Parameters
    ----------
    name
        One of :data:`MODEL_NAMES`.
    num_classes, in_channels
        The data's classes and image channels.
    image_size
        Side of the square input; only ``small-cnn`` depends on it (ResNets pool globally).

    Raises
    ------
    ConfigError
        If the name is unknown or a size is unusable.
    """
    if name in _RESNETS:
        depth, variant = _RESNETS[name]
        return CifarResNet(
            depth,
            variant="a" if variant == "a" else "v2",
            num_classes=num_classes,
            in_channels=in_channels,
        )
    if name == "small-cnn":
        return SmallCNN(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
    raise ConfigError(f"model: expected one of {list(MODEL_NAMES)}, got {name!r}")


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters (what papers report; buffers not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
