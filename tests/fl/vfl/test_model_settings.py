"""Run settings: presets, canonical JSON and digests, refusals naming the field."""

from __future__ import annotations

import json

import pytest

from sealfl.errors import ConfigError
from sealfl.fl.vfl import PRESETS, DefenceSpec, TrainSpec, VflSettings, preset


def test_presets_are_the_measured_configurations() -> None:
    assert PRESETS == ("reference", "default", "breast", "digits")
    ref = preset("reference")
    assert (ref.model.kind, ref.model.init, ref.model.cut_width, ref.model.hidden) == (
        "wide-deep",
        "uniform",
        64,
        256,
    )
    assert (ref.train.optimizer, ref.train.lr, ref.train.batch_size, ref.train.epochs) == (
        "sgd",
        0.1,
        32,
        2,
    )
    assert ref.train.drop_last
    assert preset("default").train.optimizer == "adam"
    with pytest.raises(ConfigError, match=r"vfl preset: expected one of \['reference'"):
        preset("fast")


@pytest.mark.parametrize("name", ["reference", "default", "breast", "digits"])
def test_json_round_trip_is_exact_and_canonical(name: str) -> None:
    settings = preset(name).replace(defence=DefenceSpec(kind="gaussian", sigma=0.5))
    text = settings.to_json()
    assert VflSettings.from_json(text) == settings
    assert VflSettings.from_json(text).digest() == settings.digest()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def test_digests_tell_settings_and_roles_apart() -> None:
    a = preset("breast")
    b = a.replace(train=TrainSpec(**{**a.train.__dict__, "seed": 1}))
    assert a.digest() != b.digest()
    assert a.half_digest("leader") != a.half_digest("follower")
    assert a.half_digest("leader") != b.half_digest("leader")
    assert a.half_digest("leader") == preset("breast").half_digest("leader")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(extra=1), r"unknown keys \['extra'\]"),
        (lambda d: d["model"].update(depth=3), r"unknown keys in model: \['depth'\]"),
        (lambda d: d["train"].pop("lr"), "train: .*missing 1 required keyword-only argument: 'lr'"),
        (lambda d: d["train"].update(lr=-1), r"train.lr must be in \(0, 1000\], got -1"),
        (lambda d: d["train"].update(batch_size=0), r"train.batch_size must be an integer"),
        (lambda d: d["train"].update(drop_last="no"), "train.drop_last must be true or false"),
        (
            lambda d: d["model"].update(kind="cnn"),
            r"model.kind must be one of \['wide-deep', 'mlp'\]",
        ),
        (lambda d: d["model"].update(classes=1), "model.classes must be at least 2"),
        (lambda d: d.update(format="v0"), "format must be 'sealfl-vfl-settings/1'"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(edit, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = preset("default").to_dict()
    edit(doc)
    with pytest.raises(ConfigError, match=message):
        VflSettings.from_json(json.dumps(doc))


def test_not_json_is_refused() -> None:
    with pytest.raises(ConfigError, match="vfl settings: not JSON"):
        VflSettings.from_json(b"\xff")
