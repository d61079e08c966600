"""The exception tree of sealfl.

Every error sealfl raises on purpose derives from :class:`SealflError`, so a caller can catch
one type at a boundary (the CLI turns it into a message and a non-zero exit)::

    SealflError
    ├── ConfigError        bad arguments, files or settings given by a user
    ├── HEError            homomorphic encryption: keys, encoding, overflow, wire format
    │   └── EncodingOverflowError   a value or a sum no longer fits its encoding
    ├── AttestationError   evidence or policy refused (the reason is local; peers get less)
    ├── ChannelError       transport: connection, handshake, enrolment, deadlines
    ├── ProtocolError      a peer broke a workload's protocol (malformed or duplicate message)
    └── SealError          a sealed file or key that fails authentication or cannot be used

Lower-layer exceptions (``grpc.RpcError``, ``cryptography.exceptions.InvalidTag`` ...) are
converted at the boundary of the module that calls them, with ``raise ... from exc``.
Messages name what was expected and what arrived.
"""


class SealflError(Exception):
    """Root of every error sealfl raises on purpose."""


class ConfigError(SealflError):
    """A user-supplied argument, file or setting is unusable."""


class HEError(SealflError):
    """A homomorphic-encryption operation cannot be carried out."""


class EncodingOverflowError(HEError):
    """A value, or the sum of several, does not fit the encoding it is meant to use."""


class AttestationError(SealflError):
    """Evidence could not be verified, or it does not satisfy the policy."""


class ChannelError(SealflError):
    """A secure channel could not be opened, kept, or used."""


class ProtocolError(SealflError):
    """A peer sent something a workload's protocol does not allow."""


class SealError(SealflError):
    """A sealed file or sealing key cannot be used: tampered, truncated, or wrong key."""


__all__ = [
    "AttestationError",
    "ChannelError",
    "ConfigError",
    "EncodingOverflowError",
    "HEError",
    "ProtocolError",
    "SealError",
    "SealflError",
]
