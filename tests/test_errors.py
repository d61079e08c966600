"""The exception tree: one root, every public error reachable from it and documented."""

import inspect
import re

import sealfl.errors as errors

_TREE_LINE = re.compile(r"^(?P<indent>[\s│├└─]*?)(?P<name>[A-Z]\w*Error)\b")


def test_every_public_error_derives_from_the_root_and_has_a_docstring() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert inspect.isclass(cls) and issubclass(cls, errors.SealflError), name
        assert cls.__doc__, f"{name} has no docstring"


def test_all_lists_every_error_the_module_defines() -> None:
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and value.__module__ == errors.__name__
    }
    assert defined == set(errors.__all__)


def test_the_module_docstring_draws_the_tree_as_it_is() -> None:
    """Each error appears once in the drawing, under the class it derives from."""
    drawn: dict[str, str | None] = {}
    parents: list[tuple[int, str]] = []  # (indent, name) of the open ancestors
    for line in (errors.__doc__ or "").splitlines():
        match = _TREE_LINE.match(line)
        if match is None:
            continue
        indent, name = len(match["indent"]), match["name"]
        while parents and parents[-1][0] >= indent:
            parents.pop()
        assert name not in drawn, f"{name} is drawn twice"
        drawn[name] = parents[-1][1] if parents else None
        parents.append((indent, name))
    assert set(drawn) == set(errors.__all__)
    for name, parent in drawn.items():
        base = getattr(errors, name).__bases__[0]
        expected = None if base is Exception else base.__name__
        assert parent == expected, f"{name} is drawn under {parent}, but derives from {expected}"
