"""A loopback PCCS (Intel PCS API v4) serving the vectors' collateral, with faults to inject.

It answers the endpoints a verifier uses (``pckcrl``, ``tcb``, ``qe/identity``, ``rootcacrl``)
the way a PCCS does: the issuer chains URL-encoded in response headers, TCB info and QE identity
as ``{"tcbInfo"|"enclaveIdentity": ..., "signature": hex}``, the PCK CRL as DER, and the root CA
CRL as hex text. Every request's path and query is logged in ``requests``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

# Faults, per endpoint ("pckcrl", "tcb", "qe/identity", "rootcacrl"):
#   "404"              not found
#   "garbage"          200 with an HTML page as the body
#   "no-header"        the issuer-chain header left out
#   "huge"             a declared Content-Length over any sensible limit
#   "huge-undeclared"  a close-delimited body (no Content-Length) of 256 KiB
#   "stall"            no answer until the server stops
#   "redirect"         302 to the same path
#   "spaced"           the JSON body pretty-printed (the signed member's text unchanged)
#   "duplicate"        the JSON body with its signed member twice
#   "wrong-fmspc"      the TCB info of another platform family
FAULTS = (
    "404",
    "garbage",
    "no-header",
    "huge",
    "huge-undeclared",
    "stall",
    "redirect",
    "spaced",
    "duplicate",
    "wrong-fmspc",
)


def _crl_ca(crl_der: bytes) -> str:
    issuer = x509.load_der_x509_crl(crl_der).issuer.rfc4514_string()
    return "processor" if "Processor" in issuer else "platform"


class PccsServer:
    """Serve ``collateral_files`` (dcap-qvl QuoteCollateralV3 JSON) as a PCCS on 127.0.0.1.

    Parameters
    ----------
    root_crl_encoding
        ``hex`` (as a PCCS sends it), ``der`` or ``pem``.
    """

    def __init__(self, collateral_files: Iterable[Path], *, root_crl_encoding: str = "hex"):
        self.requests: list[str] = []
        self.faults: dict[str, str] = {}
        self._pck_crl: dict[str, tuple[bytes, str]] = {}
        self._tcb: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._qe: dict[str, tuple[str, str, str]] = {}
        root_crl = b""
        for path in collateral_files:
            c = json.loads(Path(path).read_text())
            tcb = json.loads(c["tcb_info"])
            tee = str(tcb["id"]).lower()
            pck_crl = bytes.fromhex(c["pck_crl"])
            self._pck_crl[_crl_ca(pck_crl)] = (pck_crl, c["pck_crl_issuer_chain"])
            self._tcb[(tee, str(tcb["fmspc"]).upper())] = (
                c["tcb_info"],
                c["tcb_info_signature"],
                c["tcb_info_issuer_chain"],
            )
            self._qe[tee] = (
                c["qe_identity"],
                c["qe_identity_signature"],
                c["qe_identity_issuer_chain"],
            )
            root_crl = bytes.fromhex(c["root_ca_crl"])
        if root_crl_encoding == "hex":
            self._root_crl = root_crl.hex().encode()
        elif root_crl_encoding == "pem":
            crl = x509.load_der_x509_crl(root_crl)
            self._root_crl = crl.public_bytes(Encoding.PEM)
        else:
            self._root_crl = root_crl
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def log(self) -> list[str]:
        with self._lock:
            return list(self.requests)

    def start(self) -> PccsServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> PccsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(
        self, path: str, query: dict[str, list[str]]
    ) -> tuple[str, int, dict[str, str], bytes]:
        """Return (endpoint, status, headers, body); status 404 for what is not served."""
        parts = path.strip("/").split("/")
        if (
            len(parts) < 4
            or parts[1:3] != ["certification", "v4"]
            or parts[0] not in ("sgx", "tdx")
        ):
            return "", 404, {}, b""
        tee, endpoint = parts[0], "/".join(parts[3:])
        if endpoint == "pckcrl" and tee == "sgx" and query.get("encoding") == ["der"]:
            found = self._pck_crl.get(query.get("ca", [""])[0])
            if found is None:
                return endpoint, 404, {}, b""
            crl, chain = found
            return endpoint, 200, {"SGX-PCK-CRL-Issuer-Chain": urllib.parse.quote(chain)}, crl
        if endpoint == "tcb":
            fmspc = query.get("fmspc", [""])[0]
            if self.faults.get(endpoint) == "wrong-fmspc":
                tcb = next(v for (_, f), v in self._tcb.items() if f != fmspc)
            else:
                found_tcb = self._tcb.get((tee, fmspc))
                if found_tcb is None:
                    return endpoint, 404, {}, b""
                tcb = found_tcb
            return (
                endpoint,
                200,
                {"TCB-Info-Issuer-Chain": urllib.parse.quote(tcb[2])},
                (self._signed_body("tcbInfo", tcb[0], tcb[1], self.faults.get(endpoint))),
            )
        if endpoint == "qe/identity" and query.get("update", ["standard"]) == ["standard"]:
            found_qe = self._qe.get(tee)
            if found_qe is None:
                return endpoint, 404, {}, b""
            headers = {"SGX-Enclave-Identity-Issuer-Chain": urllib.parse.quote(found_qe[2])}
            body = self._signed_body(
                "enclaveIdentity", found_qe[0], found_qe[1], self.faults.get(endpoint)
            )
            return endpoint, 200, headers, body
        if endpoint == "rootcacrl" and tee == "sgx":
            return endpoint, 200, {}, self._root_crl
        return endpoint, 404, {}, b""

    @staticmethod
    def _signed_body(member: str, raw: str, signature: str, fault: str | None) -> bytes:
        if fault == "spaced":
            return f'{{\n  "{member}" : {raw} ,\n  "signature": "{signature}"\n}}\n'.encode()
        if fault == "duplicate":
            return f'{{"{member}":{raw},"signature":"{signature}","{member}":{{}}}}'.encode()
        return f'{{"{member}":{raw},"signature":"{signature}"}}'.encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server.requests.append(self.path)
                split = urllib.parse.urlsplit(self.path)
                endpoint, status, headers, body = server._answer(
                    split.path, urllib.parse.parse_qs(split.query)
                )
                fault = server.faults.get(endpoint)
                # The client stops reading an oversized body, as it should.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(fault, status, headers, body)

            def _send(
                self, fault: str | None, status: int, headers: dict[str, str], body: bytes
            ) -> None:
                if fault == "stall":
                    server._released.wait()
                    return
                if fault == "404" or status == 404:
                    self.send_error(404, "Not Found")
                    return
                if fault == "redirect":
                    self.send_response(302)
                    self.send_header("Location", self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "garbage":
                    body = b"<html><body>It works!</body></html>"
                if fault == "no-header":
                    headers = {}
                self.send_response(200)
                for name, value in headers.items():
                    self.send_header(name, value)
                if fault == "huge":
                    self.send_header("Content-Length", str(1 << 40))
                    self.end_headers()
                    self.wfile.write(bytes(4096))
                    return
                if fault == "huge-undeclared":
                    self.end_headers()
                    for _ in range(64):
                        self.wfile.write(bytes(4096))
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
