"""``smtpmail send --direct --json``: the same document shape as a relay send
(smtpmail/v1), through the installed console script on the loopback Internet."""

from __future__ import annotations

from pathlib import Path

from support.clirun import run_script
from support.delivery.mxworld import OK2, MXWorld, StartServer
from support.jsoncontract import check


def test_direct_json_has_the_relay_shape(
    world: MXWorld, start: StartServer, tmp_path: Path
) -> None:
    only = start(OK2)  # other.test's only MX: its 4xx recipient is deferred
    only.handler.refuse["later@other.test"] = "451 4.3.0 try later"
    dns = f"{world.nameservers[0][0]}#{world.nameservers[0][1]}"
    r = run_script(
        "smtpmail", "send", "--direct", "--dns-server", dns, "--no-mta-sts",
        "--from", "a@sender.test", "--to", "x@other.test", "--to", "later@other.test",
        "--subject", "direct", "--body", "hello", "--json",
        environ={"XDG_CONFIG_HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)},
    )  # fmt: skip
    assert r.status == 79, r.stderr
    doc = check(r.stdout, 79)
    assert doc["command"] == "send" and doc["mode"] == "direct"
    assert doc["envelope"]["recipients"] == ["x@other.test", "later@other.test"]
    assert doc["message_id"].endswith("@sender.test>")
    x, later = doc["recipients"]
    assert (x["status"], x["mx"]) == ("delivered", "mx.other.test")
    assert x["rcpt_reply"]["code"] == 250 and x["data_reply"]["code"] == 250
    assert (later["status"], later["code"]) == ("deferred", 451)
    assert later["rcpt_reply"]["enhanced"] == "4.3.0" and later["data_reply"] is None
    assert [m.rcpt_tos for m in only.messages] == [["x@other.test"]]
