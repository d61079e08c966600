"""The exception tree: one root, every public error reachable from it and documented."""

import inspect

import sealfl.errors as errors


def test_every_public_error_derives_from_the_root_and_has_a_docstring() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert inspect.isclass(cls) and issubclass(cls, errors.SealflError), name
        assert cls.__doc__, f"{name} has no docstring"


def test_the_module_docstring_draws_every_error() -> None:
    doc = errors.__doc__ or ""
    missing = [name for name in errors.__all__ if name not in doc]
    assert not missing, f"errors missing from the tree drawn in sealfl.errors: {missing}"
