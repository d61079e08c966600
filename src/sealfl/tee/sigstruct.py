"""Read an SGX SIGSTRUCT (Gramine's ``.sig``) and derive the policy that admits its enclave.

A SIGSTRUCT is the 1808-byte structure the enclave author signs with an RSA-3072 key
(exponent 3) and the CPU checks at EINIT. It states the enclave's measurement (ENCLAVEHASH, which
becomes MRENCLAVE), product id and security version, and carries the signer's modulus, whose
SHA-256 (of the 384 bytes as stored, little-endian) becomes MRSIGNER. :func:`read_sigstruct`
verifies the signature itself (PKCS#1 v1.5 with SHA-256 over bytes 0..128 and 900..1028, all
integers little-endian in the file) plus the fixed headers and the Q1/Q2 helper values EINIT
needs, so a tampered file is refused with the check that failed.

It also reads the JSON printed by ``gramine-sgx-sigstruct-view --output-format json``
(``mr_signer``, ``mr_enclave``, ``isv_prod_id``, ``isv_svn``; other keys are ignored). That JSON
carries no signature, so it is only as trustworthy as the command that produced it.

Recommended identity scheme for sealfl on real enclaves
-------------------------------------------------------
* **One signer** for the deployment: one RSA-3072 key (in an HSM) signs every role's enclave.
* **One** ``isv_prod_id`` **per role** (parameter server, worker, key broker ...), set in each
  role's Gramine manifest (``sgx.isvprodid``), so a worker enclave can never pass as the PS.
* **A minimum** ``isv_svn``: raise ``sgx.isvsvn`` with every security fix and raise the
  peers' ``min_isv_svn`` to cut off the vulnerable builds.

Peers then pin ``mr_signer`` + ``isv_prod_id`` + ``min_isv_svn``, not each other's
MRENCLAVE: the PS's manifest would have to contain the worker's MRENCLAVE and vice versa, and
each measurement includes its manifest, so pinning both ways is circular (and every rebuild
would need new policies everywhere). ``--with-mr-enclave`` pins one exact build for the cases
where that is wanted (a key broker releasing a model to a single audited build).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sealfl.errors import ConfigError
from sealfl.tee.policy import SgxIdentity

#: Size of a SIGSTRUCT (SGX SDM, "Enclave Signature Structure").
SIGSTRUCT_SIZE = 1808
_HEADER = bytes.fromhex("06000000e10000000000010000000000")
_HEADER2 = bytes.fromhex("01010000600000006000000001000000")
_VENDORS = {0x0000: "none", 0x8086: "Intel"}
_MODULUS_BYTES = 384
_EXPONENT = 3
_DEBUG_FLAG = 0x02  # SGX_FLAGS_DEBUG in ATTRIBUTES.flags
_U16_MAX = 0xFFFF

# (offset, size) of the fields, from the SGX SDM.
_HEADER_AT = (0, 16)
_VENDOR_AT = (16, 4)
_DATE_AT = (20, 4)
_HEADER2_AT = (24, 16)
_MODULUS_AT = (128, _MODULUS_BYTES)
_EXPONENT_AT = (512, 4)
_SIGNATURE_AT = (516, _MODULUS_BYTES)
_ATTRIBUTES_AT = (928, 16)
_ENCLAVE_HASH_AT = (960, 32)
_ISV_PROD_ID_AT = (1024, 2)
_ISV_SVN_AT = (1026, 2)
_UNSIGNED_RESERVED_AT = (1028, 12)
_Q1_AT = (1040, _MODULUS_BYTES)
_Q2_AT = (1424, _MODULUS_BYTES)
_SIGNED_RANGES = ((0, 128), (900, 1028))

_Fail = Callable[[str], ConfigError]


@dataclass(frozen=True)
class SigStruct:
    """The identity an enclave's SIGSTRUCT gives it, as its quotes will report it.

    Attributes
    ----------
    mr_signer
        SHA-256 of the signer's modulus (32 bytes): the quote's MRSIGNER.
    mr_enclave
        ENCLAVEHASH (32 bytes): the quote's MRENCLAVE.
    isv_prod_id, isv_svn
        Product id and security version number (0..65535).
    debug
        The ATTRIBUTES DEBUG flag: such an enclave's memory is readable by the host.
    signature_verified
        True for a binary SIGSTRUCT (its RSA signature was checked); False for the JSON form,
        which carries no signature.
    source
        The file it was read from, for messages.
    date
        ``YYYY-MM-DD`` from the SIGSTRUCT's DATE field, when read from the binary form.
    """

    mr_signer: bytes
    mr_enclave: bytes
    isv_prod_id: int
    isv_svn: int
    debug: bool
    signature_verified: bool
    source: str
    date: str | None = None


def _field(data: bytes, at: tuple[int, int]) -> bytes:
    offset, size = at
    return data[offset : offset + size]


def _u16(data: bytes, at: tuple[int, int]) -> int:
    return int.from_bytes(_field(data, at), "little")


def _check_rsa(data: bytes, fail: _Fail) -> None:
    """Check the RSA-3072 e=3 signature and the Q1/Q2 values EINIT verifies with."""
    exponent = int.from_bytes(_field(data, _EXPONENT_AT), "little")
    if exponent != _EXPONENT:
        raise fail(f"EXPONENT at offset {_EXPONENT_AT[0]}: expected 3, got {exponent}")
    modulus = int.from_bytes(_field(data, _MODULUS_AT), "little")
    if modulus.bit_length() != 8 * _MODULUS_BYTES or modulus % 2 == 0:
        parity = "odd" if modulus % 2 else "even"
        raise fail(
            f"MODULUS at offset {_MODULUS_AT[0]}: expected an odd 3072-bit integer, got an "
            f"{parity} {modulus.bit_length()}-bit one"
        )
    signature = int.from_bytes(_field(data, _SIGNATURE_AT), "little")
    signed = b"".join(data[start:end] for start, end in _SIGNED_RANGES)
    public_key = rsa.RSAPublicNumbers(_EXPONENT, modulus).public_key()
    try:
        public_key.verify(
            signature.to_bytes(_MODULUS_BYTES, "big"), signed, padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError) as exc:
        raise fail(
            "SIGNATURE does not verify with the MODULUS the file carries: the signed fields "
            "(bytes 0..128 and 900..1028: headers, attributes, ENCLAVEHASH, ISVPRODID, ISVSVN), "
            "the modulus or the signature were changed after signing"
        ) from exc
    square = signature * signature
    if int.from_bytes(_field(data, _Q1_AT), "little") != square // modulus:
        raise fail(f"Q1 at offset {_Q1_AT[0]} does not match the signature (EINIT would refuse)")
    if int.from_bytes(_field(data, _Q2_AT), "little") != (square % modulus) * signature // modulus:
        raise fail(f"Q2 at offset {_Q2_AT[0]} does not match the signature (EINIT would refuse)")


def parse_sigstruct(data: bytes, *, source: str = "<bytes>") -> SigStruct:
    """Parse and verify a binary SIGSTRUCT.

    Raises
    ------
    ConfigError
        If it is not 1808 bytes, a fixed header or reserved field is wrong, or the signature
        or Q1/Q2 do not verify; the message names ``source`` and the field.
    """

    def fail(message: str) -> ConfigError:
        return ConfigError(f"SIGSTRUCT {source}: {message}")

    data = bytes(data)
    if len(data) != SIGSTRUCT_SIZE:
        raise fail(f"expected {SIGSTRUCT_SIZE} bytes, got {len(data)}")
    for name, at, expected in (("HEADER", _HEADER_AT, _HEADER), ("HEADER2", _HEADER2_AT, _HEADER2)):
        if _field(data, at) != expected:
            raise fail(
                f"{name} at offset {at[0]}: expected {expected.hex()}, got {_field(data, at).hex()}"
            )
    vendor = int.from_bytes(_field(data, _VENDOR_AT), "little")
    if vendor not in _VENDORS:
        raise fail(f"VENDOR at offset {_VENDOR_AT[0]}: expected 0 or 0x8086, got {vendor:#x}")
    if any(_field(data, _UNSIGNED_RESERVED_AT)):
        raise fail(f"RESERVED bytes at offset {_UNSIGNED_RESERVED_AT[0]} must be zero")
    _check_rsa(data, fail)
    year, month, day = struct.unpack_from("<HBB", data, _DATE_AT[0])
    return SigStruct(
        mr_signer=hashlib.sha256(_field(data, _MODULUS_AT)).digest(),
        mr_enclave=_field(data, _ENCLAVE_HASH_AT),
        isv_prod_id=_u16(data, _ISV_PROD_ID_AT),
        isv_svn=_u16(data, _ISV_SVN_AT),
        debug=bool(_field(data, _ATTRIBUTES_AT)[0] & _DEBUG_FLAG),
        signature_verified=True,
        source=source,
        date=f"{year:04x}-{month:02x}-{day:02x}",
    )


def _json_digest(document: dict[str, Any], key: str, fail: _Fail) -> bytes:
    value = document.get(key)
    if not isinstance(value, str):
        shown = "nothing" if value is None else type(value).__name__
        raise fail(f"{key}: expected 64 hex digits, got {shown}")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise fail(f"{key}: expected 64 hex digits, got {value!r}") from exc
    if len(raw) != 32:
        raise fail(f"{key}: expected 64 hex digits, got {2 * len(raw)}")
    return raw


def _json_u16(document: dict[str, Any], key: str, fail: _Fail) -> int:
    value = document.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U16_MAX:
        shown = "nothing" if value is None else repr(value)
        raise fail(f"{key}: expected an integer 0..65535, got {shown}")
    return value


def parse_sigstruct_json(text: str, *, source: str = "<string>") -> SigStruct:
    """Parse ``gramine-sgx-sigstruct-view --output-format json`` output (no signature to check).

    Extra keys are ignored; ``mr_signer``, ``mr_enclave``, ``isv_prod_id`` and ``isv_svn`` are
    required and checked, and ``debug_enclave`` must be a bool if present.

    Raises
    ------
    ConfigError
        Naming ``source`` and the key that is missing or malformed.
    """

    def fail(message: str) -> ConfigError:
        return ConfigError(f"SIGSTRUCT JSON {source}: {message}")

    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise fail(f"expected a JSON object, got {type(document).__name__}")
    debug = document.get("debug_enclave", False)
    if not isinstance(debug, bool):
        raise fail(f"debug_enclave: expected true or false, got {debug!r}")
    return SigStruct(
        mr_signer=_json_digest(document, "mr_signer", fail),
        mr_enclave=_json_digest(document, "mr_enclave", fail),
        isv_prod_id=_json_u16(document, "isv_prod_id", fail),
        isv_svn=_json_u16(document, "isv_svn", fail),
        debug=debug,
        signature_verified=False,
        source=source,
    )


def read_sigstruct(path: Path) -> SigStruct:
    """Read a binary SIGSTRUCT (verified) or gramine-sgx-sigstruct-view's JSON from ``path``.

    The form is told apart by content: JSON starts with ``{``, a SIGSTRUCT with its header.

    Raises
    ------
    ConfigError
        If the file cannot be read, or is neither form, or does not verify; naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read SIGSTRUCT {path}: {exc.strerror or exc}") from exc
    if data.lstrip()[:1] == b"{":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"SIGSTRUCT JSON {path}: not UTF-8 ({exc})") from exc
        return parse_sigstruct_json(text, source=str(path))
    if len(data) != SIGSTRUCT_SIZE:
        raise ConfigError(
            f"SIGSTRUCT {path}: expected a {SIGSTRUCT_SIZE}-byte SIGSTRUCT (.sig) or the JSON of "
            f"gramine-sgx-sigstruct-view --output-format json, got {len(data)} bytes"
        )
    return parse_sigstruct(data, source=str(path))


def identity_from_sigstruct(
    sig: SigStruct, *, with_mr_enclave: bool = False, min_isv_svn: int | None = None
) -> SgxIdentity:
    """Return the SGX identity admitting enclaves of ``sig``'s signer and product id.

    Parameters
    ----------
    with_mr_enclave
        Also pin this exact build's MRENCLAVE (see the module docstring for why the default
        pins the signer instead).
    min_isv_svn
        Lowest ISVSVN accepted; defaults to the SIGSTRUCT's own ``isv_svn``.

    Raises
    ------
    ConfigError
        If ``min_isv_svn`` is not 0..65535.
    """
    return SgxIdentity(
        mr_signer=sig.mr_signer,
        isv_prod_id=sig.isv_prod_id,
        min_isv_svn=sig.isv_svn if min_isv_svn is None else min_isv_svn,
        mr_enclave=sig.mr_enclave if with_mr_enclave else None,
    )


def policy_from_sigstruct(
    sig: SigStruct, *, with_mr_enclave: bool = False, min_isv_svn: int | None = None
) -> str:
    """Return a TOML policy (for :func:`sealfl.tee.load_policy`) with one ``[[sgx]]`` identity.

    Parameters are those of :func:`identity_from_sigstruct`. Platform rules are the strict
    defaults, written out so the file shows what it admits.

    Raises
    ------
    ConfigError
        If ``min_isv_svn`` is not 0..65535.
    """
    identity = identity_from_sigstruct(
        sig, with_mr_enclave=with_mr_enclave, min_isv_svn=min_isv_svn
    )
    checked = "signature verified" if sig.signature_verified else "JSON: no signature checked"
    date = f", dated {sig.date}" if sig.date else ""
    lines = [
        f"# SGX policy from SIGSTRUCT {json.dumps(sig.source)} ({checked}{date}),",
        "# written by `sealfl attest policy-from-sig`.",
        f"# This build: mr_enclave {sig.mr_enclave.hex()}, isv_svn {sig.isv_svn}.",
    ]
    if not with_mr_enclave:
        lines.append(
            "# mr_enclave is not pinned: any build by this signer for this isv_prod_id with "
            "isv_svn >= min_isv_svn passes."
        )
    lines += [
        'tcb_statuses = ["UpToDate"]',
        "allow_debug = false",
        "",
        "[[sgx]]",
        f'mr_signer = "{sig.mr_signer.hex()}"',
        f"isv_prod_id = {identity.isv_prod_id}",
        f"min_isv_svn = {identity.min_isv_svn}",
    ]
    if identity.mr_enclave is not None:
        lines.append(f'mr_enclave = "{identity.mr_enclave.hex()}"')
    return "\n".join(lines) + "\n"
