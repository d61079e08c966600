"""homo-lr: horizontal logistic regression on a Paillier-encrypted model with an attested PS.

Layers, from pure to wired:

- :mod:`.algorithm`, :mod:`.evaluation`, :mod:`.plaintext`: the reference update rule, the
  metrics and a plaintext federation (NumPy only);
- :mod:`.encrypted`, :mod:`.packed_decryption`: the worker's encrypted step and the PS's
  check and refresh over :mod:`sealfl.he`;
- :mod:`.rounds`, :mod:`.seats`, :mod:`.admission`, :mod:`.screening`, :mod:`.checkpoint`,
  :mod:`.server`, :mod:`.worker`: the protocol (seats and who may take them, rounds with
  deadlines, the PS's check of each decrypted update, sealed checkpoints, refusals),
  independent of gRPC;
- :mod:`.datacheck`, :mod:`.reach`: what a party checks before it starts (its data, its
  addresses);
- :mod:`.service`, :mod:`.launch`, :mod:`.roles`, :mod:`.demo`: gRPC glue, whole processes
  (TEE, RA-TLS, sealing, signals), role configs, and the demo that starts them;
- :mod:`.timing`, :mod:`.breakdown`: where a round's time goes, from the parties' metrics.

Running a federation from Python::

    from sealfl.fl.homo_lr import REFERENCE, PsOptions, role_measurement, run_parameter_server
    from sealfl.runtime import PartyRuntime, TeeChoice, TeeKind
    tee = PartyRuntime.create(
        TeeChoice(TeeKind.SIMULATED, simulated_platform=...),
        simulated_measurement=lambda: role_measurement("ps"),
        policy=...,
    )
    result = run_parameter_server(PsOptions(worker_num=2, validate_set=..., hp=REFERENCE), tee)
"""

from sealfl.fl.homo_lr.algorithm import ACCURATE as ACCURATE
from sealfl.fl.homo_lr.algorithm import PRESETS as PRESETS
from sealfl.fl.homo_lr.algorithm import REFERENCE as REFERENCE
from sealfl.fl.homo_lr.algorithm import Hyperparameters as Hyperparameters
from sealfl.fl.homo_lr.algorithm import Schedule as Schedule
from sealfl.fl.homo_lr.evaluation import Evaluation as Evaluation
from sealfl.fl.homo_lr.evaluation import evaluate as evaluate
from sealfl.fl.homo_lr.evaluation import format_iteration as format_iteration
from sealfl.fl.homo_lr.launch import PsOptions as PsOptions
from sealfl.fl.homo_lr.launch import WorkerOptions as WorkerOptions
from sealfl.fl.homo_lr.launch import role_measurement as role_measurement
from sealfl.fl.homo_lr.launch import run_parameter_server as run_parameter_server
from sealfl.fl.homo_lr.launch import run_worker as run_worker
from sealfl.fl.homo_lr.plaintext import train_plaintext as train_plaintext

__all__ = [
    "ACCURATE",
    "PRESETS",
    "REFERENCE",
    "Evaluation",
    "Hyperparameters",
    "PsOptions",
    "Schedule",
    "WorkerOptions",
    "evaluate",
    "format_iteration",
    "role_measurement",
    "run_parameter_server",
    "run_worker",
    "train_plaintext",
]
