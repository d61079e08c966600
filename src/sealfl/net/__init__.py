"""Transport: mutual RA-TLS gRPC servers and channels, enrolment, and streaming of tensors.

Hazmat layer. These tools move bytes between parties that have proved who they are; they do
not decide whom to trust. That decision is a *peer verifier* passed in by the caller: an
RA-TLS verifier from :mod:`sealfl.tee` (evidence and measurement policy), or
:func:`fingerprint_verifier` for plain TLS with pinned self-signed certificates.

The scheme (DESIGN.md, "Attestation and RA-TLS"):

1. :func:`open_secure_channel` fetches the server certificate (:func:`fetch_server_certificate`,
   unverified), verifies it, and pins exactly it: the channel's only root is that certificate, so
   a server whose key is swapped later fails the handshake (:class:`CertificatePinError`).
2. It enrols the client certificate at the server's front door, signing a fresh server nonce to
   prove it holds the key; the server verifies certificate and proof and adds it to the
   allow-list that is the trust store of its mutual-TLS listener (:class:`SecureServer`).
3. Every RPC re-checks the peer certificate against the allow-list (revocation, lapsed
   enrolments, resumed sessions).
4. Freshness: the nonce, enrolment lifetimes, an optional maximum certificate age, and a
   maximum connection age after which clients reconnect and handshake again.
5. Long runs: both sides renew their short-lived certificates before notAfter (``renew=``); a
   client carries its lineage over with a proof by its old key (:func:`caller_lineage`), a
   server hands over to its new certificate with a signature by its old key, and the client
   verifies the new one with the same verifier before it re-pins.

Availability: the front door, and the service listener of a server that admits anyone, run on
asyncio with read deadlines and per-address limits, so peers that open calls and never send
them pin no thread; refusals for load are marked busy and clients repeat them with jittered
backoff; an open server's allow-list evicts its least recently used client rather than fill
up (:class:`WhenFull`), and a closing client leaves.

Large tensors are streamed in chunks with bounded memory (:class:`TensorChunker`,
:func:`receive_tensor`); every call has a deadline, idempotent calls may retry with backoff
(:class:`RetryPolicy`), and ``grpc.RpcError`` becomes :class:`~sealfl.errors.ChannelError`.

Example (``verify`` is e.g. ``lambda pem: verify_ratls_certificate(pem, verifier)``)::

    server = SecureServer(credentials=ps_ratls, peer_verifier=verify_workers)
    server.add_servicer(add_MyServicer_to_server, servicer)   # every handler is guarded
    address = server.start()                                  # hand this to the clients

    channel = open_secure_channel(address, credentials=worker_ratls, server_verifier=verify_ps)
    channel.server_identity.require_claim("paillier-pk-hash", digest)  # workload claims
    stub = channel.stub(MyStub)
    reply = channel.call(stub.Method, request, timeout_s=10, retry=RetryPolicy())  # idempotent
"""

from sealfl.net.addresses import DEFAULT_MAX_MESSAGE_BYTES as DEFAULT_MAX_MESSAGE_BYTES
from sealfl.net.allowlist import ENROLMENT_STATE_KEY as ENROLMENT_STATE_KEY
from sealfl.net.allowlist import Enrolment as Enrolment
from sealfl.net.allowlist import Refusal as Refusal
from sealfl.net.allowlist import WhenFull as WhenFull
from sealfl.net.callers import caller_certificate as caller_certificate
from sealfl.net.callers import caller_lineage as caller_lineage
from sealfl.net.calls import CertificatePinError as CertificatePinError
from sealfl.net.calls import RetryPolicy as RetryPolicy
from sealfl.net.calls import describe_rpc_error as describe_rpc_error
from sealfl.net.certificates import Credentials as Credentials
from sealfl.net.certificates import TlsCredentials as TlsCredentials
from sealfl.net.certificates import certificate_fingerprint as certificate_fingerprint
from sealfl.net.certificates import fetch_server_certificate as fetch_server_certificate
from sealfl.net.certificates import make_self_signed_credentials as make_self_signed_credentials
from sealfl.net.channel import ChannelState as ChannelState
from sealfl.net.channel import EnrolmentReceipt as EnrolmentReceipt
from sealfl.net.channel import SecureChannel as SecureChannel
from sealfl.net.channel import connect_pinned as connect_pinned
from sealfl.net.channel import open_secure_channel as open_secure_channel
from sealfl.net.memory import freeze_startup_objects as freeze_startup_objects
from sealfl.net.memory import keep_freed_memory as keep_freed_memory
from sealfl.net.refusal_log import RateLimitedLog as RateLimitedLog
from sealfl.net.refusal_log import refusal_reporter as refusal_reporter
from sealfl.net.server import SecureServer as SecureServer
from sealfl.net.server import ServerState as ServerState
from sealfl.net.tensors import DEFAULT_CHUNK_BYTES as DEFAULT_CHUNK_BYTES
from sealfl.net.tensors import ReceivedTensor as ReceivedTensor
from sealfl.net.tensors import TensorAssembler as TensorAssembler
from sealfl.net.tensors import TensorChunker as TensorChunker
from sealfl.net.tensors import TensorTooLargeError as TensorTooLargeError
from sealfl.net.tensors import receive_tensor as receive_tensor
from sealfl.net.transfer import TensorStore as TensorStore
from sealfl.net.transfer import TransferServicer as TransferServicer
from sealfl.net.transfer import get_tensor as get_tensor
from sealfl.net.transfer import ping as ping
from sealfl.net.transfer import put_tensor as put_tensor
from sealfl.net.verifiers import CertificateIdentity as CertificateIdentity
from sealfl.net.verifiers import PeerVerifier as PeerVerifier
from sealfl.net.verifiers import accept_any_certificate as accept_any_certificate
from sealfl.net.verifiers import fingerprint_verifier as fingerprint_verifier

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "ENROLMENT_STATE_KEY",
    "CertificateIdentity",
    "CertificatePinError",
    "ChannelState",
    "Credentials",
    "Enrolment",
    "EnrolmentReceipt",
    "PeerVerifier",
    "RateLimitedLog",
    "ReceivedTensor",
    "Refusal",
    "RetryPolicy",
    "SecureChannel",
    "SecureServer",
    "ServerState",
    "TensorAssembler",
    "TensorChunker",
    "TensorStore",
    "TensorTooLargeError",
    "TlsCredentials",
    "TransferServicer",
    "WhenFull",
    "accept_any_certificate",
    "caller_certificate",
    "caller_lineage",
    "certificate_fingerprint",
    "connect_pinned",
    "describe_rpc_error",
    "fetch_server_certificate",
    "fingerprint_verifier",
    "freeze_startup_objects",
    "get_tensor",
    "keep_freed_memory",
    "make_self_signed_credentials",
    "open_secure_channel",
    "ping",
    "put_tensor",
    "receive_tensor",
    "refusal_reporter",
]
