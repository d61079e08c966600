"""The ray backend (only where Ray is installed: the ``sealfl[ray]`` extra is never required).

The same hfl simulation (6 clients, 4 sampled per round, dropouts) on two Ray actors and in
this process ends with the same model bit for bit: the actors run the same client code, and
the sampling and dropouts depend on the seed only. The backend stops the Ray it started.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from sealfl.fl.hfl.settings import Settings  # noqa: E402
from sealfl.sim import LocalBackend  # noqa: E402
from sealfl.sim.hfl import HflPopulation, HflSimOptions, run_hfl_sim  # noqa: E402
from sealfl.sim.ray_backend import RayBackend  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def test_ray_actors_train_the_same_model_as_the_local_pool(tmp_path: Path) -> None:
    settings = Settings(model="small-cnn", rounds=3, local_steps=2)
    options = HflSimOptions(
        population=HflPopulation(settings=settings, clients=6),
        per_round=4,
        dropout=0.2,
        out=tmp_path / "ray",
    )
    backend = RayBackend(workers=2)
    try:
        on_ray = run_hfl_sim(options, backend, on_line=lambda _: None)
    finally:
        backend.close()
    assert not ray.is_initialized()  # the backend started Ray, so it stopped it
    local = run_hfl_sim(
        HflSimOptions(population=options.population, per_round=4, dropout=0.2),
        LocalBackend(1),
        on_line=lambda _: None,
    )
    assert on_ray.completed and local.completed
    assert on_ray.model.tobytes() == local.model.tobytes()
    assert on_ray.accuracy == local.accuracy
