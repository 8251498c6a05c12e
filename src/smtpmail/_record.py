"""Value classes, each field named once, without the dataclasses module.

``dataclasses`` imports inspect (and with it ast, dis, tokenize...): about a
sixth of a one-message ``smtpmail send``'s start-up (bench scenario 6). So the
value classes derive from :class:`Record` (or :class:`Frozen`, immutable and
hashable) and write their fields once, as annotations with their defaults::

    class Options(Record):
        pipelining: bool = True
        chunk_size: int = 256 * 1024

The base builds what ``@dataclass(slots=True)`` would: an ``__init__`` taking
the fields in order (positionally or by name), ``__slots__``, and over
``_fields`` equality, a repr (``_hidden`` fields left out: secrets),
``replace()`` and ``as_dict()``. A default must be immutable (a mutable one
would be shared by every instance, as dataclasses refuse too): a fresh list or
dict per instance is ``items: list[str] = field(default_factory=list)``. Type checkers
learn the generated ``__init__`` from :func:`typing.dataclass_transform`,
applied only when type checking (typing is not imported at run time).

A class whose ``__init__`` does more than store its arguments (a default read
from the process, a value normalised) writes it; its fields are then that
``__init__``'s parameters, read from its code object, and a subclass keeps that
``__init__`` (its own annotations declare attributes, not fields).
Annotations starting with ``_`` are private storage, not fields.
"""

from __future__ import annotations

from itertools import repeat

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, Self, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_: object) -> Any:
        return lambda cls: cls


__all__ = ["Frozen", "Record", "field"]

_MUTABLE = (list, dict, set, bytearray)


class _Factory:
    """A field's default made fresh for each instance (see :func:`field`)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A default built per instance: ``tags: list[str] = field(default_factory=list)``."""
    return _Factory(default_factory)  # type: ignore[return-value]  # replaced in __init__


class _Fields(type):
    """Makes each subclass of Record a value class (see the module docstring)."""

    def __new__(
        mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kwargs: Any
    ) -> _Fields:
        if ns.get("__module__") == __name__:  # Record and Frozen themselves
            return super().__new__(mcs, name, bases, ns, **kwargs)
        if "_fields" in ns:  # listed by hand with a written __init__ (transport/, for now)
            ns.setdefault("_defaults", None)
            return super().__new__(mcs, name, bases, ns, **kwargs)
        inherited: tuple[str, ...] = tuple(f for b in bases for f in getattr(b, "_fields", ()))
        init = ns.get("__init__")
        if init is not None:
            code = init.__code__
            own = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
            ns["_fields"] = tuple(dict.fromkeys((*inherited, *own)))
            ns["_defaults"] = None  # no generated __init__ to extend
            return super().__new__(mcs, name, bases, ns, **kwargs)
        if any(getattr(b, "_defaults", {}) is None for b in bases):
            # A subclass of a class with a written __init__ keeps that __init__:
            # its annotations only declare attributes (a test double's counters).
            ns["_fields"] = inherited
            return super().__new__(mcs, name, bases, ns, **kwargs)
        annotations = ns.get("__annotations__", {})
        annotated = [n for n, a in annotations.items() if "ClassVar" not in str(a)]
        fields = [n for n in annotated if not n.startswith("_")]
        defaults: dict[str, Any] = {}
        for base in bases:
            defaults.update(getattr(base, "_defaults", None) or {})
        for field in fields:
            if field in ns:
                value = ns.pop(field)  # a class attribute would clash with its slot
                if isinstance(value, _MUTABLE):
                    raise TypeError(f"{name}.{field}: a mutable default is shared; use None")
                defaults[field] = value
        ns["_fields"] = (*inherited, *fields)
        ns["_defaults"] = defaults
        ns.setdefault("__slots__", tuple(n for n in annotated if n not in ns))
        cls = super().__new__(mcs, name, bases, ns, **kwargs)
        cls.__init__ = _make_init(cls, ns["_fields"], defaults)  # type: ignore[misc]
        return cls


def _make_init(cls: type, fields: tuple[str, ...], defaults: dict[str, Any]) -> Any:
    """``def __init__(self, a, b=<default>): _fill(self, (a, b))`` for these fields.

    One call, not a statement per field: compiling the generated source is most
    of what a value class costs at import (about 3.5 million instructions for
    ``cli.server.ServerSettings``' 29 fields written as 29 statements, 1.1
    million as one call), and every process of the CLI pays it for each class
    on its path (bench scenario 6). The defaults are the function's
    ``__defaults__``, so the source names no value.
    """
    with_default = [field for field in fields if field in defaults]
    for field in fields[fields.index(with_default[0]) :] if with_default else ():
        if field not in defaults:
            raise TypeError(f"{cls.__name__}.{field}: a field without a default follows one with")
    factories = tuple(
        (index, default)
        for index, default in enumerate(defaults.get(field) for field in fields)
        if isinstance(default, _Factory)
    )
    store = object.__setattr__  # Frozen refuses plain assignment
    count = len(fields)

    def fill(self: object, values: tuple[Any, ...]) -> None:
        if factories:
            made = list(values)
            for index, factory in factories:
                if made[index] is factory:  # the default: a fresh value per instance
                    made[index] = factory.make()
            values = tuple(made)
        # any() drives the map in C: None from each store, so it runs to the end.
        any(map(store, repeat(self, count), fields, values))

    names = ", ".join(fields)
    body = f"    _fill(self, ({names},))\n" if fields else "    pass\n"
    scope: dict[str, Any] = {"_fill": fill}
    # The names are the class's own identifiers (annotations); nothing else is run.
    exec(f"def __init__(self, {names}):\n{body}", scope)  # noqa: S102
    init = scope["__init__"]
    init.__defaults__ = tuple(defaults[field] for field in with_default) or None
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


@dataclass_transform(eq_default=True, field_specifiers=(field,))
class Record(metaclass=_Fields):
    """Field-wise ``==``, a ``Name(field=value, ...)`` repr, ``replace`` and ``as_dict``."""

    __slots__ = ()

    #: The fields, in ``__init__`` order (built: see the module docstring).
    _fields: ClassVar[tuple[str, ...]] = ()
    #: Fields left out of the repr (secrets: ``field(repr=False)`` of a dataclass).
    _hidden: ClassVar[frozenset[str]] = frozenset()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Record)
        return self._values() == other._values()

    # Mutable values are unhashable, as a dataclass with eq and not frozen.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}" for name in self._fields if name not in self._hidden
        )
        return f"{type(self).__name__}({shown})"

    def as_dict(self) -> dict[str, Any]:
        """The fields by name (shallow, unlike dataclasses.asdict)."""
        return {name: getattr(self, name) for name in self._fields}

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (what dataclasses.replace did)."""
        unknown = set(changes) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        # The fields themselves, not as_dict(), which a class may define for JSON.
        values = {name: getattr(self, name) for name in self._fields}
        values.update(changes)
        return type(self)(**values)


class Frozen(Record):
    """A :class:`Record` that cannot change once built, hence hashable.

    (Type checkers are not told: a frozen dataclass_transform class cannot
    derive from Record's non-frozen one. Setting a field raises at run time.)
    """

    __slots__ = ()

    def _init(self, **values: Any) -> None:
        """Set the fields from a hand-written ``__init__`` (plain assignment is refused)."""
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __hash__(self) -> int:  # type: ignore[override]  # Record's is None
        return hash(self._values())

    def __reduce__(self) -> tuple[type[Self], tuple[Any, ...]]:
        # copy and pickle rebuild through __init__, since setattr is refused.
        return (type(self), self._values())
