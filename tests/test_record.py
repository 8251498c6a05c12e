"""The value classes keep what @dataclass gave them (smtpmail._record), each field named once.

Reply, RecipientResult, Timeouts, TLSOptions and TLSInfo are immutable and
hashable; SendResult, Options and the CLI's ServerSettings are mutable and
compare field by field; replace() makes changed copies; secrets stay out of
reprs; the frozen ones survive copy and pickle.
"""

from __future__ import annotations

import copy
import pickle

import pytest

from smtpmail._record import Frozen, Record
from smtpmail.cli.server import ServerSettings
from smtpmail.protocol.actions import Options
from smtpmail.protocol.envelope import RecipientResult, SendResult
from smtpmail.protocol.reply import Reply
from smtpmail.transport._base import Timeouts
from smtpmail.transport.tls import TLSInfo, TLSOptions

OK = Reply(250, ("2.1.5 Ok",))


def _frozen_values() -> list[tuple[object, str]]:
    info = TLSInfo(
        "TLSv1.3", "TLS_AES_256_GCM_SHA384", "CN=x", "CN=ca", None, ("x",), "ab", True, "x"
    )
    return [
        (OK, "code"),
        (RecipientResult("b@example.org", OK, True), "address"),
        (Timeouts(1.0), "connect"),
        (TLSOptions(fingerprint="ab"), "fingerprint"),
        (info, "version"),
    ]


# (A field each, by name: the classes the compiled build compiles have no __slots__.)
@pytest.mark.parametrize(
    ("value", "name"), _frozen_values(), ids=[type(v).__name__ for v, _ in _frozen_values()]
)
def test_frozen_values_refuse_changes_and_hash_by_value(value: object, name: str) -> None:
    with pytest.raises(AttributeError):
        setattr(value, name, None)
    with pytest.raises(AttributeError):
        delattr(value, name)
    twin = copy.copy(value)
    assert twin == value and twin is not value
    assert hash(twin) == hash(value)
    assert pickle.loads(pickle.dumps(value)) == value
    assert copy.deepcopy(value) == value
    assert len({value, twin}) == 1


def test_equality_is_by_field_and_by_class() -> None:
    assert Reply(250, ("Ok",)) == Reply(250, ("Ok",))
    assert Reply(250, ("Ok",)) != Reply(251, ("Ok",))
    assert Reply(250) == Reply(250, ("",))
    assert Timeouts() != TLSOptions()
    assert RecipientResult("a@x", OK, True) != RecipientResult("a@x", OK, True, at_rcpt=True)
    assert SendResult("a@x") == SendResult("a@x")
    assert SendResult("a@x") != SendResult("b@x")
    assert Options() == Options() and Options(pipelining=False) != Options()


def test_mutable_values_are_unhashable_and_do_not_share_defaults() -> None:
    one, two = SendResult("a@x"), SendResult("a@x")
    one.recipients["b@x"] = RecipientResult("b@x", OK, True)
    assert two.recipients == {}
    with pytest.raises(TypeError):
        hash(one)
    with pytest.raises(TypeError):
        hash(Options())


def test_replace_makes_a_changed_copy_and_refuses_unknown_fields() -> None:
    base = Timeouts(5.0, 5.0, 5.0, 5.0, 600.0)
    changed = base.replace(command=1.0)
    assert (changed.command, base.command, changed.connect) == (1.0, 5.0, 5.0)
    lmtp = Options(chunking=False).replace(lmtp=True)
    assert (lmtp.lmtp, lmtp.chunking) == (True, False)
    opts = TLSOptions(ca_file="ca.pem").replace(server_hostname="mx.example.org")
    assert (opts.ca_file, opts.server_hostname) == ("ca.pem", "mx.example.org")
    with pytest.raises(TypeError, match="no field"):
        TLSOptions().replace(nonsense=1)


def test_reprs_name_the_fields_but_never_the_password() -> None:
    settings = ServerSettings(host="mail.example.org", user="u", password="s3cret-value")
    assert "s3cret-value" not in repr(settings)
    assert "host='mail.example.org'" in repr(settings)
    assert settings.replace(tls="none").password == "s3cret-value"
    assert repr(Reply(250, ("Ok",))) == "Reply(code=250, lines=('Ok',))"
    assert repr(Timeouts()).startswith("Timeouts(connect=30.0, greeting=300.0")


def test_timeouts_but_is_a_deprecated_name_of_replace() -> None:
    with pytest.warns(DeprecationWarning, match=r"use Timeouts.replace\(\)"):
        changed = Timeouts().but(data_end=1.0)
    assert changed == Timeouts().replace(data_end=1.0)


class _Point(Record):
    x: int
    y: int = 0
    label: str | None = None
    _hidden = frozenset({"label"})


class _Pin(Frozen):
    name: str
    port: int = 25


def test_each_field_is_named_once_as_an_annotation() -> None:
    """The base builds __init__ (positional or by name, with the defaults),
    __slots__, ==, the repr (hidden fields left out) and replace."""
    p = _Point(1, label="secret")
    assert (p.x, p.y, p.label) == (1, 0, "secret")
    assert _Point._fields == ("x", "y", "label")
    assert _Point.__slots__ == ("x", "y", "label")
    assert p == _Point(x=1, y=0, label="secret") and p != _Point(2)
    assert repr(p) == "_Point(x=1, y=0)"
    assert p.replace(y=5) == _Point(1, 5, "secret")
    with pytest.raises(TypeError):
        _Point()  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        p.z = 1  # type: ignore[attr-defined]
    pin = _Pin("mx")
    assert pin == _Pin("mx", 25) and hash(pin) == hash(_Pin("mx"))
    with pytest.raises(AttributeError, match="immutable"):
        pin.port = 26  # type: ignore[misc]


def test_a_written_init_gives_the_fields_by_its_parameters() -> None:
    class Box(Record):
        def __init__(self, items: list[int] | None = None, size: int = 0) -> None:
            self.items = [] if items is None else items
            self.size = size

    assert Box._fields == ("items", "size")
    assert Box() == Box([], 0) and repr(Box(size=2)) == "Box(items=[], size=2)"


def test_a_mutable_default_or_a_default_before_a_required_field_is_refused() -> None:
    with pytest.raises(TypeError, match="mutable default"):

        class Shared(Record):
            items: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="without a default follows"):

        class Order(Record):
            a: int = 1
            b: int


def test_a_default_factory_makes_a_fresh_value_per_instance() -> None:
    from smtpmail._record import field

    class Bag(Record):
        name: str
        items: list[int] = field(default_factory=list)

    one, two = Bag("a"), Bag("b")
    one.items.append(1)
    assert (one.items, two.items) == ([1], [])
    assert Bag("c", [5]).items == [5] and one.replace(name="z").items is one.items


def test_replace_keeps_a_class_own_as_dict() -> None:
    """A class may define as_dict for JSON (DeliveryReport does); replace() still
    copies the fields themselves."""
    from smtpmail.delivery.result import DeliveryReport

    report = DeliveryReport("a@example.org")
    assert report.replace(sender="b@example.org") == DeliveryReport("b@example.org")


def test_a_subclass_of_a_written_init_keeps_it() -> None:
    """Annotations in a subclass of a class with a hand-written __init__ (a test
    double adding a counter) declare attributes: the __init__ stays the base's."""
    from smtpmail.cli.environment import Environment

    class Counting(Environment):
        asked: list[str]

    env = Counting(environ={})
    env.asked = []
    assert Counting._fields == Environment._fields and env.environ == {}


def test_the_generated_init_grows_by_a_name_per_field_not_a_statement() -> None:
    """Compiling the generated __init__ is most of a value class's cost at
    import, paid by every CLI process (ServerSettings has 29 fields): its code
    holds one call whatever the number of fields, a load per field, where a
    statement per field (about 30 bytes of 3.11 bytecode each) cost three times
    the instructions. Defaults, factories and keyword arguments still work."""
    from smtpmail._record import field

    def code_size(count: int) -> int:
        namespace = {"__annotations__": {f"f{i}": "int" for i in range(count)}}
        namespace.update({f"f{i}": i for i in range(count // 2, count)})
        namespace["tags"] = field(default_factory=list)
        namespace["__annotations__"]["tags"] = "list[str]"
        cls = type(Record)(f"Wide{count}", (Record,), namespace)
        value = cls(*range(count // 2))
        assert value.as_dict() == {**{f"f{i}": i for i in range(count)}, "tags": []}
        assert cls(*range(count // 2), tags=["x"]).tags == ["x"]
        assert cls(*range(count // 2)).tags is not value.tags
        return len(cls.__init__.__code__.co_code)

    assert code_size(40) - code_size(10) <= 30 * 8  # a few bytes a field
