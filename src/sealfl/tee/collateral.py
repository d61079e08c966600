"""Where a verifier gets Intel collateral for a peer's real SGX/TDX quote, and when it refuses.

Hazardous layer. A real quote is verified against collateral (TCB info, QE identity, the PCK
CRL and the root CA CRL, all signed by Intel) that is valid only inside a window: from its
``issueDate``/``thisUpdate`` to its ``nextUpdate`` (:meth:`Collateral.validity`). A
:class:`CollateralSource` gives the collateral for one quote at one time, or raises
:class:`~sealfl.errors.AttestationError` with the reason. Expired collateral is refused, never
used: a source never returns collateral whose window does not contain the verification time.

* :class:`StaticCollateral`: collateral given up front, from a JSON file or a directory of
  them (offline verification, air-gapped parties, tests).
* :class:`PccsCollateral`: fetched from a PCCS or from Intel's PCS with the standard v4 API, for
  the quote's platform family (FMSPC) and PCK CA, and cached in memory and on disk until its
  ``nextUpdate``.
* :func:`collateral_source`: one of the two from a path or URL, as a role config names it.

Everything a source reads before verification (FMSPC, PCK CA, dates) only selects and
schedules; dcap-qvl then checks every signature and date again.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import logging
import re
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

import dcap_qvl
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from sealfl._files import make_directory, write_atomic
from sealfl.errors import AttestationError, ConfigError
from sealfl.tee.dcap import Collateral, quote_fmspc, select_collateral

__all__ = [
    "INTEL_PCS_URL",
    "CollateralSource",
    "PccsCollateral",
    "StaticCollateral",
    "collateral_source",
    "quote_pck_ca",
]

logger = logging.getLogger(__name__)

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
"""Intel's Provisioning Certification Service; a PCCS caches the same API inside a network."""

# Intel PCS serves no /rootcacrl; the root CA's CRL lives at the root certificate's CRL
# distribution point (the same address is in every Intel SGX Root CA certificate).
_INTEL_ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
_PCK_CA_BY_ISSUER_CN = {
    "Intel SGX PCK Processor CA": "processor",
    "Intel SGX PCK Platform CA": "platform",
}
_QE_IDENTITY_ID = {"sgx": "QE", "tdx": "TD_QE"}
_FMSPC = re.compile(r"[0-9A-F]{12}")
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_CACHE_FORMAT = "sealfl-collateral-cache/1"
_READ_CHUNK = 64 * 1024


@runtime_checkable
class CollateralSource(Protocol):
    """Gives the collateral to verify one real quote at one time.

    Implementations never return collateral whose validity window does not contain ``at``.
    """

    def collateral_for(self, quote: bytes, tee: str, at: float) -> Collateral:
        """Return collateral for ``quote`` (TEE ``"sgx"`` or ``"tdx"``) valid at unix time ``at``.

        Raises
        ------
        AttestationError
            With the reason none can be given: none for this TEE and FMSPC, only expired (or
            not yet valid) collateral, or a fetch that failed.
        """
        ...


def _iso(unix: float) -> str:
    moment = datetime.datetime.fromtimestamp(unix, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _window_refusal(collateral: Collateral, at: float, tee: str) -> str | None:
    """Say why ``collateral`` cannot be used at ``at``, naming every item out of its window."""
    expired = [w for w in collateral.validity_windows() if at > w.not_after]
    early = [w for w in collateral.validity_windows() if at < w.not_before]
    if not expired and not early:
        return None
    problems = []
    if expired:
        fields = ", ".join(f"{w.item} nextUpdate {_iso(w.not_after)}" for w in expired)
        problems.append(
            f"collateral expired: {fields} {'is' if len(expired) == 1 else 'are'} before that time"
        )
    if early:
        fields = ", ".join(f"{w.item} {w.start_field} {_iso(w.not_before)}" for w in early)
        problems.append(
            f"collateral not yet valid: {fields} {'is' if len(early) == 1 else 'are'} "
            "after that time"
        )
    return (
        f"DCAP verification of the {tee.upper()} quote failed at unix time {int(at)} "
        f"({_iso(at)}) with collateral {collateral.source}: {'; '.join(problems)}"
    )


def _valid_at(collateral: Collateral, at: float) -> bool:
    not_before, not_after = collateral.validity()
    return not_before <= at <= not_after


def _issuer_ca(name: x509.Name) -> str | None:
    names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return _PCK_CA_BY_ISSUER_CN.get(str(names[0].value)) if names else None


def _pck_crl_ca(collateral: Collateral) -> str | None:
    """Which PCK CA (``processor``/``platform``) issued the collateral's PCK CRL."""
    return _issuer_ca(x509.load_der_x509_crl(bytes(collateral.raw.pck_crl)).issuer)


def quote_pck_ca(quote: bytes) -> str:
    """Return the CA that issued the quote's PCK certificate: ``processor`` or ``platform``.

    The PCK CRL to check the quote against is that CA's (``pckcrl?ca=...``).

    Raises
    ------
    AttestationError
        If the quote carries no PCK certificate chain, or its issuer is neither Intel PCK CA.
    """
    try:
        pem = dcap_qvl.parse_quote(bytes(quote)).cert_chain_pem_bytes()
        chain = x509.load_pem_x509_certificates(bytes(pem)) if pem else []
    except ValueError as exc:
        raise AttestationError(f"cannot read the quote's PCK certificate chain: {exc}") from exc
    if not chain:
        raise AttestationError(
            "the quote carries no PCK certificate chain: expected certification data type 5"
        )
    ca = _issuer_ca(chain[0].issuer)
    if ca is None:
        raise AttestationError(
            f"PCK certificate issuer {chain[0].issuer.rfc4514_string()}: expected one of "
            f"{sorted(_PCK_CA_BY_ISSUER_CN)}"
        )
    return ca


class StaticCollateral:
    """Collateral given up front: picked by TEE, FMSPC and PCK CA, refused once expired.

    Where several match (an older and a newer download), the most recently issued one valid
    at the verification time is used.

    Parameters
    ----------
    collateral
        The collateral to choose from.
    source
        Where it came from, for messages.
    """

    def __init__(
        self, collateral: Iterable[Collateral], *, source: str = "given collateral"
    ) -> None:
        self._items = tuple(collateral)
        self._cas = tuple(_pck_crl_ca(c) for c in self._items)
        self.source = source

    @classmethod
    def load(cls, path: Path) -> StaticCollateral:
        """Read a collateral JSON file, or every ``*.json`` file of a directory.

        Raises
        ------
        ConfigError
            If ``path`` is missing, a directory holds no ``*.json`` file, or a file is not
            collateral JSON (a directory given as collateral holds nothing else).
        """
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.glob("*.json") if p.is_file())
            if not files:
                raise ConfigError(f"collateral directory {path}: expected *.json files, found none")
            return cls([Collateral.load(f) for f in files], source=str(path))
        return cls([Collateral.load(path)], source=str(path))

    @property
    def collateral(self) -> tuple[Collateral, ...]:
        """Every collateral this source chooses from."""
        return self._items

    def collateral_for(self, quote: bytes, tee: str, at: float) -> Collateral:
        """Return the newest matching collateral valid at ``at`` (see :class:`CollateralSource`).

        Raises
        ------
        AttestationError
            If none is for this TEE, FMSPC and PCK CA, or none of those is valid at ``at``.
        """
        select_collateral(quote, tee, self._items)  # raises, naming what is there, if none
        fmspc = quote_fmspc(quote)
        ca = quote_pck_ca(quote)
        matching = [
            c
            for c, c_ca in zip(self._items, self._cas, strict=True)
            if c.tee == tee and c.fmspc == fmspc and c_ca == ca
        ]
        if not matching:
            raise AttestationError(
                f"no collateral for {tee.upper()} FMSPC {fmspc} with the PCK CRL of the {ca} "
                f"CA: the given collateral for that FMSPC has another CA's CRL"
            )
        usable = [c for c in matching if _valid_at(c, at)]
        if usable:
            return max(usable, key=lambda c: c.validity()[0])

        def distance(c: Collateral) -> float:
            not_before, not_after = c.validity()
            return max(not_before - at, at - not_after)

        nearest = min(matching, key=distance)
        raise AttestationError(_window_refusal(nearest, at, tee) or "collateral not valid")


class _FetchError(Exception):
    """A PCCS/PCS request failed or answered something unusable (converted at the boundary)."""


@dataclass(frozen=True)
class _Reply:
    headers: HTTPMessage
    body: bytes


@dataclass(frozen=True)
class _Entry:
    collateral: Collateral
    fetched_at: float


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: a PCCS/PCS answers directly, and a redirect could downgrade to http."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n\r":
        i += 1
    return i


def _raw_members(text: str) -> dict[str, str]:
    """Split a JSON object into its members' raw text, keeping each value's bytes as sent.

    Intel signs the exact text of ``tcbInfo`` / ``enclaveIdentity`` inside the response, so it
    is cut out rather than parsed and re-serialised.
    """
    decoder = json.JSONDecoder()
    i = _skip_space(text, 0)
    if text[i : i + 1] != "{":
        raise ValueError("expected a JSON object")
    i = _skip_space(text, i + 1)
    members: dict[str, str] = {}
    closed = text[i : i + 1] == "}"
    if closed:
        i += 1
    while not closed:
        key, i = decoder.raw_decode(text, i)
        if not isinstance(key, str):
            raise ValueError("expected a member name")
        i = _skip_space(text, i)
        if text[i : i + 1] != ":":
            raise ValueError(f"expected ':' after {key!r}")
        start = _skip_space(text, i + 1)
        _, i = decoder.raw_decode(text, start)
        if key in members:
            raise ValueError(f"member {key!r} appears twice")
        members[key] = text[start:i]
        i = _skip_space(text, i)
        separator = text[i : i + 1]
        if separator not in (",", "}"):
            raise ValueError(f"expected ',' or '}}' after {key!r}")
        closed = separator == "}"
        i = _skip_space(text, i + 1)
    if _skip_space(text, i) != len(text):
        raise ValueError("unexpected text after the JSON object")
    return members


def _signed_item(body: bytes, member: str, url: str) -> tuple[str, str]:
    """Return the raw text of ``member`` and its hex ``signature`` from a TCB/identity body."""
    try:
        members = _raw_members(body.decode("utf-8"))
        raw = members[member]
        if not isinstance(json.loads(raw), dict):
            raise ValueError(f"{member} is not an object")
        signature = json.loads(members["signature"])
        if not isinstance(signature, str) or not _HEX.fullmatch(signature.encode()):
            raise ValueError("signature is not a hex string")
    except (UnicodeDecodeError, ValueError, KeyError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise _FetchError(
            f"{url}: expected JSON {{{member!r}: ..., 'signature': hex}}, got something else "
            f"({detail})"
        ) from exc
    return raw, signature


def _issuer_chain(reply: _Reply, names: tuple[str, ...], url: str) -> str:
    """Return the URL-decoded PEM issuer chain from the first present header of ``names``."""
    value = next((v for n in names if (v := reply.headers.get(n))), None)
    if value is None:
        raise _FetchError(f"{url}: response lacks the {' or '.join(names)} header")
    chain = urllib.parse.unquote(value)
    try:
        if not x509.load_pem_x509_certificates(chain.encode("ascii")):
            raise ValueError("no certificate")
    except (ValueError, UnicodeEncodeError) as exc:
        raise _FetchError(
            f"{url}: header {names[0]} is not a URL-encoded PEM certificate chain ({exc})"
        ) from exc
    return chain


def _crl_der(body: bytes, url: str) -> bytes:
    """Read a CRL sent as DER, PEM or hex text (a PCCS sends the root CA CRL as hex)."""
    text = body.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(text).public_bytes(Encoding.DER)
        der = bytes.fromhex(text.decode("ascii")) if _HEX.fullmatch(text) else body
        x509.load_der_x509_crl(der)
    except ValueError as exc:
        raise _FetchError(f"{url}: expected a CRL (DER, PEM or hex), got something else") from exc
    return der


class PccsCollateral:
    """Collateral fetched from a PCCS or Intel PCS (API v4) and cached until its ``nextUpdate``.

    For a quote, the FMSPC and the PCK CA (``processor``/``platform``, from the PCK
    certificate's issuer) select what to fetch: the PCK CRL, the TCB info for the FMSPC, the QE
    identity of the quote's TEE, and the root CA CRL. Fetched collateral is kept in memory and,
    with ``cache_dir``, on disk per (TEE, FMSPC, CA) with its validity window, so a restarted
    party verifies without the network while the window lasts. Past ``nextUpdate`` it is
    fetched again; if that fails, or the server still serves the old collateral, the quote is
    refused, never verified against expired collateral.

    Parameters
    ----------
    base_url
        ``https://`` address of the PCCS or PCS (``INTEL_PCS_URL``), with or without the
        ``/sgx/certification/v4`` suffix. ``http://`` is accepted only for a loopback host, for
        testing, with a warning: over plain http anyone on the path could replay older,
        still-valid collateral or block updates.
    cache_dir
        Directory for the on-disk cache (created if missing); ``None`` keeps it in memory only.
    timeout_s
        Bound on each request (connect and the whole body).
    clock
        Unix seconds; when collateral was fetched, for ``refresh_after_s`` and
        ``retry_after_s`` (the verification time itself is the ``at`` of each call).
    max_response_bytes
        Largest response body accepted.
    refresh_after_s
        Fetch anew once cached collateral is this old, even inside its window, so a TCB
        recovery published early is picked up; a failed refresh keeps the valid cache. ``None``
        fetches only when the cache cannot be used.
    retry_after_s
        After a failed fetch, the same collateral is not asked for again for this long.
    ssl_context
        TLS settings for https (for a PCCS with its own CA); default: the system's trust store.

    Raises
    ------
    ConfigError
        If the URL or a bound is unusable, or ``cache_dir`` cannot be created.
    """

    def __init__(
        self,
        base_url: str,
        *,
        cache_dir: Path | None = None,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        max_response_bytes: int = 1 << 20,
        refresh_after_s: float | None = 24 * 3600.0,
        retry_after_s: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url.strip())
        host = parts.hostname or ""
        if parts.scheme not in ("https", "http") or not host:
            raise ConfigError(f"collateral URL {base_url!r}: expected https://HOST[:PORT][/PATH]")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(
                f"collateral URL {base_url!r}: expected no query, fragment or credentials"
            )
        if parts.scheme == "http":
            if not _is_loopback(host):
                raise ConfigError(
                    f"collateral URL {base_url!r}: plain http is accepted only for a loopback "
                    f"host (testing); use https:// for {host}"
                )
            logger.warning(
                "collateral from %s over plain http: for loopback testing only; use https", host
            )
        for name, bound in (("timeout_s", timeout_s), ("max_response_bytes", max_response_bytes)):
            if not bound > 0:
                raise ConfigError(f"PccsCollateral {name}: expected a positive bound, got {bound}")
        path = parts.path.rstrip("/")
        for suffix in ("/sgx/certification/v4", "/tdx/certification/v4"):
            path = path.removesuffix(suffix)
        self.base_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self._intel_pcs = self.base_url == INTEL_PCS_URL
        handlers: list[urllib.request.BaseHandler] = [
            _NoRedirect(),
            urllib.request.HTTPSHandler(context=ssl_context or ssl.create_default_context()),
        ]
        if _is_loopback(host):
            handlers.append(urllib.request.ProxyHandler({}))  # never send loopback to a proxy
        self._opener = urllib.request.build_opener(*handlers)
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self._cache_dir is not None:
            make_directory(self._cache_dir, what="collateral cache")
        self._timeout_s = float(timeout_s)
        self._clock = clock
        self._max_bytes = int(max_response_bytes)
        self._refresh_after_s = refresh_after_s
        self._retry_after_s = float(retry_after_s)
        self._memory: dict[tuple[str, str, str], _Entry] = {}
        self._failures: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PccsCollateral({self.base_url!r}, cache_dir={self._cache_dir})"

    def collateral_for(self, quote: bytes, tee: str, at: float) -> Collateral:
        """Return cached or newly fetched collateral valid at ``at`` (see CollateralSource).

        Raises
        ------
        AttestationError
            If the fetch fails and no cached collateral is valid at ``at``, or the server's
            collateral is itself expired (or not yet valid) at ``at``.
        """
        if tee not in _QE_IDENTITY_ID:
            raise AttestationError(f"collateral for TEE {tee!r}: expected one of sgx, tdx")
        fmspc = quote_fmspc(quote)
        if not _FMSPC.fullmatch(fmspc):
            raise AttestationError(f"quote FMSPC {fmspc!r}: expected 12 hex digits")
        key = (tee, fmspc, quote_pck_ca(quote))
        with self._lock:
            return self._collateral(key, float(at))

    def _collateral(self, key: tuple[str, str, str], at: float) -> Collateral:
        tee, fmspc, ca = key
        entry = self._memory.get(key) or self._read_cache(key)
        now = self._clock()
        stale = (
            self._refresh_after_s is not None
            and entry is not None
            and (now - entry.fetched_at >= self._refresh_after_s)
        )
        if entry is not None and _valid_at(entry.collateral, at) and not stale:
            return entry.collateral
        failure = self._failures.get(key)
        if failure is not None and now < failure[0] + self._retry_after_s:
            retry = _iso(failure[0] + self._retry_after_s)
            return self._fallback(entry, at, tee, f"{failure[1]} (not retried before {retry})")
        try:
            fetched = self._fetch(tee, fmspc, ca)
        except _FetchError as exc:
            message = (
                f"fetching {tee.upper()} collateral for FMSPC {fmspc} ({ca} CA) from "
                f"{self.base_url} failed: {exc}"
            )
            self._failures[key] = (now, message)
            return self._fallback(entry, at, tee, message)
        self._failures.pop(key, None)
        if entry is None or fetched.validity()[1] >= entry.collateral.validity()[1]:
            self._store(key, _Entry(fetched, now))
        refusal = _window_refusal(fetched, at, tee)
        if refusal is None:
            return fetched
        self._failures[key] = (now, refusal)
        return self._fallback(entry, at, tee, refusal)

    def _fallback(self, entry: _Entry | None, at: float, tee: str, message: str) -> Collateral:
        """Use the cache if it is still valid at ``at``; otherwise refuse with both reasons."""
        if entry is None:
            raise AttestationError(message)
        cached_refusal = _window_refusal(entry.collateral, at, tee)
        if cached_refusal is None:
            logger.warning(
                "%s; using cached collateral valid until %s",
                message,
                _iso(entry.collateral.validity()[1]),
            )
            return entry.collateral
        raise AttestationError(f"{message}; and the cached one cannot be used: {cached_refusal}")

    def _cache_path(self, key: tuple[str, str, str]) -> Path | None:
        return None if self._cache_dir is None else self._cache_dir / ("-".join(key) + ".json")

    def _read_cache(self, key: tuple[str, str, str]) -> _Entry | None:
        path = self._cache_path(key)
        if path is None:
            return None
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            logger.warning("ignoring the unreadable collateral cache %s: %s", path, exc)
            return None
        try:
            if document["format"] != _CACHE_FORMAT:
                raise ValueError(f"format {document['format']!r}, expected {_CACHE_FORMAT!r}")
            collateral = Collateral.from_json(
                json.dumps(document["collateral"]),
                source=f"{path} (cached from {document['url']})",
            )
            found = (collateral.tee, collateral.fmspc, _pck_crl_ca(collateral))
            if found != key:
                raise ValueError(f"holds collateral for {found}, expected {key}")
            entry = _Entry(collateral, float(document["fetched_at"]))
        except (ConfigError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring the unusable collateral cache %s: %s", path, exc)
            return None
        self._memory[key] = entry
        return entry

    def _store(self, key: tuple[str, str, str], entry: _Entry) -> None:
        self._memory[key] = entry
        path = self._cache_path(key)
        if path is None:
            return
        not_before, not_after = entry.collateral.validity()
        document = {
            "format": _CACHE_FORMAT,
            "url": self.base_url,
            "tee": key[0],
            "fmspc": key[1],
            "ca": key[2],
            "fetched_at": entry.fetched_at,
            "not_before": not_before,
            "not_after": not_after,
            "valid": f"{_iso(not_before)} .. {_iso(not_after)}",
            "collateral": json.loads(entry.collateral.raw.to_json()),
        }
        try:
            write_atomic(path, json.dumps(document, indent=1).encode("utf-8"), mode=0o644)
        except ConfigError as exc:
            logger.warning("collateral not cached on disk: %s", exc)

    def _get(self, url: str) -> _Reply:
        request = urllib.request.Request(url, headers={"User-Agent": "sealfl"})
        deadline = time.monotonic() + self._timeout_s
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self._max_bytes:
                    raise _FetchError(
                        f"{url}: response of {declared} bytes is over the limit of "
                        f"{self._max_bytes} bytes"
                    )
                body = bytearray()
                while chunk := response.read(min(_READ_CHUNK, self._max_bytes + 1 - len(body))):
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise _FetchError(
                            f"{url}: response is over the limit of {self._max_bytes} bytes"
                        )
                    if time.monotonic() > deadline:
                        raise TimeoutError
                return _Reply(headers=response.headers, body=bytes(body))
        except urllib.error.HTTPError as exc:
            exc.close()
            raise _FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise _FetchError(f"{url}: timed out after {self._timeout_s:g} s") from exc
            raise _FetchError(f"{url}: {exc.reason}") from exc
        except TimeoutError as exc:
            raise _FetchError(f"{url}: timed out after {self._timeout_s:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise _FetchError(f"{url}: {type(exc).__name__}: {exc}") from exc

    def _fetch(self, tee: str, fmspc: str, ca: str) -> Collateral:
        """Fetch the four items for (tee, fmspc, ca) and check they are what was asked for."""
        sgx_api = f"{self.base_url}/sgx/certification/v4"
        tee_api = f"{self.base_url}/{tee}/certification/v4"

        url = f"{sgx_api}/pckcrl?ca={ca}&encoding=der"
        reply = self._get(url)
        pck_crl_chain = _issuer_chain(reply, ("SGX-PCK-CRL-Issuer-Chain",), url)
        pck_crl = _crl_der(reply.body, url)

        url = f"{tee_api}/tcb?fmspc={fmspc}&update=standard"
        reply = self._get(url)
        tcb_chain = _issuer_chain(
            reply, ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"), url
        )
        tcb_info, tcb_signature = _signed_item(reply.body, "tcbInfo", url)

        url = f"{tee_api}/qe/identity?update=standard"
        reply = self._get(url)
        qe_chain = _issuer_chain(reply, ("SGX-Enclave-Identity-Issuer-Chain",), url)
        qe_identity, qe_signature = _signed_item(reply.body, "enclaveIdentity", url)

        url = _INTEL_ROOT_CA_CRL_URL if self._intel_pcs else f"{sgx_api}/rootcacrl"
        root_ca_crl = _crl_der(self._get(url).body, url)

        document = {
            "pck_crl_issuer_chain": pck_crl_chain,
            "root_ca_crl": root_ca_crl.hex(),
            "pck_crl": pck_crl.hex(),
            "tcb_info_issuer_chain": tcb_chain,
            "tcb_info": tcb_info,
            "tcb_info_signature": tcb_signature,
            "qe_identity_issuer_chain": qe_chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": qe_signature,
        }
        source = f"{self.base_url} ({tee.upper()} FMSPC {fmspc}, {ca} CA)"
        try:
            collateral = Collateral.from_json(json.dumps(document), source=source)
        except ConfigError as exc:
            raise _FetchError(f"the answers do not make collateral: {exc}") from exc
        found_qe = json.loads(qe_identity).get("id")
        asked = (tee, fmspc, ca, _QE_IDENTITY_ID[tee])
        found = (collateral.tee, collateral.fmspc, _pck_crl_ca(collateral), found_qe)
        if found != asked:
            raise _FetchError(
                f"asked for TEE, FMSPC, PCK CA, QE identity {asked}, the server answered {found}"
            )
        return collateral


def collateral_source(spec: str | Path, *, cache_dir: Path | None = None) -> CollateralSource:
    """Return the collateral source a role config or command line names.

    Parameters
    ----------
    spec
        A collateral JSON file, a directory of them, or the ``https://`` URL of a PCCS/PCS.
    cache_dir
        On-disk cache for a URL (see :class:`PccsCollateral`); ignored for files.

    Raises
    ------
    ConfigError
        If ``spec`` is neither an existing file or directory nor an http(s) URL, or what it
        names is unusable.
    """
    text = str(spec)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text) if isinstance(spec, str) else None
    if scheme is not None:
        if scheme.group(1).lower() in ("http", "https"):
            return PccsCollateral(text, cache_dir=cache_dir)
        raise ConfigError(
            f"collateral {text!r}: expected a file, a directory or an https:// URL, "
            f"got a {scheme.group(1)}:// URL"
        )
    path = Path(spec)
    if not path.exists():
        raise ConfigError(
            f"collateral {path}: no such file or directory (expected a collateral JSON file, "
            f"a directory of them, or an https:// PCCS/PCS URL)"
        )
    return StaticCollateral.load(path)
