"""CIFAR ResNets: He et al.'s option-A networks and the reference system's pre-activation v2.

Two families, one class (:class:`CifarResNet`), both ``6n + 2`` layers deep with three stages of
``n`` basic blocks at 16, 32 and 64 channels, global average pooling and one linear layer:

``variant="a"`` (He et al. 2016, section 4.2, "option A")
    conv-BN-ReLU-conv-BN blocks, post-activation; where a stage halves the resolution and
    doubles the channels the shortcut subsamples by 2 and pads the new channels with zeros, so
    shortcuts add no parameters. Depths 20/32/44/56 have 269,722 / 464,154 / 658,586 / 853,018
    parameters (the paper's 0.27M ... 0.85M). He init (normal, fan-in) for convs and the
    classifier, as the paper's training recipe.

``variant="v2"`` (the reference system's model)
    The pre-activation ResNet v2 of TensorFlow's official ``resnet_model.py`` that Intel's
    Confidential Computing Zoo trains as ``Cifar10Model(resnet_size=56)`` (its README calls it
    "ResNet-50"): BN-ReLU-conv-BN-ReLU-conv blocks; the first block of *every* stage has a 1x1
    projection shortcut applied to the pre-activated input (also 16 -> 16 in stage one); a final
    BN-ReLU before pooling; no conv biases. Depth 56 has 855,834 parameters. TF's batch-norm
    settings (decay 0.997, epsilon 1e-5) and its variance-scaling initialiser (truncated normal,
    fan-in, scale 1) are kept, so its training dynamics are the reference's. It is trained on
    24x24 crops (:mod:`sealfl.data.augment`); pooling makes the network size-agnostic.

The networks take any ``in_channels`` (digits use 1) and any square input of at least 4 pixels
(the two stride-2 stages divide it by 4, rounding up).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812 (torch's convention)
from torch import nn

from sealfl.errors import ConfigError

__all__ = ["STAGE_WIDTHS", "CifarResNet", "Variant"]

Variant = Literal["a", "v2"]

STAGE_WIDTHS = (16, 32, 64)
"""Channels of the three stages (He et al.'s CIFAR networks, and the reference's)."""

# TensorFlow's resnet_model.py: _BATCH_NORM_DECAY = 0.997, _BATCH_NORM_EPSILON = 1e-5.
# torch's momentum is the weight of the new batch, i.e. 1 - decay.
_TF_BN_MOMENTUM = 1.0 - 0.997
_TF_BN_EPS = 1e-5


def _conv3x3(c_in: int, c_out: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class _ShortcutA(nn.Module):
    """Option A: subsample by 2 and append zero channels; no parameters."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.extra = c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra))


class _BlockA(nn.Module):
    """He et al.'s basic block: conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = _conv3x3(c_out, c_out, 1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = (
            _ShortcutA(c_in, c_out) if stride != 1 or c_in != c_out else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _BlockV2(nn.Module):
    """TF's ``building_block_v2``: BN-ReLU-conv-BN-ReLU-conv, plus the (projected) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, project: bool) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in, eps=_TF_BN_EPS, momentum=_TF_BN_MOMENTUM)
        self.conv1 = _conv3x3(c_in, c_out, stride)
        self.bn2 = nn.BatchNorm2d(c_out, eps=_TF_BN_EPS, momentum=_TF_BN_MOMENTUM)
        self.conv2 = _conv3x3(c_out, c_out, 1)
        self.projection = (
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False) if project else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        # TF applies the projection to the pre-activated input, the identity to the raw one.
        shortcut = self.projection(pre) if self.projection is not None else x
        out = self.conv1(pre)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class CifarResNet(nn.Module):
    """A CIFAR-style ResNet of depth ``6n + 2``.

    Parameters
    ----------
    depth
        8, 14, 20, 32, 44, 56, 110, ...: ``(depth - 2)`` must be a positive multiple of 6.
    variant
        ``"a"`` for He et al.'s option-A network, ``"v2"`` for the reference system's
        pre-activation network with projection shortcuts (see the module docstring).
    num_classes
        Outputs of the classifier.
    in_channels
        Channels of the input images (3 for CIFAR, 1 for grayscale digits).

    Raises
    ------
    ConfigError
        If the depth is not ``6n + 2`` or a count is not positive.
    """

    def __init__(
        self,
        depth: int,
        *,
        variant: Variant = "a",
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ConfigError(
                f"CifarResNet: depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, "
                f"...), got {depth!r}"
            )
        if variant not in ("a", "v2"):
            raise ConfigError(f"CifarResNet: variant must be 'a' or 'v2', got {variant!r}")
        for what, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"CifarResNet: {what} must be a positive integer, got {value!r}")
        self.depth = depth
        self.variant: Variant = variant
        self.num_classes = num_classes
        self.in_channels = in_channels
        blocks_per_stage = (depth - 2) // 6

        self.conv1 = _conv3x3(in_channels, STAGE_WIDTHS[0], 1)
        self.bn1: nn.Module = nn.BatchNorm2d(STAGE_WIDTHS[0]) if variant == "a" else nn.Identity()
        stages = []
        c_in = STAGE_WIDTHS[0]
        for i, c_out in enumerate(STAGE_WIDTHS):
            blocks: list[nn.Module] = []
            for b in range(blocks_per_stage):
                stride = 2 if i > 0 and b == 0 else 1
                if variant == "a":
                    blocks.append(_BlockA(c_in, c_out, stride))
                else:
                    blocks.append(_BlockV2(c_in, c_out, stride, project=b == 0))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn_final: nn.Module = (
            nn.BatchNorm2d(c_in, eps=_TF_BN_EPS, momentum=_TF_BN_MOMENTUM)
            if variant == "v2"
            else nn.Identity()
        )
        self.fc = nn.Linear(c_in, num_classes)
        if variant == "a":
            self._init_he()
        else:
            self._init_tf()

    def _init_he(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def _init_tf(self) -> None:
        # tf.compat.v1.variance_scaling_initializer(): scale 1, fan_in, truncated normal whose
        # standard deviation is corrected for the truncation at 2 sigma (0.8796...).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
                nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
        # tf.layers.dense: Glorot uniform kernel, zero bias.
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch ``(N, in_channels, H, W)``."""
        out = self.conv1(x)
        if self.variant == "a":
            out = F.relu(self.bn1(out))
        out = self.layer3(self.layer2(self.layer1(out)))
        if self.variant == "v2":
            out = F.relu(self.bn_final(out))
        out = out.mean(dim=(2, 3))
        return self.fc(out)
