"""torch stays out of the workloads that do not need it: importing them does not load it."""

from __future__ import annotations

import subprocess
import sys

import pytest

TORCH_FREE = ["sealfl.models", "sealfl.data", "sealfl.fl.homo_lr", "sealfl.fl.infer"]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_does_not_import_torch(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print(len(loaded))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "0", f"importing {module} loaded torch"


def test_the_probe_sees_torch_when_it_is_imported() -> None:
    # The check above could pass vacuously if the probe were wrong; here it must see torch.
    code = "import sys, sealfl.models.nn\nprint('torch' in sys.modules)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "True"
