"""One flow at a time on a session: the check made when a flow starts.

A :class:`~smtpmail.protocol.session.Session` flow is a generator suspended
wherever it waits for the server. Starting a second flow while one is
suspended would interleave two dialogues on one connection (the replies
meant for one paired with the other's commands), so it raises
:class:`~smtpmail.errors.LocalProtocolError` (h11's name for "we misused the
protocol"). A flow that runs another to its end inside itself (``hello``
runs ``command``) is nested, not interleaved: the outer one is running, not
suspended, when the inner one starts.

A flow ends when it returns, raises, or is closed (``flow.close()``; a
dropped flow is closed when it is collected): the session is then free.

"Suspended" is read from the generator this module makes around each flow
(``gi_frame``/``gi_running``), not from the flow a method returned: that one
may be compiled (the optional mypyc build), and mypyc's generators have
neither attribute.
"""

from __future__ import annotations

from _weakref import ref  # weakref.ref itself: weakref.py's start-up time is not needed
from collections.abc import Callable, Generator

from smtpmail.errors import LocalProtocolError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any, Concatenate, ParamSpec, TypeVar

    P = ParamSpec("P")
    S = TypeVar("S", bound="Guarded")
    G = TypeVar("G", bound=Generator[Any, Any, Any])

__all__ = ["Guarded", "one_at_a_time"]


class Guarded:
    """Mixed into a class whose methods marked :func:`one_at_a_time` return flows."""

    #: The flow under way (innermost first started): its guarding generator, or None.
    _flow_under_way: ref[Generator[Any, Any, Any]] | None = None


def one_at_a_time(method: Callable[Concatenate[S, P], G]) -> Callable[Concatenate[S, P], G]:
    """Mark a method returning a flow: starting it while another flow of the
    same object is suspended raises LocalProtocolError."""
    name = method.__name__

    def guarded(self: S, /, *args: P.args, **kwargs: P.kwargs) -> G:
        # The guarding generator learns its own (weak: no cycle) reference through `me`.
        me: list[ref[Generator[Any, Any, Any]]] = []
        run = _run(self, name, method(self, *args, **kwargs), me)
        me.append(ref(run))
        return run  # type: ignore[return-value]

    guarded.__name__ = name
    guarded.__qualname__ = method.__qualname__
    guarded.__doc__ = method.__doc__
    return guarded


def _run(
    owner: Guarded,
    name: str,
    flow: Generator[Any, Any, Any],
    me: list[ref[Generator[Any, Any, Any]]],
) -> Generator[Any, Any, Any]:
    outer = owner._flow_under_way
    run = None if outer is None else outer()
    # (gi_frame is None once a generator finished; gi_running while it executes)
    if getattr(run, "gi_frame", None) is not None and not getattr(run, "gi_running", True):
        flow.close()
        raise LocalProtocolError(
            f"cannot start {name}() while another flow of this session is suspended "
            "waiting for the server: drive one flow to its end (or close it) first"
        )
    owner._flow_under_way = me[0]
    try:
        return (yield from flow)
    finally:
        owner._flow_under_way = outer
