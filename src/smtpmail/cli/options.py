"""A command's options, recorded once and parsed without argparse when that is exact.

A command declares its options with argparse's calls (``add_argument``,
``add_argument_group``, ``add_mutually_exclusive_group``), made on an
:class:`Options`, which records them. :meth:`Options.parse` then decides
a command line alone when it can only mean one thing: options written in
full (``--to ADDR``, ``--to=ADDR``, ``-t ADDR``), values that do not begin
with "-" (or are "-"), each value converted and checked as argparse would.
Anything else, ``--help``, an abbreviated option, ``-vn``, ``--``, a value
that begins with "-", a conflict, a bad value, it leaves to argparse
(``None``): the command's ``add_arguments`` then runs again on a real
parser, which decides, words the error and prints the help. Both paths give
the same values (tests/cli/test_cli_options.py compares them).

Why: a one-message send (cron, scripts, bench scenario 6) is mostly start-up,
and argparse with what it loads (gettext, locale) and the parsers it builds
was 15% of its instructions. ``smtpmail send`` and ``smtpmail sendmail``
parse here first; every other command uses argparse directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from typing import Any, Protocol

    class OptionContainer(Protocol):
        """What ``add_arguments`` functions call: an ArgumentParser, one of its
        groups, or an :class:`Options`."""

        def add_argument(self, *flags: str, **kwargs: Any) -> object: ...

        def add_argument_group(
            self, title: str | None = None, description: str | None = None
        ) -> OptionContainer: ...

        def add_mutually_exclusive_group(self, *, required: bool = False) -> OptionContainer: ...

    class OptionParser(OptionContainer, Protocol):
        """A command's parser: its options, and the help's epilog (shown as written)."""

        epilog: str | None


__all__ = ["Options"]

#: argparse.SUPPRESS's value (argparse is not imported: see above). As a default:
#: an option not given sets no attribute at all.
_SUPPRESS = "==SUPPRESS=="

#: The actions decided here: each takes a value (True) or not (False).
_ACTIONS = {
    "store": True,
    "append": True,
    "store_true": False,
    "store_false": False,
    "store_const": False,
    "append_const": False,
    "count": False,
}
#: What add_argument may be given for the option to be decided here.
_KEYWORDS = frozenset(
    {"action", "dest", "default", "type", "choices", "nargs", "const", "metavar", "help"}
)


class _Option:
    __slots__ = ("action", "choices", "const", "default", "dest", "exclusive", "nargs", "type")

    def __init__(self, flags: Sequence[str], kwargs: dict[str, Any]) -> None:
        long_flags = [flag for flag in flags if flag.startswith("--")]
        named = long_flags or list(flags) or [""]
        self.dest: str = kwargs.get("dest") or named[0].lstrip("-").replace("-", "_")
        self.action: str = kwargs.get("action", "store")
        self.nargs: object = kwargs.get("nargs")
        self.const: object = kwargs.get("const")
        self.type: Callable[[str], object] | None = kwargs.get("type")
        self.choices: Iterable[object] | None = kwargs.get("choices")
        default = kwargs.get("default")
        if default is None and "default" not in kwargs:
            default = {"store_true": False, "store_false": True}.get(self.action)
        self.default: object = default
        self.exclusive: list[_Option] | None = None  # its mutually exclusive group

    def takes_value(self) -> bool:
        return _ACTIONS[self.action]

    def convert(self, text: str) -> object:
        """The value of ``text`` by the option's ``type`` (argparse's _get_value)."""
        return text if self.type is None else self.type(text)

    def value(self, text: str | None) -> object:
        """What argparse stores for ``text`` (None: the option alone, for
        nargs="?"), converted and checked; raises where argparse errs."""
        if text is None:
            value = self.const
            if isinstance(value, str):
                value = self.convert(value)
        else:
            value = self.convert(text)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{value!r} is not a choice")
        return value


class Options:
    """Records a command's options as argparse's calls declare them.

    ``epilog``, which a command sets for its help, is taken and not used:
    help is argparse's to print.
    """

    def __init__(self) -> None:
        self._options: list[_Option] = []
        self._by_flag: dict[str, _Option] = {}
        self._defaults: dict[str, object] = {}
        self._exact = True  # False once an option uses what parse() does not decide
        self.epilog: str | None = None

    # -- what add_arguments calls ----------------------------------------------

    def add_argument(self, *flags: str, **kwargs: Any) -> object:
        self._record(flags, kwargs, None)
        return None

    def add_argument_group(
        self, title: str | None = None, description: str | None = None
    ) -> Options:
        return self  # groups only order the help

    def add_mutually_exclusive_group(self, *, required: bool = False) -> _Exclusive:
        if required:
            self._exact = False
        return _Exclusive(self)

    def set_defaults(self, **defaults: object) -> None:
        """As argparse's: the options of these dests take these defaults too."""
        self._defaults.update(defaults)
        for option in self._options:
            if option.dest in defaults:
                option.default = defaults[option.dest]

    def _record(
        self, flags: Sequence[str], kwargs: dict[str, Any], exclusive: list[_Option] | None
    ) -> None:
        option = _Option(flags, kwargs)
        if (
            not flags
            or not all(flag[:1] == "-" for flag in flags)
            or not _KEYWORDS.issuperset(kwargs)
            or option.action not in _ACTIONS
            or option.nargs not in (None, "?")
            or (option.nargs == "?" and option.action != "store")
        ):
            self._exact = False  # positionals, custom actions, nargs: argparse's
        if exclusive is not None:
            exclusive.append(option)
            option.exclusive = exclusive
        self._options.append(option)
        for flag in flags:
            self._by_flag[flag] = option

    # -- parsing -----------------------------------------------------------------

    def parse(self, argv: Sequence[str]) -> dict[str, object] | None:
        """The values argparse would give for ``argv`` (each option's ``dest``),
        or None when argparse must decide (see the module's docstring)."""
        if not self._exact:
            return None
        values: dict[str, object] = {}
        for option in self._options:  # the first option of a dest sets its default
            if option.dest not in values and option.default != _SUPPRESS:
                values[option.dest] = option.default
        for dest, default in self._defaults.items():
            values.setdefault(dest, default)
        given: set[_Option] = set()
        count = len(argv)
        i = 0
        while i < count:
            arg = argv[i]
            i += 1
            name, equals, text = arg.partition("=") if arg[:2] == "--" else (arg, "", "")
            found = self._by_flag.get(name)
            if found is None or arg == "--":
                return None  # a positional, an abbreviation, -vn, -fADDR, --help...
            option = found
            if text == "--":
                return None  # argparse drops a "--" value (--from=-- stores [])
            value: str | None = text if equals else None
            if option.takes_value():
                if value is None and i < count and _is_value(argv[i]):
                    value = argv[i]
                    i += 1
                if value is None and option.nargs is None:
                    return None  # "expected one argument"
            elif equals:
                return None  # "ignored explicit argument"
            exclusive = option.exclusive
            if exclusive is not None and any(o in given for o in exclusive if o is not option):
                return None  # "not allowed with argument"
            given.add(option)
            try:
                _act(option, value, values)
            except Exception:
                return None
        for option in self._options:
            # argparse converts a str default through type when the option is not given.
            default = option.default
            if (
                option not in given
                and isinstance(default, str)
                and default != _SUPPRESS
                and values.get(option.dest) is default
            ):
                try:
                    values[option.dest] = option.convert(default)
                except Exception:
                    return None
        return values


class _Exclusive:
    """A mutually exclusive group being recorded."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self._members: list[_Option] = []

    def add_argument(self, *flags: str, **kwargs: Any) -> object:
        self._options._record(flags, kwargs, self._members)
        return None

    def add_argument_group(
        self, title: str | None = None, description: str | None = None
    ) -> Options:
        return self._options

    def add_mutually_exclusive_group(self, *, required: bool = False) -> _Exclusive:
        return self._options.add_mutually_exclusive_group(required=required)


def _is_value(arg: str) -> bool:
    """Whether argparse takes ``arg`` as an option's value: not when it begins
    with "-" (an option, or a negative number, which argparse judges by the
    options the parser has), but "-" alone is a value (standard input)."""
    return arg[:1] != "-" or arg == "-"


def _act(option: _Option, value: str | None, values: dict[str, object]) -> None:
    action = option.action
    dest = option.dest
    if action == "store":
        values[dest] = option.value(value)
    elif action == "append":
        values[dest] = [*_items(values.get(dest)), option.value(value)]
    elif action == "store_true":
        values[dest] = True
    elif action == "store_false":
        values[dest] = False
    elif action == "store_const":
        values[dest] = option.const
    elif action == "append_const":
        values[dest] = [*_items(values.get(dest)), option.const]
    else:  # count
        current = values.get(dest)
        values[dest] = (current if isinstance(current, int) else 0) + 1


def _items(current: object) -> list[object]:
    """What an append action copies and extends (argparse's _copy_items)."""
    if current is None:
        return []
    if isinstance(current, list):
        return list(current)
    raise TypeError("an append option's default must be a list or None")
