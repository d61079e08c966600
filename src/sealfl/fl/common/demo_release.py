"""The end of a demo: the released model opens for its owner and for nobody else.

Each workload's demo opens the release envelope offline with the model owner's key and shows
what it got (that part is the workload's own); then, the same for every workload, it tries a
key the release list does not name and shows the refusal (:func:`show_outsider_refused`).
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from sealfl.errors import SealError
from sealfl.seal import ReleaseKey, open_release

__all__ = ["show_outsider_refused"]


def show_outsider_refused(envelope: Path, run_dir: Path, console: Console) -> int:
    """Try to open ``envelope`` with a fresh key of an untrusted node; show the refusal.

    Returns 0 when it was refused, 1 when the outsider opened the model (into
    ``run_dir/untrusted.pb``).
    """
    outsider = ReleaseKey.generate(name="untrusted-node")
    try:
        open_release(envelope, run_dir / "untrusted.pb", private_key=outsider)
    except SealError as exc:
        console.print(f"release: an untrusted node's key is refused: {escape(str(exc))}")
        return 0
    console.print("[red]release: an untrusted node opened the model[/red]")
    return 1
