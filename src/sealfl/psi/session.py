"""One ECDH-PSI session between a leader and a follower, over any :class:`Transport`.

The protocol (Meadows/Huberman Diffie-Hellman PSI, as in draft-wang-ppm-ecdh-psi on
curve25519), for a leader with ids ``X`` and a follower with ids ``Y``:

1. **Hello.** Each party sends its role, mode, set size, statistical bound, 32 fresh random
   bytes and the digest of the channel binding it was given. The session id is SHA-256 over
   both Hellos; every later frame carries it, and the hash-to-curve tag contains it, so a frame
   or a point from another session means nothing here and is refused. Modes, bounds and
   channel bindings must agree, and the roles must differ.
2. **Masked.** Each party hashes its ids to curve25519 (RFC 9380, :class:`CurveHasher`, tag
   bound to the session) and masks them with a fresh X25519 key: the leader sends
   ``[a]H(x)``, the follower ``[b]H(y)``, both in a fresh random order, in batches. (``a`` is
   the X25519 scalar over 8: the party masks ``u(Q0 + Q1)``, the hash before its cofactor is
   cleared, and the clamped scalar's factor 8 clears it; see :meth:`CurveHasher.sum_u`.)
3. **Remasked.** Each party masks the peer's points with its own key, giving ``[8ab]H(·)``,
   keeps the first ``compare_bytes`` of each (:func:`compare_bytes`) and, as the mode says
   (:func:`returns_of`), returns them in the order received (the peer maps them to its rows),
   all at once in a fresh random order (the peer can only count), or not at all.
4. **Result.** A party holding its own doubly-masked values and the peer's finds its rows in
   the intersection; both parties sort them by that value, which they share, so the aligned
   order agrees without another round. A Finish frame each way confirms the transcript (and
   the count, where both know it).

Streaming: each party sends its own batches while masking and returning the peer's as they
arrive, so both parties' cores stay busy; memory per party is the compared values (about 13
bytes per id at 10^6 × 10^6) plus a permutation, never the full points.

What each party learns, beyond the set sizes: nothing about the peer's ids outside the
intersection (DDH); the mode decides what it learns about the intersection. Security is for
semi-honest peers (as every anchor's ECDH-PSI); a malicious peer can choose its own set, as in
any PSI, but cannot test ids it does not submit, and cannot reuse frames across sessions.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence

import numpy as np
from google.protobuf.message import DecodeError

from sealfl.errors import ChannelError, ConfigError, ProtocolError
from sealfl.psi.hash_to_curve import SUITE, CurveHasher
from sealfl.psi.masking import POINT_BYTES, MaskingKey, check_points
from sealfl.psi.matching import all_distinct, members
from sealfl.psi.protos import psi_pb2
from sealfl.psi.result import AlignedOrder, PsiResult
from sealfl.psi.settings import (
    MAX_BATCH,
    Mode,
    PsiSettings,
    Returns,
    Role,
    compare_bytes,
    returns_of,
)
from sealfl.psi.transport import Transport

PROTOCOL = "sealfl-psi/2"
"""Protocol name in the Hello; a peer speaking anything else is refused."""
MAX_SET_SIZE = 2**32
"""Largest set a party may declare."""
_MAX_FRAME = MAX_BATCH * POINT_BYTES + 1024
_NONCE_BYTES = 32


def _id_bytes(value: bytes | str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ConfigError(f"ids: expected str or bytes entries, got {type(value).__name__}")


def random_permutation(n: int) -> np.ndarray:
    """Return a uniformly random permutation of ``range(n)`` from the OS's cryptographic generator.

    Not numpy's generators: a peer that learns part of the order (the intersection's positions)
    must not be able to recover a seed and with it the rest.
    """
    keys = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    return np.argsort(keys, kind="stable").astype(np.int64)


def run_psi(
    ids: Sequence[bytes | str],
    *,
    role: Role | str,
    transport: Transport,
    settings: PsiSettings | None = None,
    context: bytes = b"",
) -> PsiResult:
    """Run one PSI session as ``role`` over ``transport`` and return this party's result.

    Parameters
    ----------
    ids
        This party's ids (``str`` is UTF-8 encoded); they must be distinct. Only indices into
        this sequence come back (:class:`AlignedOrder`), never copies of the ids.
    role
        ``leader`` or ``follower``; the peer must run the other.
    transport
        The duplex link to the peer; closed when the session ends.
    settings
        Mode, batch size, statistical bound, deadline (:class:`PsiSettings`); both parties must
        declare the same mode and bound.
    context
        Channel binding that both parties pass identically (the gRPC binding passes both
        certificate fingerprints); a session relayed between two other channels is refused.

    Raises
    ------
    ConfigError
        Repeated or unusable ids, or ``enclave-only`` over an unattested transport.
    ProtocolError
        The peer broke the protocol: another session's frame, another mode or bound, a
        malformed or out-of-order frame, a point of small order, a transcript that differs.
    ChannelError
        The link failed, or the peer sent nothing within ``settings.timeout_s``.
    """
    try:
        return _Session(
            ids,
            role=Role(role),
            transport=transport,
            settings=settings or PsiSettings(),
            context=context,
        ).run()
    finally:
        transport.close()


class _Session:
    def __init__(
        self,
        ids: Sequence[bytes | str],
        *,
        role: Role,
        transport: Transport,
        settings: PsiSettings,
        context: bytes,
    ) -> None:
        self.ids = ids
        self.role = role
        self.peer = role.peer
        self.transport = transport
        self.settings = settings
        self.mode = settings.mode
        self.n = len(ids)
        if self.n > MAX_SET_SIZE:
            raise ConfigError(f"ids: expected at most {MAX_SET_SIZE} ids, got {self.n}")
        if self.mode is Mode.ENCLAVE_ONLY and not transport.attested:
            raise ConfigError(
                "PSI mode enclave-only: needs an attested peer (mutual RA-TLS); this transport "
                "is not attested"
            )
        self.context_digest = hashlib.sha256(PROTOCOL.encode() + b" context\x00" + context).digest()
        self.sent = hashlib.sha256()
        self.received = hashlib.sha256()
        self.bytes_sent = 0
        self.bytes_received = 0
        self._check_distinct()
        self.key = MaskingKey()

    # -- frames ----------------------------------------------------------------------------

    def _send(self, message: psi_pb2.PsiMessage, *, transcript: bool = True) -> None:
        frame = message.SerializeToString()
        self.bytes_sent += len(frame)
        if transcript:
            self.sent.update(len(frame).to_bytes(8, "big") + frame)
        self.transport.send(frame)

    def _receive(self, *, block: bool) -> psi_pb2.PsiMessage | None:
        timeout = self.settings.timeout_s if block else 0.0
        started = time.monotonic()
        frame = self.transport.receive(timeout)
        if frame is None:
            if not block:
                return None
            waited = time.monotonic() - started
            raise ChannelError(
                f"PSI: nothing from the {self.peer.value} for {waited:.0f} s "
                f"(timeout_s {self.settings.timeout_s:g})"
            )
        self.bytes_received += len(frame)
        if len(frame) > _MAX_FRAME:
            raise ProtocolError(
                f"frame from the {self.peer.value}: expected at most {_MAX_FRAME} bytes, "
                f"got {len(frame)}"
            )
        try:
            message = psi_pb2.PsiMessage.FromString(frame)
        except DecodeError:
            raise ProtocolError(
                f"frame from the {self.peer.value}: not a PSI message ({len(frame)} bytes)"
            ) from None
        if message.WhichOneof("body") != "finish":
            self.received.update(len(frame).to_bytes(8, "big") + frame)
        return message

    def _expect(self, message: psi_pb2.PsiMessage, kind: str) -> None:
        got = message.WhichOneof("body")
        if got != kind:
            raise ProtocolError(f"frame from the {self.peer.value}: expected {kind}, got {got}")

    def _check_session(self, session: bytes, what: str) -> None:
        if session != self.session_id:
            raise ProtocolError(
                f"{what}.session: this frame belongs to another session "
                f"(expected {self.session_id.hex()[:16]}…, got {session.hex()[:16] or 'none'}…)"
            )

    # -- hello -----------------------------------------------------------------------------

    def _hello(self) -> None:
        mine = psi_pb2.PsiMessage(
            hello=psi_pb2.Hello(
                protocol=PROTOCOL,
                role=self.role.value,
                mode=self.mode.value,
                set_size=self.n,
                nonce=os.urandom(_NONCE_BYTES),
                context_digest=self.context_digest,
                statistical_bits=self.settings.statistical_bits,
            )
        )
        mine_bytes = mine.SerializeToString()
        self._send(mine)
        message = self._receive(block=True)
        assert message is not None
        self._expect(message, "hello")
        hello = message.hello
        peer = self.peer.value
        if hello.protocol != PROTOCOL:
            raise ProtocolError(f"hello.protocol: expected {PROTOCOL}, got {hello.protocol!r}")
        if hello.role != peer:
            raise ProtocolError(
                f"hello.role: this party is the {self.role.value}, so expected {peer}, "
                f"got {hello.role!r}"
            )
        if hello.mode != self.mode.value:
            raise ProtocolError(
                f"hello.mode: this {self.role.value}'s policy says {self.mode.value}, "
                f"the {peer}'s says {hello.mode!r}"
            )
        if hello.statistical_bits != self.settings.statistical_bits:
            raise ProtocolError(
                f"hello.statistical_bits: expected {self.settings.statistical_bits}, "
                f"got {hello.statistical_bits}"
            )
        if len(hello.nonce) != _NONCE_BYTES:
            raise ProtocolError(
                f"hello.nonce: expected {_NONCE_BYTES} bytes, got {len(hello.nonce)}"
            )
        if hello.context_digest != self.context_digest:
            raise ProtocolError(
                "hello.context_digest: the two parties were given different channel bindings "
                "(a relayed session, or a different channel)"
            )
        if hello.set_size > MAX_SET_SIZE:
            raise ProtocolError(
                f"hello.set_size: expected at most {MAX_SET_SIZE}, got {hello.set_size}"
            )
        self.peer_n = int(hello.set_size)
        theirs = message.SerializeToString()
        leader, follower = (mine_bytes, theirs)
        if self.role is Role.FOLLOWER:
            leader, follower = follower, leader
        self.session_id = hashlib.sha256(
            PROTOCOL.encode()
            + b" session\x00"
            + len(leader).to_bytes(8, "big")
            + leader
            + len(follower).to_bytes(8, "big")
            + follower
        ).digest()
        sizes = (self.n, self.peer_n) if self.role is Role.LEADER else (self.peer_n, self.n)
        self.t = compare_bytes(self.settings.statistical_bits, *sizes)
        dst = f"SEALFL-PSI-V2-{SUITE}".encode() + b"-" + self.session_id.hex().encode()
        self.hasher = CurveHasher(dst)

    # -- the exchange ----------------------------------------------------------------------

    def run(self) -> PsiResult:
        self._hello()
        n, bs = self.n, self.settings.batch_size
        self.dtype = np.dtype(f"S{self.t}")
        self.mine_back = returns_of(self.mode, self.role)  # what this party returns
        self.theirs_back = returns_of(self.mode, self.peer)  # what the peer returns
        self.perm = random_permutation(n)
        # Grown as the peer's points arrive, so a peer that declares a huge set costs only
        # what it actually sends.
        self.peer_chunks: list[np.ndarray] = []
        self.peer_seen = 0
        self.peer_seq = 0
        self.own_double = (
            np.zeros(n, dtype=self.dtype) if self.theirs_back is not Returns.NONE else None
        )
        self.back_seen = 0
        self.back_seq = 0
        self.own_sent = 0
        self.own_seq = 0
        self.shuffled_sent = self.mine_back is not Returns.SHUFFLED
        self.peer_finish: psi_pb2.Finish | None = None
        while not self._finished():
            if self.own_sent < n:
                self._send_own(self.perm[self.own_sent : self.own_sent + bs])
                while (message := self._receive(block=False)) is not None:
                    self._handle(message)
            elif not self.shuffled_sent and self.peer_seen == self.peer_n:
                self._send_shuffled_returns()
            else:
                if self.peer_finish is not None:
                    raise ProtocolError(
                        f"finish: the {self.peer.value} ended the session before sending all "
                        "its frames"
                    )
                message = self._receive(block=True)
                assert message is not None
                self._handle(message)
        return self._result()

    def _check_distinct(self) -> None:
        """Refuse repeated ids before any work, without a second copy of the ids.

        Python's (salted, 64-bit) hashes are sorted and only equal neighbours are compared.
        """
        hashes = np.fromiter((hash(v) for v in self.ids), dtype=np.int64, count=self.n)
        order = np.argsort(hashes, kind="stable")
        for i in np.nonzero(hashes[order[1:]] == hashes[order[:-1]])[0]:
            first, second = sorted((int(order[i]), int(order[i + 1])))
            if _id_bytes(self.ids[first]) == _id_bytes(self.ids[second]):
                raise ConfigError(f"ids: rows {first} and {second} hold the same id")

    def _finished(self) -> bool:
        back_done = self.own_double is None or self.back_seen == self.n
        return (
            self.own_sent == self.n
            and self.peer_seen == self.peer_n
            and self.shuffled_sent
            and back_done
        )

    def _send_own(self, rows: np.ndarray) -> None:
        ids = self.ids
        hashed = self.hasher.sum_u([_id_bytes(ids[r]) for r in rows.tolist()])
        masked = self.key.mask(hashed, field="own hashed ids")
        self._send(
            psi_pb2.PsiMessage(
                masked=psi_pb2.Points(session=self.session_id, seq=self.own_seq, points=masked)
            )
        )
        self.own_seq += 1
        self.own_sent += len(rows)

    def _handle(self, message: psi_pb2.PsiMessage) -> None:
        kind = message.WhichOneof("body")
        if self.peer_finish is not None:
            raise ProtocolError(f"frame from the {self.peer.value}: {kind} after its finish")
        if kind == "finish":  # the peer is done; this party may still be draining
            self.peer_finish = message.finish
        elif kind == "masked":
            self._on_masked(message.masked)
        elif kind == "remasked":
            self._on_remasked(message.remasked)
        else:
            raise ProtocolError(
                f"frame from the {self.peer.value}: expected masked or remasked, got {kind}"
            )

    def _on_masked(self, points: psi_pb2.Points) -> None:
        self._check_session(points.session, "masked")
        if points.seq != self.peer_seq:
            raise ProtocolError(
                f"masked.seq: expected {self.peer_seq}, got {points.seq} (replayed or reordered)"
            )
        count = check_points(points.points, field=f"masked[{points.seq}].points")
        if count == 0 or count > MAX_BATCH or self.peer_seen + count > self.peer_n:
            room = min(MAX_BATCH, self.peer_n - self.peer_seen)
            raise ProtocolError(
                f"masked[{points.seq}].points: expected 1..{room} points (the "
                f"{self.peer.value} declared {self.peer_n}), got {count}"
            )
        double = self.key.mask(points.points, keep=self.t, field=f"masked[{points.seq}].points")
        self.peer_chunks.append(np.frombuffer(double, dtype=self.dtype))
        self.peer_seen += count
        self.peer_seq += 1
        if self.mine_back is Returns.ORDERED:
            self._send(
                psi_pb2.PsiMessage(
                    remasked=psi_pb2.Points(session=self.session_id, seq=points.seq, points=double)
                )
            )

    def _peer_double(self) -> np.ndarray:
        """Return the peer's points masked again by this party, in the order they arrived."""
        if len(self.peer_chunks) != 1:
            self.peer_chunks = [np.concatenate(self.peer_chunks or [np.zeros(0, self.dtype)])]
        return self.peer_chunks[0]

    def _send_shuffled_returns(self) -> None:
        shuffled = self._peer_double()[random_permutation(self.peer_n)]
        bs = self.settings.batch_size
        for seq, start in enumerate(range(0, self.peer_n, bs)):
            values = shuffled[start : start + bs].tobytes()
            self._send(
                psi_pb2.PsiMessage(
                    remasked=psi_pb2.Points(session=self.session_id, seq=seq, points=values)
                )
            )
        self.shuffled_sent = True

    def _on_remasked(self, points: psi_pb2.Points) -> None:
        self._check_session(points.session, "remasked")
        if self.own_double is None:
            raise ProtocolError(
                f"remasked: in mode {self.mode.value} the {self.peer.value} returns no points"
            )
        if points.seq != self.back_seq:
            raise ProtocolError(
                f"remasked.seq: expected {self.back_seq}, got {points.seq} (replayed or reordered)"
            )
        field = f"remasked[{points.seq}].points"
        if len(points.points) % self.t:
            raise ProtocolError(
                f"{field}: expected a multiple of {self.t} bytes, got {len(points.points)}"
            )
        count = len(points.points) // self.t
        values = np.frombuffer(points.points, dtype=self.dtype)
        start = self.back_seen
        if self.theirs_back is Returns.ORDERED:
            bs = self.settings.batch_size
            batch = self.perm[points.seq * bs : points.seq * bs + bs]
            if points.seq >= self.own_seq or count != len(batch):
                raise ProtocolError(
                    f"{field}: expected {len(batch) if points.seq < self.own_seq else 0} values "
                    f"(this party's masked[{points.seq}]), got {count}"
                )
            self.own_double[batch] = values
        else:
            if count == 0 or start + count > self.n:
                raise ProtocolError(f"{field}: expected 1..{self.n - start} values, got {count}")
            self.own_double[start : start + count] = values
        self.back_seen += count
        self.back_seq += 1

    # -- the result ------------------------------------------------------------------------

    def _result(self) -> PsiResult:
        peer_double = self._peer_double()
        if not all_distinct(peer_double):
            raise ProtocolError(
                f"masked: the {self.peer.value}'s points repeat (the same id twice, or a "
                "replayed batch)"
            )
        count: int | None = None
        order: AlignedOrder | None = None
        if self.own_double is not None:
            if not all_distinct(self.own_double):
                raise ProtocolError(
                    f"remasked: the {self.peer.value}'s returned values repeat (this party's "
                    "ids are distinct)"
                )
            member = members(self.own_double, peer_double)
            count = int(member.sum())
            if self.theirs_back is Returns.ORDERED:
                rows = np.nonzero(member)[0]
                order = AlignedOrder(rows[np.argsort(self.own_double[rows], kind="stable")])
        transcript = self._transcript()
        shared = self.mode is not Mode.LEADER_ONLY
        mine = psi_pb2.Finish(session=self.session_id, transcript=transcript)
        if shared and count is not None:
            mine.count = count
        self._send(psi_pb2.PsiMessage(finish=mine), transcript=False)
        theirs = self.peer_finish
        if theirs is None:
            message = self._receive(block=True)
            assert message is not None
            self._expect(message, "finish")
            theirs = message.finish
        self._check_session(theirs.session, "finish")
        if theirs.transcript != transcript:
            raise ProtocolError(
                f"finish.transcript: the {self.peer.value} saw a different session "
                f"(expected {transcript.hex()[:16]}…, got {theirs.transcript.hex()[:16]}…)"
            )
        if shared and theirs.HasField("count") and theirs.count != count:
            raise ProtocolError(
                f"finish.count: this {self.role.value} found {count}, the {self.peer.value} "
                f"{theirs.count}"
            )
        if not shared and theirs.HasField("count"):
            raise ProtocolError(f"finish.count: not shared in mode {self.mode.value}")
        return PsiResult(
            role=self.role,
            mode=self.mode,
            own_size=self.n,
            peer_size=self.peer_n,
            count=count,
            transcript=transcript,
            order=order,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
        )

    def _transcript(self) -> bytes:
        mine, theirs = self.sent.digest(), self.received.digest()
        leader, follower = (mine, theirs) if self.role is Role.LEADER else (theirs, mine)
        return hashlib.sha256(
            PROTOCOL.encode() + b" transcript\x00" + self.session_id + leader + follower
        ).digest()
