"""Torch networks and their flat-buffer form: the deep-learning half of :mod:`sealfl.models`.

Importing this package imports torch (the ``sealfl[hfl]`` extra); :mod:`sealfl.models` itself
does not, so workloads without deep learning never pay for it. import-linter enforces that torch
is imported only here, in the data modules that need it and in ``sealfl.fl.hfl``.

Usage::

    from sealfl.models.nn import build_model, flatten, load_flat

    model = build_model("resnet20")                    # He et al.'s ResNet-20: 269,722 params
    values, manifest = flatten(model)                  # float32 vector + (name, shape, dtype)
    load_flat(other, values.tobytes(), manifest)       # refuses any mismatch, NaN or Inf
"""

try:
    import torch as _torch  # noqa: F401 (checked here so the error names the extra)
except ModuleNotFoundError as _exc:  # pragma: no cover - the test environment installs torch
    raise ModuleNotFoundError(
        "sealfl.models.nn needs torch, from the 'hfl' extra: pip install 'sealfl[hfl]'"
    ) from _exc

from sealfl.models.nn.flat import flatten as flatten
from sealfl.models.nn.flat import load_flat as load_flat
from sealfl.models.nn.flat import manifest_of as manifest_of
from sealfl.models.nn.registry import MODEL_NAMES as MODEL_NAMES
from sealfl.models.nn.registry import build_model as build_model
from sealfl.models.nn.registry import count_parameters as count_parameters
from sealfl.models.nn.resnet import CifarResNet as CifarResNet
from sealfl.models.nn.small import SmallCNN as SmallCNN

__all__ = [
    "MODEL_NAMES",
    "CifarResNet",
    "SmallCNN",
    "build_model",
    "count_parameters",
    "flatten",
    "load_flat",
    "manifest_of",
]
