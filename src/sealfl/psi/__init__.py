"""Private set intersection: ECDH on X25519 with RFC 9380 hashing to curve25519.

.. danger::
   Hazardous-materials layer, like :mod:`sealfl.he`: a building block for workloads
   (:mod:`sealfl.fl.vfl`), which decide the mode by policy and run it over mutual RA-TLS.

Two parties, a *leader* and a *follower*, learn which ids they share and nothing about the
others' ids (DDH on curve25519). Each hashes its ids to the curve (RFC 9380
``curve25519_XMD:SHA-512_ELL2_RO_``, checked against the RFC's vectors), masks them with a fresh
X25519 key (``cryptography``), and masks the peer's points again; equal ids meet as equal
doubly-masked values. No short blinding factors and no ``H(x)·G`` shortcut: testing a guessed id
against the peer's masked set needs the peer's key. Fresh keys and a session id bound into
every frame and into the hash's domain tag; outputs shuffled; a transcript hash both parties
agree on. The mode (:class:`Mode`) decides what each party learns: ``both``, ``leader-only``,
``cardinality`` or ``enclave-only``. Both parties derive the same aligned row order (the
intersection sorted by its doubly-masked values) without another round.

Example, in one process (two threads; over gRPC see :mod:`sealfl.psi.service`)::

    leader_end, follower_end = transport_pair()
    # thread 1:
    result = run_psi(leader_ids, role="leader", transport=leader_end)
    # thread 2:
    result = run_psi(follower_ids, role="follower", transport=follower_end)
    rows = result.order.rows()   # this party's rows, aligned with the peer's

Cost per party and id: one hash to the curve (about 29 µs, 22 of them its two square roots)
and two X25519 operations (about 24 µs each); on the wire about 90 bytes per id at 10^6 × 10^6
in mode ``both``. ``docs/psi.md`` says why that is within 1.2× of the floor of these building
blocks and what that floor allows against openmined-psi.
"""

from __future__ import annotations

from sealfl.psi.hash_to_curve import SUITE as SUITE
from sealfl.psi.hash_to_curve import CurveHasher as CurveHasher
from sealfl.psi.hash_to_curve import expand_message_xmd as expand_message_xmd
from sealfl.psi.hash_to_curve import hash_to_curve as hash_to_curve
from sealfl.psi.hash_to_curve import hash_to_field as hash_to_field
from sealfl.psi.result import AlignedOrder as AlignedOrder
from sealfl.psi.result import PsiResult as PsiResult
from sealfl.psi.service import PsiServicer as PsiServicer
from sealfl.psi.service import add_psi_servicer as add_psi_servicer
from sealfl.psi.service import channel_binding as channel_binding
from sealfl.psi.service import run_psi_on_channel as run_psi_on_channel
from sealfl.psi.session import PROTOCOL as PROTOCOL
from sealfl.psi.session import run_psi as run_psi
from sealfl.psi.settings import Mode as Mode
from sealfl.psi.settings import PsiSettings as PsiSettings
from sealfl.psi.settings import Role as Role
from sealfl.psi.settings import compare_bytes as compare_bytes
from sealfl.psi.transport import QueueTransport as QueueTransport
from sealfl.psi.transport import Transport as Transport
from sealfl.psi.transport import transport_pair as transport_pair

__all__ = [
    "PROTOCOL",
    "SUITE",
    "AlignedOrder",
    "CurveHasher",
    "Mode",
    "PsiResult",
    "PsiServicer",
    "PsiSettings",
    "QueueTransport",
    "Role",
    "Transport",
    "add_psi_servicer",
    "channel_binding",
    "compare_bytes",
    "expand_message_xmd",
    "hash_to_curve",
    "hash_to_field",
    "run_psi",
    "run_psi_on_channel",
    "transport_pair",
]
