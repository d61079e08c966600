"""Locate and load the benchmark harnesses that live in the source checkout's ``benchmarks/``.

Benchmarks are not part of the library: they compare sealfl with peers (python-paillier, plain
TLS ...) that a user of the library need not install. ``sealfl bench ...`` therefore runs them
from the checkout that sealfl was installed from (``pip install -e .``, which ``make`` does).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from sealfl.errors import ConfigError

BENCHMARKS_DIR = Path(__file__).resolve().parents[3] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` from the source checkout and return the module.

    Raises
    ------
    ConfigError
        If sealfl was installed without its source tree, or the harness does not exist.
    """
    path = BENCHMARKS_DIR / f"{name}.py"
    if not path.is_file():
        raise ConfigError(
            f"benchmark harness {path} not found: benchmarks run from a source checkout "
            "installed with `pip install -e .` (as `make demo` does)"
        )
    module_name = f"sealfl_benchmarks_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load benchmark harness {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
