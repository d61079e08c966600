"""The key broker: named resources released only to attested requesters, every decision audited.

A broker (``sealfl kbs serve``) holds small secrets (sealing keys above all: a TDX trust domain
has no sealing key of its own) under names ``repo/type/tag`` such as
``hfl/seal-key/checkpoints``. It runs in a TEE, or on the model owner's trusted node, and
releases a resource only over mutual RA-TLS to a requester whose *fresh* evidence passes that
resource's policy.

Protocol (one fetch; :class:`KbsClient` does all of it)::

    requester                                   broker
    1. fetch the broker certificate, verify it (RA-TLS policy, or a pinned fingerprint)
    2. Challenge  ------- front door, TLS ------>  nonce N (32 random bytes, single use, TTL)
    3. make a new key and RA-TLS certificate in the TEE; claims: nonce = N,
       kbs-resource = name; its evidence covers SHA-256(claims)
    4. Enrol      ------- front door, TLS ------>  certificate + signature over a second
                                                   nonce (proof of the key); the broker's
                                                   verifier: a listed admin fingerprint, else
                                                   evidence that passes the policy of the
                                                   resource named (or of any, if none)
    5. GetResource(name) --- mutual TLS -------->  re-verify the certificate against THAT
                                                   resource's policy; N issued here, unused,
                                                   younger than nonce_ttl_s (used up now,
                                                   whatever the outcome); resource served,
                                                   the one the certificate names, not revoked
                     <------------------------  value, generation

Step 2 runs before step 3 because the nonce must be inside the evidence, so ``Challenge`` is
served on the front door (TLS without a client certificate), where it grants nothing by itself.
Every other method there is refused, with an audit line: a caller that never enrolled is
refused where it can be heard. (A never-enrolled certificate that goes straight to the
mutual-TLS listener fails the TLS handshake before any handler runs; gRPC Python cannot see
that refusal, so it leaves no audit line, and no byte of a resource.)

Admins hold plain certificates whose SHA-256 fingerprints the config lists (``sealfl kbs
admin-keygen``); they enrol the same way and may ``Put`` (store a new generation, reinstating a
revoked resource) and ``Revoke`` (drop the value; a revoked resource is not generated again).
Admins cannot fetch, and requesters cannot put or revoke.

At rest: every value and the index of revocations are sealed with the broker's sealing key
(:mod:`sealfl.kbs.store`); a tampered store stops the broker at start. Every decision (enrol,
get, put, revoke, generate; allow or deny, with the reason, the caller's measurements and
certificate fingerprint, never a value) is one fsynced JSON line of the audit log
(:mod:`sealfl.kbs.audit`); a decision that cannot be recorded is not carried out.

Example::

    settings = load_kbs_settings(Path("kbs.toml"))
    running = start_kbs(settings, credentials=broker_ratls, sealing_key=key)

    client = KbsClient(running.address, server_verifier=verify_broker, provider=tee)
    key = client.fetch_sealing_key("hfl/seal-key/checkpoints")
"""

from sealfl.kbs.audit import AuditLog, AuditRecord, read_audit_log
from sealfl.kbs.broker import RESOURCE_CLAIM, Broker, KbsPeer, RequestDeniedError
from sealfl.kbs.client import KbsAdmin, KbsClient, KbsRefusedError, get_resource
from sealfl.kbs.config import (
    KbsSettings,
    ResourceSettings,
    check_resource_name,
    load_kbs_settings,
)
from sealfl.kbs.nonces import NonceBook
from sealfl.kbs.server import RunningKbs, serve_kbs, start_kbs
from sealfl.kbs.store import ResourceState, ResourceStore

__all__ = [
    "RESOURCE_CLAIM",
    "AuditLog",
    "AuditRecord",
    "Broker",
    "KbsAdmin",
    "KbsClient",
    "KbsPeer",
    "KbsRefusedError",
    "KbsSettings",
    "NonceBook",
    "RequestDeniedError",
    "ResourceSettings",
    "ResourceState",
    "ResourceStore",
    "RunningKbs",
    "check_resource_name",
    "get_resource",
    "load_kbs_settings",
    "read_audit_log",
    "serve_kbs",
    "start_kbs",
]
