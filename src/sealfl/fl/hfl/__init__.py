"""hfl: horizontal federated deep learning, a parameter server and workers each in a TEE.

Synchronous FedAvg weighted by examples (server momentum and the reference system's scheme as
options) over mutual RA-TLS; models and updates cross as flat float32 buffers with a manifest,
streamed in chunks; the PS evaluates every round, seals a checkpoint after every round
(``--resume`` continues a killed PS to the same final model) and releases the trained model to
the recipients of its release list. Importing this package imports torch (the ``sealfl[hfl]``
extra).

Layers, from pure to wired:

- :mod:`.settings`: the federation's settings and presets; :mod:`.aggregation`: screening,
  FedAvg, FedAvgM and the reference optimiser on flat numpy buffers;
- :mod:`.training`: the torch side (model, a worker's local round, evaluation);
- :mod:`.server`: the PS's rounds, seats, deadlines and refusals, independent of gRPC;
- :mod:`.secure`: secure aggregation (``--secure-aggregation``, :mod:`sealfl.secagg` over
  the same channel): the PS's round state, the worker's ledger of unmasked updates;
- :mod:`.service`, :mod:`.checkpoint`, :mod:`.launch`, :mod:`.roles`, :mod:`.demo`,
  :mod:`.report`: gRPC glue, sealed checkpoints, whole processes, role configs, the demo and
  the plots.
"""

from sealfl.fl.hfl.launch import PsOptions as PsOptions
from sealfl.fl.hfl.launch import WorkerOptions as WorkerOptions
from sealfl.fl.hfl.launch import role_measurement as role_measurement
from sealfl.fl.hfl.launch import run_ps as run_ps
from sealfl.fl.hfl.launch import run_worker as run_worker
from sealfl.fl.hfl.settings import PRESETS as PRESETS
from sealfl.fl.hfl.settings import Aggregation as Aggregation
from sealfl.fl.hfl.settings import Pipeline as Pipeline
from sealfl.fl.hfl.settings import Settings as Settings

__all__ = [
    "PRESETS",
    "Aggregation",
    "Pipeline",
    "PsOptions",
    "Settings",
    "WorkerOptions",
    "role_measurement",
    "run_ps",
    "run_worker",
]
