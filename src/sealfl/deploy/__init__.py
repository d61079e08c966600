"""Deployment: Gramine manifests per role, and the bundles each organisation starts from.

- :mod:`.gramine` renders the manifest template per role (``deploy/gramine/``) and checks the
  rules that keep an enclave's inputs measured: no debug, DCAP attestation, a fixed command
  line, only address variables from the host, no host-writable trusted path, and every
  compiled module sealfl loads under a trusted path.
- :mod:`.project` reads ``project.toml``, one description of a federation; :mod:`.bundle`
  writes each organisation's signed bundle from it (role configs, policies naming its peers,
  collateral source, broker address) and checks a bundle before a host starts a party.

Nothing here needs Gramine, SGX or TDX; the files it writes are what they consume.
"""

from sealfl.deploy.gramine import (
    ImagePaths,
    ManifestRequest,
    RoleSpec,
    check_manifest,
    compiled_modules,
    load_role_table,
    render_manifest,
    required_distributions,
)

__all__ = [
    "ImagePaths",
    "ManifestRequest",
    "RoleSpec",
    "check_manifest",
    "compiled_modules",
    "load_role_table",
    "render_manifest",
    "required_distributions",
]
