"""vfl: vertical split learning between a leader (labels) and a follower (more features).

The no-network core lives here; the protocol over mutual RA-TLS builds on it.

torch-free (importing :mod:`sealfl.fl.vfl` loads no torch; the names below are re-exported):

- :mod:`.settings`: :class:`VflSettings` (model, optimiser, defence, seed) and the presets;
- :mod:`.schedule`: :class:`BatchPlan`, the rows of every step, computed by each party alone;
- :mod:`.cut`: the cut-layer tensors' wire form and its checks;
- :mod:`.defence`: max-norm and Gaussian noise on the returned gradient;
- :mod:`.leak`: the norm and cosine label-leak AUCs every run reports.

torch (import explicitly):

- :mod:`.model`: the reference's wide-and-deep halves and dense (FATE) halves;
- :mod:`.halves`: :class:`~.halves.FollowerHalf` and :class:`~.halves.LeaderHalf`, the split step;
- :mod:`.central`: the same model trained in one process, which split training equals exactly;
- :mod:`.split`: whole in-process runs (split and central) and joint evaluation.

The two parties over mutual RA-TLS (docs/vfl.md): :mod:`.stream` (one gRPC stream as queues
with deadlines), :mod:`.leader` and :mod:`.follower` (the step protocol: refusals, resync,
two-phase checkpoints, independent of gRPC), :mod:`.checkpoint`, :mod:`.export` (sealed halves,
joint manifest), :mod:`.service` (gRPC glue), :mod:`.launch` (whole processes: PSI, claims,
training, export; torch), :mod:`.predict` (joint inference; torch), :mod:`.roles` and
:mod:`.demo`.

Usage::

    from sealfl.data.vertical import breast_hetero
    from sealfl.fl.vfl import preset
    from sealfl.fl.vfl.split import evaluate, train_split

    run = train_split(preset("breast"), breast_hetero("train"))
    evaluate(run.leader, run.follower, breast_hetero("test")).auc     # 0.98x
    run.leak.cosine_auc                                                # ~1.0 without a defence
"""

from sealfl.fl.vfl.cut import decode_cut as decode_cut
from sealfl.fl.vfl.cut import encode_cut as encode_cut
from sealfl.fl.vfl.defence import defend as defend
from sealfl.fl.vfl.leak import LeakMeter as LeakMeter
from sealfl.fl.vfl.leak import LeakReport as LeakReport
from sealfl.fl.vfl.leak import binary_auc as binary_auc
from sealfl.fl.vfl.schedule import BatchPlan as BatchPlan
from sealfl.fl.vfl.settings import PRESETS as PRESETS
from sealfl.fl.vfl.settings import DefenceSpec as DefenceSpec
from sealfl.fl.vfl.settings import ModelSpec as ModelSpec
from sealfl.fl.vfl.settings import TrainSpec as TrainSpec
from sealfl.fl.vfl.settings import VflSettings as VflSettings
from sealfl.fl.vfl.settings import preset as preset

__all__ = [
    "PRESETS",
    "BatchPlan",
    "DefenceSpec",
    "LeakMeter",
    "LeakReport",
    "ModelSpec",
    "TrainSpec",
    "VflSettings",
    "binary_auc",
    "decode_cut",
    "defend",
    "encode_cut",
    "preset",
]
