"""Faster construction of frozen, slotted dataclasses, for the few made once per record.

A frozen dataclass's ``__init__`` sets each field with ``object.__setattr__(self, name, value)``
(its own ``__setattr__`` refuses), which in CPython 3.11 is a slow generic call: building a
``Provenance`` or an ``ArchiveRecord`` that way was a sixth of the tap's CPU. ``maker(cls)``
returns a positional constructor that builds the instance as a *draft*: an instance of a plain
class with the very same slots, whose fields plain attribute stores set (the interpreter's
fastest store), and which then becomes a ``cls`` by ``__class__`` assignment (CPython allows it
only between classes of identical layout, and checks). The result is the very same instance as
``cls(*args)``, at about a third of the cost. It refuses a class whose ``__init__`` does more
than set fields (``__post_init__``, default factories, ``InitVar``), so it cannot skip
anything; ``tests/unit/test_frozen.py`` checks equality with the real constructor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import MemberDescriptorType
from typing import Any, TypeVar, cast

T = TypeVar("T")

_RESERVED = frozenset({"cls", "new", "self", "make", "draft"})


def maker(cls: type[T], positional: tuple[str, ...] = ()) -> type[T]:
    """A stand-in for ``cls(...)``: the same parameters (by position or name, with the same
    defaults), the same instance. Typed as ``type[T]`` so that calls are checked as calls of
    the class; it is only ever to be called.

    ``positional`` names, in order, the fields a caller passes by position (hot paths do, for
    speed). Unless they are the class's leading fields in that order, this raises
    ``TypeError`` at import: a field inserted, removed or moved fails every test instead of
    silently shifting values into the wrong fields."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__: use its constructor")
    fields = dataclasses.fields(cast(Any, cls))
    slots: list[Any] = [getattr(cls, f.name, None) for f in fields]
    if any(
        not f.init
        or f.kw_only
        or f.default_factory is not dataclasses.MISSING
        or f.name in _RESERVED
        or not isinstance(slot, MemberDescriptorType)
        for f, slot in zip(fields, slots, strict=True)
    ):
        raise TypeError(f"{cls.__name__} has fields this maker does not handle")
    names = tuple(f.name for f in fields)
    if names[: len(positional)] != positional:
        raise TypeError(
            f"{cls.__name__}'s fields are {', '.join(names)}; a caller passes "
            f"{', '.join(positional)} by position: update that call"
        )
    draft = type(f"{cls.__name__}Draft", (), {"__slots__": cls.__dict__["__slots__"]})
    namespace: dict[str, Any] = {"cls": cls, "new": object.__new__, "draft": draft}
    params_text, lines = [], []
    for i, field in enumerate(fields):
        if field.default is dataclasses.MISSING:
            params_text.append(field.name)
        else:
            namespace[f"default_{i}"] = field.default
            params_text.append(f"{field.name}=default_{i}")
        lines.append(f"    self.{field.name} = {field.name}")
    source = "\n".join(
        [
            f"def make({', '.join(params_text)}):",
            "    self = new(draft)",
            *lines,
            "    self.__class__ = cls",
            "    return self",
        ]
    )
    exec(source, namespace)  # as dataclasses itself writes __init__
    make: Callable[..., T] = namespace["make"]
    make.__qualname__ = f"{cls.__qualname__}.<maker>"
    try:  # a layout that differs after all (a base with slots of its own) is refused here
        make(*[f.default if f.default is not dataclasses.MISSING else None for f in fields])
    except TypeError as exc:
        raise TypeError(f"{cls.__name__}: {exc}") from None
    return cast("type[T]", make)
