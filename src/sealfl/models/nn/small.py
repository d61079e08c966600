"""A small convolutional network for tiny images (scikit-learn's 8x8 digits) and fast demos.

Two 3x3 convolutions (32 and 64 channels, each followed by batch norm and ReLU), one 2x2 max
pool, a 128-unit hidden layer and the classifier: 151,402 parameters for 1x8x8 digits and 10
classes. On digits it trains centrally to about 98-99% test accuracy in a few seconds on one
CPU core, which makes it the model for demos and tests that must stay quick; the ResNets of
:mod:`sealfl.models.nn.resnet` reach the same accuracy on digits, several times slower.
"""

from __future__ import annotations

import torch
from torch import nn

from sealfl.errors import ConfigError

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """conv-BN-ReLU x 2, max pool, a hidden layer, the classifier.

    Parameters
    ----------
    in_channels
        Channels of the input (1 for grayscale digits).
    num_classes
        Outputs of the classifier.
    image_size
        Height and width of the (square) input; at least 2 and even, since the pool halves it.

    Raises
    ------
    ConfigError
        If a count is not positive or the image size is odd or below 2.
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, image_size: int = 8) -> None:
        super().__init__()
        for what, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("image_size", image_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"SmallCNN: {what} must be a positive integer, got {value!r}")
        if image_size < 2 or image_size % 2:
            raise ConfigError(f"SmallCNN: image_size must be even and >= 2, got {image_size}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 2
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch ``(N, in_channels, image_size, image_size)``."""
        return self.classifier(self.features(x))
