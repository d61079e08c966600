"""Many-client simulation: the workloads' own code on thousands of clients on one machine.

A researcher tries a federated algorithm with hundreds or thousands of clients before it is
deployed across organisations. A real sealfl party is a process behind mutual RA-TLS, which is
right for a deployment and wrong for 1,000 clients on one machine. Here every client is a call
into the workload's own code (hfl's :class:`~sealfl.fl.hfl.training.LocalTrainer`, homo-lr's
encrypted local step) and the server side is the workload's own screening and aggregation, with
an in-memory link between them instead of gRPC. Per round K of the N clients are sampled, and
sampled clients drop out at a given rate (:mod:`.plan`), from one seed.

**Nothing is protected in a simulation**: no TEE, no attestation, no RA-TLS, nothing sealed.
Every run says so in its first line and in its first metrics record.

The clients run on a backend (:mod:`.backends`): ``local``, sealfl's own process pool (the
default; no dependency beyond sealfl's), or ``ray`` (:mod:`.ray_backend`, the ``sealfl[ray]``
extra), actors on a local Ray instance or a cluster. Either way a worker process builds what is
expensive once (:mod:`.cache`) and serves any client with it.

Modules: :mod:`.plan` (sampling, dropouts), :mod:`.backends`, :mod:`.ray_backend`,
:mod:`.cache`, :mod:`.report` (result, peak memory), :mod:`.hfl` and :mod:`.homo_lr` (the two
workloads; importing :mod:`.hfl` imports torch).
"""

from sealfl.sim.backends import BACKENDS as BACKENDS
from sealfl.sim.backends import Backend as Backend
from sealfl.sim.backends import LocalBackend as LocalBackend
from sealfl.sim.backends import make_backend as make_backend
from sealfl.sim.plan import RoundPlan as RoundPlan
from sealfl.sim.plan import plan_round as plan_round
from sealfl.sim.report import NOT_PROTECTED as NOT_PROTECTED
from sealfl.sim.report import SimResult as SimResult

__all__ = [
    "BACKENDS",
    "NOT_PROTECTED",
    "Backend",
    "LocalBackend",
    "RoundPlan",
    "SimResult",
    "make_backend",
    "plan_round",
]
