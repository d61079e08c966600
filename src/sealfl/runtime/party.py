"""The party runtime: everything a party needs from its TEE, in one object every workload takes.

A workload never builds an evidence provider, a verifier or a sealing key itself; it receives a
:class:`PartyRuntime` and asks it for

- RA-TLS credentials (:meth:`PartyRuntime.credentials`), which carry the party's own claims plus
  the digest of its release list when it has one, so peers see who can open its model;
- a verdict on a peer's certificate (:meth:`PartyRuntime.verify_peer`), by the party's policy
  and collateral source;
- sealing keys (:meth:`PartyRuntime.sealing_key`), from the TEE (Gramine's SGX keys, the
  simulated platform's secret), from a key broker (TDX, or any party that prefers it), or from a
  development key file.

It is made from a role config (:mod:`sealfl.runtime.role_config`) or from the development
subcommands' ``--tee`` options; both go through :func:`sealfl.runtime.tee_select.make_provider`.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfl.errors import ConfigError
from sealfl.kbs import KbsClient
from sealfl.runtime.tee_select import TeeChoice, TeeKind, make_provider
from sealfl.seal import SealingKey
from sealfl.seal.release import RELEASE_LIST_CLAIM, ReleasePolicy
from sealfl.tee import (
    EvidenceProvider,
    RaTlsCredentials,
    VerifiedPeer,
    Verifier,
    create_ratls_certificate,
    load_policy,
    verify_ratls_certificate,
)
from sealfl.tee.collateral import collateral_source

DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")
_DERIVE_INFO = b"sealfl sealing key from a base key v1\x00"


class SealingSource(enum.StrEnum):
    """Where a party's sealing keys come from."""

    TEE = "tee"
    BROKER = "broker"
    FILE = "file"


@dataclass(frozen=True)
class BrokerRef:
    """How to reach the key broker and which resource holds this party's base sealing key.

    Attributes
    ----------
    address
        The broker's front door, ``host:port``.
    resource
        ``repo/type/tag`` of the 32-byte base key, e.g. ``homo-lr/seal-key/model``.
    server_verifier
        Checks the broker's certificate (its RA-TLS evidence by policy, or a pinned fingerprint).
    """

    address: str
    resource: str
    server_verifier: Callable[[bytes], Any]


@dataclass(frozen=True)
class SealingPlan:
    """The source of sealing keys, and what that source needs."""

    source: SealingSource = SealingSource.TEE
    key_file: Path | None = None
    broker: BrokerRef | None = None

    def __post_init__(self) -> None:
        if self.source is SealingSource.FILE and self.key_file is None:
            raise ConfigError("sealing source 'file' needs key_file")
        if self.source is SealingSource.BROKER and self.broker is None:
            raise ConfigError("sealing source 'broker' needs the broker's address and resource")


@dataclass
class PartyRuntime:
    """One party's TEE, peer verification and key sources (see the module docstring).

    Attributes
    ----------
    kind
        The TEE the party runs in, resolved (never ``auto``).
    provider
        Its evidence provider.
    verifier
        Applies the party's policy to peers' evidence; ``None`` for a party that verifies nobody
        (an inference server that serves anyone).
    sealing
        Where sealing keys come from.
    release
        Who may open what this party produces, or ``None``.
    """

    kind: TeeKind
    provider: EvidenceProvider
    verifier: Verifier | None = None
    sealing: SealingPlan = field(default_factory=SealingPlan)
    release: ReleasePolicy | None = None
    _base_key: SealingKey | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def create(
        cls,
        choice: TeeChoice,
        *,
        simulated_measurement: Callable[[], bytes],
        policy: Path | None = None,
        collateral: str | None = None,
        collateral_cache: Path | None = None,
        sealing: SealingPlan | None = None,
        release: Path | None = None,
    ) -> PartyRuntime:
        """Build the runtime: provider, verifier (policy + collateral), sealing, release list.

        Raises
        ------
        ConfigError
            If the TEE cannot be selected, or a policy, collateral or release file is unusable.
        """
        kind, provider = make_provider(choice, simulated_measurement=simulated_measurement)
        verifier = None
        if policy is not None:
            source = None
            if collateral is not None:
                source = collateral_source(collateral, cache_dir=collateral_cache)
            verifier = Verifier(load_policy(policy), collateral=source)
        return cls(
            kind=kind,
            provider=provider,
            verifier=verifier,
            sealing=sealing or SealingPlan(),
            release=None if release is None else ReleasePolicy.load(release),
        )

    # -- identity -------------------------------------------------------------------------------

    def credentials(
        self,
        *,
        claims: Mapping[str, bytes] | None = None,
        nonce: bytes | None = None,
        hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
    ) -> RaTlsCredentials:
        """Make a fresh RA-TLS key and certificate (with the release-list digest, if any)."""
        bound = dict(claims or {})
        if self.release is not None:
            bound[RELEASE_LIST_CLAIM] = self.release.digest()
        return create_ratls_certificate(
            self.provider, claims=bound, nonce=nonce, hostnames=hostnames
        )

    def verify_peer(self, cert_pem: bytes) -> VerifiedPeer:
        """Verify a peer's RA-TLS certificate by this party's policy (raises if refused).

        Raises
        ------
        ConfigError
            If this party was given no policy.
        AttestationError
            If the peer's evidence is refused.
        """
        if self.verifier is None:
            raise ConfigError(
                "this party has no policy to verify its peers: give it one (--policy)"
            )
        return verify_ratls_certificate(cert_pem, self.verifier)

    # -- keys -----------------------------------------------------------------------------------

    def sealing_key(self, label: str) -> SealingKey:
        """Return the key that seals this party's files under ``label``.

        The same party (same TEE identity, same broker resource or key file) gets the same key
        for the same label in every run, so it can open what an earlier run sealed.

        Raises
        ------
        AttestationError
            If the TEE has no sealing key (TDX: use a broker) or the broker refuses.
        ConfigError
            If the key file is unusable.
        ChannelError
            If the broker cannot be reached.
        """
        if self.sealing.source is SealingSource.TEE:
            return SealingKey.from_tee(self.provider, label=label.encode())
        base = self._fetch_base_key()
        return SealingKey(
            HKDF(
                algorithm=hashes.SHA256(),
                length=SealingKey.KEY_LEN,
                salt=None,
                info=_DERIVE_INFO + label.encode(),
            ).derive(base.secret_bytes)
        )

    def _fetch_base_key(self) -> SealingKey:
        with self._lock:
            if self._base_key is None:
                if self.sealing.source is SealingSource.FILE:
                    assert self.sealing.key_file is not None
                    self._base_key = SealingKey.load(self.sealing.key_file)
                else:
                    assert self.sealing.broker is not None
                    self._base_key = SealingKey(self.fetch_from_broker(self.sealing.broker))
            return self._base_key

    def fetch_from_broker(self, broker: BrokerRef, resource: str | None = None) -> bytes:
        """Ask the key broker for ``resource`` (default: the broker's sealing resource).

        The broker checks this party's fresh evidence, made for its challenge, against the
        resource's policy.
        """
        client = KbsClient(
            broker.address, server_verifier=broker.server_verifier, provider=self.provider
        )
        return client.fetch(resource or broker.resource)
