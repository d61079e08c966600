"""Secure aggregation (SecAgg+-style masking) for summing vectors the aggregator must not see.

.. danger::
   Hazardous-materials layer, like :mod:`sealfl.he` and :mod:`sealfl.psi`: a building block.
   Workloads (hfl's ``--secure-aggregation``, :mod:`sealfl.fl.hfl.secure`) run it over mutual
   RA-TLS and keep the state sealed; used alone it authenticates nobody.

The aggregator learns only the sum of the surviving workers' quantised inputs, even if the
enclave it runs in is broken: each worker adds pairwise masks (X25519 per neighbour pair, HKDF,
AES-256-CTR expansion from 256-bit seeds) and a self-mask, and Shamir-shares its self-mask seed
and mask key so that up to ``n - threshold`` dropouts can be recovered from. Four stages per
round::

    advert = worker.advertise(tag)                  ->  agg.receive_advert(advert)
    bundle = worker.share_keys(tag, agg.roster())   ->  agg.receive_shares(bundle)
    agg.close_sharing()
    masked = worker.masked_input(tag, agg.delivery(worker_id), values)
                                                    ->  agg.receive_masked(masked)
    request = agg.unmask_request()
    tags = worker.confirm(request)                  # with consistency=True: relayed to peers
    worker.check_confirmations(request, theirs)     # threshold - 1 neighbours saw this list
    answer = worker.unmask(request)                 ->  agg.receive_unmask(answer)
    total = agg.finish()                            # float64 sum of the survivors' values

Inputs are quantised into Z_2^32 (:class:`Quantizer`): the masked upload is exactly 4 bytes a
value, the fp32 size. ``docs/secure-aggregation.md`` gives the threat model, the restart rule
(resume the attempt from :meth:`SecAggAggregator.state_bytes`; a new attempt only with fresh
keys, and never after any worker answered the unmask stage of the round), the formats, and the
measured costs.
"""

from __future__ import annotations

from sealfl.secagg.aggregator import DropoutError as DropoutError
from sealfl.secagg.aggregator import SecAggAggregator as SecAggAggregator
from sealfl.secagg.aggregator import Stage as Stage
from sealfl.secagg.messages import KeyAdvert as KeyAdvert
from sealfl.secagg.messages import MaskedInput as MaskedInput
from sealfl.secagg.messages import Params as Params
from sealfl.secagg.messages import RoundTag as RoundTag
from sealfl.secagg.messages import ShareBundle as ShareBundle
from sealfl.secagg.messages import UnmaskRequest as UnmaskRequest
from sealfl.secagg.messages import UnmaskResponse as UnmaskResponse
from sealfl.secagg.messages import neighbours as neighbours
from sealfl.secagg.quantize import Quantizer as Quantizer
from sealfl.secagg.worker import SecAggWorker as SecAggWorker

__all__ = [
    "DropoutError",
    "KeyAdvert",
    "MaskedInput",
    "Params",
    "Quantizer",
    "RoundTag",
    "SecAggAggregator",
    "SecAggWorker",
    "ShareBundle",
    "Stage",
    "UnmaskRequest",
    "UnmaskResponse",
    "neighbours",
]
