"""Wall time of a federation from bundles: separate network namespaces vs loopback.

Not a test (timing is never asserted): run as root with
``.venv/bin/python tests/deploy/measure_multihost.py [--workload vfl] [--iterations 40]
[--repeats 2]``. Both runs start the same parties the same way (``sealfl bundle run`` per
party; homo-lr with its key broker, vfl a leader and a follower on the breast preset, where
``--iterations`` counts epochs); only the addresses differ. Prints one line per run and the
ratio of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from federation import provision, write_project, write_vfl_project  # noqa: E402
from netns import lan, skip_reason  # noqa: E402
from test_deploy_multihost import HOSTS, run_federation, run_vfl  # noqa: E402


class _Loopback:
    """The :class:`netns.Lan` interface, on this host's loopback."""

    def __init__(self) -> None:
        from party_processes import PartyProcess

        self._party = PartyProcess
        self.processes: list = []

    def start(self, host, name, argv, logs, *, timeout_s):  # type: ignore[no-untyped-def]
        del host
        party = self._party(name, argv, logs, timeout_s=timeout_s)
        self.processes.append(party)
        return party

    def close(self) -> None:
        for party in self.processes:
            party.stop()


def _once(root: Path, iterations: int, key_bits: int, *, namespaces: bool) -> float:
    options = {"epochs": iterations, "key_bits": key_bits}
    workers = {w: {"epochs": iterations} for w in ("worker-1", "worker-2")}
    if namespaces:
        with lan(HOSTS) as net:
            addresses = {"ps": f"{net.address('ps')}:50070", "kbs": f"{net.address('kbs')}:50080"}
            project = write_project(
                root, addresses=addresses, ps_options=options, worker_options=workers
            )
            federation = provision(root, project)
            started = time.perf_counter()
            run_federation(net, federation, "homo-lr", broker=True)  # type: ignore[arg-type]
            return time.perf_counter() - started
    loop = _Loopback()
    try:
        addresses = {"ps": "127.0.0.1:50170", "kbs": "127.0.0.1:50180"}
        project = write_project(
            root, addresses=addresses, ps_options=options, worker_options=workers
        )
        federation = provision(root, project)
        started = time.perf_counter()
        run_federation(loop, federation, "homo-lr", broker=True)  # type: ignore[arg-type]
        return time.perf_counter() - started
    finally:
        loop.close()


def _once_vfl(root: Path, epochs: int, *, namespaces: bool) -> float:
    from sealfl.fl.vfl.demo import write_data

    data = write_data(root / "data-source", "breast")
    settings = {"preset": "breast", "epochs": epochs}
    if namespaces:
        with lan(["leader", "follower"]) as net:
            address = f"{net.address('leader')}:50090"
            project = write_vfl_project(root, leader_address=address, data=data, settings=settings)
            federation = provision(root, project)
            started = time.perf_counter()
            run_vfl(net, federation)
            return time.perf_counter() - started
    loop = _Loopback()
    try:
        project = write_vfl_project(
            root, leader_address="127.0.0.1:50190", data=data, settings=settings
        )
        federation = provision(root, project)
        started = time.perf_counter()
        run_vfl(loop, federation)  # type: ignore[arg-type]
        return time.perf_counter() - started
    finally:
        loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("homo-lr", "vfl"), default="homo-lr")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if skip_reason() is not None:
        print(f"cannot measure: {skip_reason()}")
        return 2
    times: dict[str, list[float]] = {"loopback": [], "namespaces": []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for kind in ("loopback", "namespaces"):
                root = Path(tmp) / f"{kind}-{k}"
                root.mkdir()
                namespaces = kind == "namespaces"
                if args.workload == "vfl":
                    took = _once_vfl(root, args.iterations, namespaces=namespaces)
                else:
                    took = _once(root, args.iterations, args.key_bits, namespaces=namespaces)
                times[kind].append(took)
                print(f"{kind:10s} run {k + 1}: {took:6.2f} s")
    loop, ns = statistics.median(times["loopback"]), statistics.median(times["namespaces"])
    what = (
        f"vfl breast preset, {args.iterations} epochs, leader + follower"
        if args.workload == "vfl"
        else f"homo-lr {args.iterations} iterations, {args.key_bits}-bit keys, PS + 2 workers "
        "+ broker"
    )
    print(f"{what}: loopback {loop:.2f} s, namespaces {ns:.2f} s, ratio {ns / loop:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
