"""The public surface of ``sealfl.seal`` is exactly ``__all__``, and every export is documented."""

import inspect
import types

import sealfl.seal as seal


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(seal).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(seal.__all__) == public


def test_every_exported_class_and_function_has_a_docstring() -> None:
    for name in seal.__all__:
        value = getattr(seal, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"sealfl.seal.{name} has no docstring"
