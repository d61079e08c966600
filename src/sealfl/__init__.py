"""sealfl: privacy-preserving machine learning across organisations.

Three technologies, usable together:

* Paillier homomorphic encryption (:mod:`sealfl.he`),
* trusted execution environments with remote attestation bound into TLS (:mod:`sealfl.tee`,
  :mod:`sealfl.net`) and sealed files (:mod:`sealfl.seal`),
* secure two-party computation (:mod:`sealfl.mpc`),

and the workloads built from them in :mod:`sealfl.fl`. The ``sealfl`` command
(:mod:`sealfl.cli`) is the only place that wires everything together.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sealfl")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
