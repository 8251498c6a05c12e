"""``smtpmail send --direct``'s hook (smtpmail.cli.direct) against the loopback Internet."""

from __future__ import annotations

import argparse
import io
import json

from smtpmail import Envelope
from smtpmail.cli import direct, jsondoc
from smtpmail.cli.environment import Environment
from support.delivery.mxworld import BUSY, OK, OK2, MXWorld, StartServer
from support.hostile.scripted import ScriptedServer, drop_after_dot

MESSAGE = b"From: a@sender.test\r\nSubject: cli\r\n\r\nbody\r\n"


def run(world: MXWorld, *argv: str, recipients: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verbose", "-v", action="store_true")
    direct.add_arguments(parser)
    dns = f"{world.nameservers[0][0]}#{world.nameservers[0][1]}"
    args = parser.parse_args(["--direct", "--dns-server", dns, "--no-mta-sts", *argv])
    out, err = io.StringIO(), io.StringIO()
    env = Environment(argv=["smtpmail"], stdout=out, stderr=err, environ={})
    if args.json:  # as smtpmail.cli.main does for --json
        env.document = jsondoc.start("send")
    status = direct.run(args, env, MESSAGE, Envelope("a@sender.test", recipients))
    if env.document is not None:
        jsondoc.finish(env, env.document, status)
    return status, out.getvalue()


def test_table_shows_each_recipient(world: MXWorld, start: StartServer) -> None:
    ok = start(OK)
    ok.handler.refuse["bad@failover.test"] = "550 5.1.1 no such user"
    status, out = run(
        world, "-v", recipients=["good@failover.test", "bad@failover.test", "x@nullmx.test"]
    )
    assert status == 79  # some delivered, some not
    lines = out.splitlines()
    assert lines[0].split() == ["RECIPIENT", "STATUS", "MX", "CODE", "STATUS-CODE", "TLS", "DETAIL"]
    good = next(line for line in lines if line.startswith("good@"))
    assert "delivered" in good and "ok.failover.test" in good and " 250 " in good
    bad = next(line for line in lines if line.startswith("bad@"))
    assert "failed" in bad and "5.1.1" in bad and "no such user" in bad
    null = next(line for line in lines if line.startswith("x@nullmx.test"))
    assert "failed" in null and "5.1.10" in null
    assert any(line.strip().startswith("tried down.failover.test") for line in lines)
    assert len(ok.messages) == 1


def test_json_report(world: MXWorld, start: StartServer) -> None:
    start(BUSY)  # the second MX accepts
    status, out = run(world, "--json", recipients=["x@failover.test"])
    data = json.loads(out)
    assert status == 0 and data["ok"] is True and data["exit_status"] == 0
    (rcpt,) = data["recipients"]
    assert rcpt["status"] == "delivered" and rcpt["mx"] == "busy.failover.test"
    assert rcpt["code"] == 250 and rcpt["mx_address"] == world.ip(BUSY)
    assert rcpt["hosts_tried"][0].startswith("down.failover.test")
    assert rcpt["rcpt_reply"]["code"] == 250 and rcpt["data_reply"]["code"] == 250


def test_exit_status_when_nothing_is_delivered(world: MXWorld) -> None:
    assert run(world, recipients=["x@failover.test"])[0] == 75  # every host down: later
    assert run(world, recipients=["x@nosuch.test"])[0] == 67  # NXDOMAIN: never


def test_smtpmail_send_direct(world: MXWorld, start: StartServer, tmp_path) -> None:
    """The real command line: compose, look up the MX hosts, deliver, print JSON."""
    from smtpmail.cli import main
    from support.clirun import fake_env

    busy, ok = start(BUSY), start(OK)
    busy.handler.refuse["later@failover.test"] = "451 4.3.0 try later"
    env = fake_env(tmp_path)
    dns = f"{world.nameservers[0][0]}#53"
    status = main(
        ["send", "--direct", "--dns-server", dns, "--no-mta-sts", "--ehlo-name", "me.test",
         "--from", "a@sender.test", "--to", "x@failover.test", "--to", "later@failover.test",
         "--subject", "direct", "--body", "hello", "--json"],
        env,
    )  # fmt: skip
    data = json.loads(env.stdout.getvalue())
    assert status == 0, env.stderr.getvalue()
    x, later = data["recipients"]
    assert (x["status"], x["mx"]) == ("delivered", "busy.failover.test")
    # The 4xx recipient went on to the next host (as Postfix), and only it.
    assert (later["status"], later["mx"]) == ("delivered", "ok.failover.test")
    assert [m.rcpt_tos for m in busy.messages] == [["x@failover.test"]]
    assert [m.rcpt_tos for m in ok.messages] == [["later@failover.test"]]
    assert b"EHLO me.test" in busy.commands()


def test_a_dns_server_that_is_not_an_address_is_a_usage_error(tmp_path) -> None:
    from smtpmail.cli import main
    from support.clirun import fake_env

    argv = ["--direct", "--from", "a@s.test", "--to", "b@t.test", "--body", "x"]
    for spec in ("dns.example", "127.0.0.1:53", "127.0.0.1#70000"):
        for command in (["send", *argv], ["send", *argv, "--queue", "--queue-dir",
                                          str(tmp_path / "q")]):  # fmt: skip
            env = fake_env(tmp_path)
            assert main([*command, "--dns-server", spec], env) == 64, spec
            assert f"--dns-server {spec!r}" in env.stderr.getvalue()


def test_direct_takes_no_relay_or_credentials(tmp_path) -> None:
    from smtpmail.cli import main
    from support.clirun import fake_env

    env = fake_env(tmp_path)
    argv = ["send", "--direct", "--from", "a@s.test", "--to", "b@t.test", "--body", "x"]
    assert main([*argv, "--server", "smtp://relay.test"], env) == 64
    assert "without a relay or AUTH: drop --server" in env.stderr.getvalue()
    env = fake_env(tmp_path)
    assert main([*argv, "--user", "me"], env) == 64
    assert "drop --user" in env.stderr.getvalue()


def test_json_row_names_the_only_mx_that_deferred(world: MXWorld, start: StartServer) -> None:
    only = start(OK2)  # other.test's only MX
    only.handler.refuse["x@other.test"] = "451 4.3.0 try later"
    status, out = run(world, "--json", recipients=["x@other.test"])
    (row,) = json.loads(out)["recipients"]
    assert status == 75
    assert (row["status"], row["mx"], row["mx_address"]) == (
        "deferred",
        "mx.other.test",
        world.ip(OK2),
    )
    assert (row["code"], row["enhanced"]) == (451, "4.3.0") and "try later" in row["detail"]
    assert row["rcpt_reply"]["code"] == 451 and row["data_reply"] is None
    status, out = run(world, recipients=["x@other.test"])
    assert f"mx.other.test [{world.ip(OK2)}]" in out.splitlines()[1]


def test_a_hang_up_after_the_dot_is_possibly_delivered(world: MXWorld) -> None:
    with ScriptedServer(drop_after_dot(), host=world.ip(OK2), port=25) as server:
        status, out = run(world, "--json", recipients=["x@other.test"])
        (row,) = json.loads(out)["recipients"]
        assert status == 75 and row["status"] == "deferred" and row["possibly_delivered"] is True
        assert row["mx"] == "mx.other.test" and "may have been delivered" in row["detail"]
        status, out = run(world, recipients=["x@other.test"])
        assert "deferred, possibly delivered" in out.splitlines()[1]
        assert len(server.messages) == 2  # both runs' data arrived; neither was answered
