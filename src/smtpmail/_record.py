"""Small value classes without the dataclasses module.

``dataclasses`` imports inspect (and with it ast, dis, tokenize...): about a
sixth of a one-message ``smtpmail send``'s start-up (bench scenario 6). The
classes a plain send loads derive from :class:`Record` or :class:`Frozen`
instead and write their own ``__init__``; these bases give them what
``@dataclass`` did: equality, a repr, ``replace()`` and ``as_dict()`` over the
names in ``_fields`` (which must match the ``__init__`` parameters).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any, Self

__all__ = ["Frozen", "Record"]


class Record:
    """Field-wise ``==``, a ``Name(field=value, ...)`` repr, ``replace`` and ``as_dict``."""

    __slots__ = ()

    #: The fields, in ``__init__`` order.
    _fields: tuple[str, ...] = ()
    #: Fields left out of the repr (secrets: ``field(repr=False)`` of a dataclass).
    _hidden: frozenset[str] = frozenset()

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
        values = self.as_dict()
        values.update(changes)
        return type(self)(**values)


class Frozen(Record):
    """A :class:`Record` that cannot change once built, hence hashable."""

    __slots__ = ()

    def _init(self, **values: Any) -> None:
        """Set the fields from ``__init__`` (plain assignment is refused)."""
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
