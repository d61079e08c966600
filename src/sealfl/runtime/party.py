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
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealfl.errors import ConfigError
from sealfl.kbs import KbsClient
from sealfl.net import fingerprint_verifier
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
from sealfl.tee.collateral import CollateralSource, collateral_source

DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")
DEFAULT_LIFETIME = timedelta(hours=1)
_DERIVE_INFO = b"sealfl sealing key from a base key v1\x00"


class SealingSource(enum.StrEnum):
    """Where a party's sealing keys come from."""

    TEE = "tee"
    BROKER = "broker"
    FILE = "file"


@dataclass(frozen=True)
class BrokerRef:
    """How to reach the key broker and how to know it is the right one.

    Attributes
    ----------
    address
        The broker's front door, ``host:port``.
    server_verifier
        Checks the broker's certificate (its RA-TLS evidence by policy, or a pinned fingerprint).
    """

    address: str
    server_verifier: Callable[[bytes], Any]


def broker_verifier(
    *,
    policy: Path | None,
    fingerprint: str | None,
    collateral: CollateralSource | None = None,
    names: tuple[str, str] = ("broker.policy", "broker.fingerprint"),
    prefix: str = "",
) -> Callable[[bytes], Any]:
    """Return the check a key broker's certificate must pass: its policy, or a pinned hash.

    A broker in a TEE is judged by its RA-TLS evidence (``policy``); one on the model owner's
    trusted node presents a plain certificate pinned by its SHA-256 (``fingerprint``).
    ``names`` are what the two settings are called where they came from (config keys or
    command-line options), and ``prefix`` starts every message (e.g. the config file).

    Raises
    ------
    ConfigError
        If not exactly one is given, or the fingerprint is not 64 hex digits.
    """
    if (policy is None) == (fingerprint is None):
        raise ConfigError(f"{prefix}give exactly one of {names[0]} and {names[1]}")
    if fingerprint is not None:
        compact = fingerprint.strip().lower().replace(":", "")
        if len(compact) != 64 or any(c not in "0123456789abcdef" for c in compact):
            raise ConfigError(f"{prefix}{names[1]}: expected 64 hex digits, got {fingerprint!r}")
        return fingerprint_verifier([compact])
    assert policy is not None
    verifier = Verifier(load_policy(policy), collateral=collateral)
    return lambda pem: verify_ratls_certificate(pem, verifier)


@dataclass(frozen=True)
class SealingPlan:
    """The source of sealing keys, and what that source needs.

    Attributes
    ----------
    source
        ``tee``, ``broker`` or ``file``.
    key_file
        The development key file (``file``).
    resource
        The broker resource (``repo/type/tag``) holding the 32-byte base key (``broker``).
    """

    source: SealingSource = SealingSource.TEE
    key_file: Path | None = None
    resource: str | None = None

    def __post_init__(self) -> None:
        if self.source is SealingSource.FILE and self.key_file is None:
            raise ConfigError("sealing source 'file' needs key_file")
        if self.source is SealingSource.BROKER and self.resource is None:
            raise ConfigError("sealing source 'broker' needs the broker resource")


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
    collateral
        Where the verifier gets collateral for real quotes (also for a broker this party runs).
    sealing
        Where sealing keys come from.
    broker
        The key broker this party may ask for resources, or ``None``.
    release
        Who may open what this party produces, or ``None``.
    disclose_refusals
        Whether a peer refused at enrolment is told why (the measurements the policy expected,
        say). Convenient in development; role configs turn it off unless they ask for it, since
        the reason goes to callers nobody has authenticated yet.
    """

    kind: TeeKind
    provider: EvidenceProvider
    verifier: Verifier | None = None
    collateral: CollateralSource | None = None
    sealing: SealingPlan = field(default_factory=SealingPlan)
    broker: BrokerRef | None = None
    release: ReleasePolicy | None = None
    disclose_refusals: bool = True
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
        broker: BrokerRef | None = None,
        release: Path | None = None,
        disclose_refusals: bool = True,
    ) -> PartyRuntime:
        """Build the runtime: provider, verifier (policy + collateral), sealing, release list.

        Raises
        ------
        ConfigError
            If the TEE cannot be selected, a policy, collateral or release file is unusable, or
            broker sealing is asked for without a broker.
        """
        sealing = sealing or SealingPlan()
        if sealing.source is SealingSource.BROKER and broker is None:
            raise ConfigError("sealing source 'broker' needs a key broker ([broker] peer)")
        kind, provider = make_provider(choice, simulated_measurement=simulated_measurement)
        source = None
        if collateral is not None:
            source = collateral_source(collateral, cache_dir=collateral_cache)
        return cls(
            kind=kind,
            provider=provider,
            verifier=None if policy is None else Verifier(load_policy(policy), collateral=source),
            collateral=source,
            sealing=sealing,
            broker=broker,
            release=None if release is None else ReleasePolicy.load(release),
            disclose_refusals=disclose_refusals,
        )

    # -- identity -------------------------------------------------------------------------------

    def credentials(
        self,
        *,
        claims: Mapping[str, bytes] | None = None,
        nonce: bytes | None = None,
        hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
        lifetime: timedelta = DEFAULT_LIFETIME,
    ) -> RaTlsCredentials:
        """Make a fresh RA-TLS key and certificate (with the release-list digest, if any)."""
        bound = dict(claims or {})
        if self.release is not None:
            bound[RELEASE_LIST_CLAIM] = self.release.digest()
        return create_ratls_certificate(
            self.provider, claims=bound, nonce=nonce, hostnames=hostnames, lifetime=lifetime
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
                    assert self.sealing.resource is not None
                    self._base_key = SealingKey(self.fetch_from_broker(self.sealing.resource))
            return self._base_key

    def fetch_from_broker(self, resource: str) -> bytes:
        """Ask the key broker for ``resource`` (``repo/type/tag``).

        The broker checks this party's fresh evidence, made for its challenge, against the
        resource's policy, and logs its decision.

        Raises
        ------
        ConfigError
            If this party has no broker.
        AttestationError, ChannelError
            If the broker cannot be trusted or reached, or refuses.
        """
        if self.broker is None:
            raise ConfigError("this party has no key broker: add [broker] to its role config")
        client = KbsClient(
            self.broker.address,
            server_verifier=self.broker.server_verifier,
            provider=self.provider,
            hostnames=DEFAULT_HOSTNAMES,
        )
        return client.fetch(resource)
