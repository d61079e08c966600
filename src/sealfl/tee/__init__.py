"""Trusted execution: evidence (SGX, TDX, simulated), verification, policy, RA-TLS certificates.

Hazardous-materials layer: a verifier raises :class:`sealfl.errors.AttestationError`; it never
returns False.
"""
