"""Models: numpy logistic regression, torch networks, and the flat form models travel in.

Independent of any transport. This package does not import torch: the networks live in
:mod:`sealfl.models.nn` (the ``sealfl[hfl]`` extra), imported explicitly by the workloads that
train them, so homo-lr and infer start without loading torch. The flat-buffer manifest
(:class:`FlatManifest`) is numpy-only and exported here.
"""

from sealfl.models.logreg import LogisticRegression as LogisticRegression
from sealfl.models.logreg import TrainConfig as TrainConfig
from sealfl.models.logreg import sigmoid as sigmoid
from sealfl.models.manifest import FlatManifest as FlatManifest
from sealfl.models.manifest import TensorSpec as TensorSpec

__all__ = ["FlatManifest", "LogisticRegression", "TensorSpec", "TrainConfig", "sigmoid"]
