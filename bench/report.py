"""Medians, per-run ratios and the targets of issues 9 and 19: Markdown, JSON and a PNG chart."""

from __future__ import annotations

import json
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from run import Sample, Scenario

README_START = "<!-- bench:start -->"
README_END = "<!-- bench:end -->"
#: The README's block: the targets, measured, with the date and the machine.
TARGETS_START = "<!-- bench-targets:start -->"
TARGETS_END = "<!-- bench-targets:end -->"
#: The chart's name beside the results page.
CHART = "benchmark-chart.png"

# The row names (run.py imports them): each says exactly what that side does; a target
# names two of them.
MANY = "smtpmail Client.send_many"
MANY_MYPYC = "smtpmail Client.send_many (mypyc)"
ASYNC_X8_MYPYC = "smtpmail AsyncClient x8 tasks (mypyc)"
ONESHOT_MYPYC = "smtpmail.send() (mypyc)"
#: The scenarios with a row for the mypyc build: the targets a pure-Python build misses.
MYPYC_SCENARIOS = {"1", "2", "7", "8"}
LOOP = "smtpmail Client.send in a loop"
ASYNC_MANY = "smtpmail AsyncClient.send_many"
SOURCE_D = "smtp-source -s 1 -d"
SMTPLIB = "smtplib SMTP.sendmail"
AIOSMTPLIB = "aiosmtplib SMTP.sendmail"
ONESHOT = "smtpmail.send()"
ONESHOT_ASYNC = "smtpmail.send_async()"
SOURCE_EACH = "smtp-source -s 1"
SMTPLIB_EACH = "smtplib, new SMTP per message"
ASYNC_X8 = "smtpmail AsyncClient x8 tasks"
THREADS_X8 = "smtpmail Client x8 threads"
SOURCE_X8 = "smtp-source -s 8 -d"
SMTPLIB_X8 = "smtplib x8 threads"
AIOSMTPLIB_X8 = "aiosmtplib x8 tasks"
CLI_SEND = "smtpmail send (CLI)"
#: Not clients: the same writes and reads with no checks and no results
#: (bench/peers.py floor_loop, floor_async). No Python client spends less CPU.
FLOOR = "floor: bare Python socket loop, same wire"
FLOOR_X8 = "floor: bare asyncio.Protocol x8, same wire"
FLOOR_LOCKSTEP = "floor: bare Python socket loop, lock-step"
#: The interpreter starting and stopping.
BARE_PYTHON = "python -c pass"
#: The CLI scenario's floor: the launcher pip writes for a command, with no package
#: behind it (the interpreter alone; bench/run.py LAUNCHER_ALONE).
LAUNCHER_FLOOR = "pip's launcher alone (no package)"


@dataclass(frozen=True)
class Target:
    scenario: str
    ours: str
    peer: str  # "" for an absolute bound
    bound: float
    text: str
    #: "ratio": ours ÷ peer at least ``bound`` (less RSS counts as more, for "MiB");
    #: "rss": peak RSS at most ``bound`` MiB; "cpu": CPU µs per message at most
    #: ``bound``; "rate": messages per second at least ``bound``.
    kind: str = "ratio"
    #: A row of the same scenario that is no client (a bare loop on the same wire,
    #: the bare interpreter): measured the same way, what no Python client can beat.
    floor: str = ""


TARGETS = [
    # Issue 19: like for like, no scenario where a peer wins.
    Target(
        "2",
        ASYNC_X8,
        SOURCE_X8,
        0.9,
        "8 connections: AsyncClient ≥ 0.9x smtp-source -s 8 -d",
        floor=FLOOR_X8,
    ),
    Target(
        "7",
        MANY,
        SOURCE_D,
        1.0,
        "lock-step server: ≥ 1.0x smtp-source -s 1 -d",
        floor=FLOOR_LOCKSTEP,
    ),
    Target("7", MANY, SMTPLIB, 1.1, "lock-step server: ≥ 1.1x smtplib", floor=FLOOR_LOCKSTEP),
    Target("8", ONESHOT, SOURCE_EACH, 1.0, "connection per message: ≥ 1.0x smtp-source -s 1"),
    Target("8", ONESHOT, SMTPLIB_EACH, 1.2, "connection per message: ≥ 1.2x smtplib"),
    Target("3", MANY, SOURCE_D, 1.0, "5 MB, one connection: ≥ 1.0x smtp-source -s 1 -d MB/s"),
    Target(
        "6", CLI_SEND, "swaks", 1.3, "CLI: ≥ 1.3x swaks processes per second", floor=LAUNCHER_FLOOR
    ),
    Target(
        "6", CLI_SEND, "msmtp", 1.5, "CLI: ≥ 1.5x msmtp processes per second", floor=LAUNCHER_FLOOR
    ),
    Target("1", MANY, "", 60.0, "CPU per message, one connection: ≤ 60 µs", "cpu", FLOOR),
    Target(
        "1",
        MANY_MYPYC,
        "",
        60.0,
        "CPU per message, one connection, mypyc build: ≤ 60 µs",
        "cpu",
        FLOOR,
    ),
    # The same targets for the optional mypyc build, where the pure-Python one misses them.
    Target(
        "2",
        ASYNC_X8_MYPYC,
        SOURCE_X8,
        0.9,
        "8 connections, mypyc: ≥ 0.9x smtp-source -s 8 -d",
        floor=FLOOR_X8,
    ),
    Target(
        "7",
        MANY_MYPYC,
        SOURCE_D,
        1.0,
        "lock-step server, mypyc: ≥ 1.0x smtp-source -s 1 -d",
        floor=FLOOR_LOCKSTEP,
    ),
    Target(
        "7",
        MANY_MYPYC,
        SMTPLIB,
        1.1,
        "lock-step server, mypyc: ≥ 1.1x smtplib",
        floor=FLOOR_LOCKSTEP,
    ),
    Target(
        "8",
        ONESHOT_MYPYC,
        SOURCE_EACH,
        1.0,
        "connection per message, mypyc: ≥ 1.0x smtp-source -s 1",
    ),
    Target("8", ONESHOT_MYPYC, SMTPLIB_EACH, 1.2, "connection per message, mypyc: ≥ 1.2x smtplib"),
    Target("11", MANY, "", 200.0, "50 ms RTT, CHUNKING, one connection: ≥ 200 msgs/s", "rate"),
    # Issue 9's, measured like for like now.
    Target("1", MANY, SOURCE_D, 1.5, "1 KB, one connection: ≥ 1.5x smtp-source -s 1 -d"),
    Target("1", MANY, SMTPLIB, 2.0, "1 KB, one connection: ≥ 2x smtplib"),
    Target("1", MANY, AIOSMTPLIB, 3.0, "1 KB, one connection: ≥ 3x aiosmtplib"),
    Target("2", ASYNC_X8, AIOSMTPLIB_X8, 2.0, "8 connections: ≥ 2x aiosmtplib"),
    Target("3", MANY, SMTPLIB, 2.0, "5 MB, one connection: ≥ 2x smtplib MB/s"),
    Target(
        "4", "smtpmail Client.send(file)", "", 64.0, "1 GiB from a file: peak RSS ≤ 64 MiB", "rss"
    ),
    Target("5", MANY, SMTPLIB, 3.5, "50 ms RTT, one connection: ≥ 3.5x smtplib"),
]


def metric(sc: Scenario, sample: Sample) -> float:
    """One run's headline number: its rate, its MB/s, or its peak RSS (MiB)."""
    if sc.unit == "MiB":
        return sample.rss_kib / 1024
    if sc.unit == "MB/s":
        return sample.mbps
    return sample.rate


def headline(sc: Scenario, samples: list[Sample]) -> float:
    """The median of the runs (for peak RSS: the largest)."""
    values = [metric(sc, s) for s in samples]
    return max(values) if sc.unit == "MiB" else statistics.median(values)


def ratio(sc: Scenario, ours: list[Sample], theirs: list[Sample]) -> float | None:
    """How many times better ``ours`` is: the median of the per-run ratios.

    Run r of one client is paired with run r of the other (they ran minutes
    apart at most, in the same state of the shared machine); less memory
    counts as better for peak RSS. None when no run has both.
    """
    by_run = {s.run: s for s in theirs}
    ratios = []
    for s in ours:
        other = by_run.get(s.run)
        if other is None:
            continue
        a, b = metric(sc, s), metric(sc, other)
        if sc.unit == "MiB":
            a, b = b, a
        ratios.append(a / b if b else float("inf"))
    return statistics.median(ratios) if ratios else None


def summarise(sc: Scenario) -> list[dict[str, Any]]:
    lead = next(iter(sc.samples), None)
    rows = []
    for name, samples in sc.samples.items():
        rows.append(
            {
                "peer": name,
                "runs": len(samples),
                "messages": samples[0].messages,
                "rate": statistics.median(s.rate for s in samples),
                "mbps": statistics.median(s.mbps for s in samples),
                "cpu_us_per_msg": statistics.median(s.cpu_per_message * 1e6 for s in samples),
                "rss_mib": max(s.rss_kib for s in samples) / 1024,
                "value": headline(sc, samples),
                "ratio": None
                if name == lead or lead is None
                else ratio(sc, sc.samples[lead], samples),
            }
        )
    return rows


def check_targets(scenarios: list[Scenario], import_us: float) -> list[dict[str, Any]]:
    """Each target: what smtpmail measured, whether that meets it, and what its
    floor row (if it has one) measured the same way."""
    by_key = {sc.key: sc for sc in scenarios}
    checks = []
    for t in TARGETS:
        sc = by_key.get(t.scenario)
        if sc is None or t.ours not in sc.samples or (t.peer and t.peer not in sc.samples):
            checks.append({"target": t.text, "measured": "not run", "met": None, "floor": ""})
            continue
        measured, met = _measure(t, sc, t.ours)
        floor = _measure(t, sc, t.floor)[0] if t.floor in sc.samples else ""
        checks.append({"target": t.text, "measured": measured, "met": met, "floor": floor})
    checks.append(
        {
            "target": "import smtpmail under 50 ms",
            "measured": f"{import_us / 1000:.1f} ms",
            "met": import_us < 50_000,
            "floor": "",
        }
    )
    return checks


def _measure(t: Target, sc: Scenario, row: str) -> tuple[str, bool | None]:
    """What ``row`` of ``sc`` measured for target ``t``, and whether that meets it."""
    samples = sc.samples[row]
    if t.kind == "rss":
        mib = max(s.rss_kib for s in samples) / 1024
        return f"{mib:.1f} MiB", mib <= t.bound
    if t.kind == "cpu":
        us = statistics.median(s.cpu_per_message * 1e6 for s in samples)
        return f"{us:.0f} µs", us <= t.bound
    if t.kind == "rate":
        rate = statistics.median(s.rate for s in samples)
        return f"{rate:.1f} msgs/s", rate >= t.bound
    r = ratio(sc, samples, sc.samples[t.peer])
    return ("no paired run", None) if r is None else (f"{r:.2f}x", r >= t.bound)


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def markdown(
    scenarios: list[Scenario],
    import_us: float,
    *,
    machine: str,
    when: str,
    command: str,
) -> str:
    lines = [
        f"Measured {when} on {machine}; `{command}`. Server: Postfix `smtp-sink` on "
        "loopback unless the title names another; client and server pinned to different "
        "CPUs. Each smtpmail mode meets the peer mode that does the same work (one reused "
        "connection: `smtp-source -d`; a connection per message: `smtp-source` without "
        "`-d`). Rates are medians of the runs; ratio = smtpmail's first row ÷ that row, "
        "the median of the per-run ratios (for peak RSS: that row ÷ smtpmail). "
        "A ratio under 1.00x means the peer is ahead.",
        "",
    ]
    for sc in scenarios:
        if not sc.samples:
            continue
        taken = " Every run checked: the server took every message the client sent." * (sc.verified)
        lines += [
            f"**Scenario {sc.key}: {sc.title}**{taken}",
            "",
            "| client | runs | msgs/s | MB/s | CPU µs/msg | peak RSS MiB | ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in summarise(sc):
            r = "—" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            lines.append(
                f"| {row['peer']} | {row['runs']} | {_fmt(row['rate'])} | {_fmt(row['mbps'])} | "
                f"{_fmt(row['cpu_us_per_msg'])} | {row['rss_mib']:.1f} | {r} |"
            )
        lines.append("")
    lines += [
        f"`import smtpmail` (python -X importtime, cumulative): {import_us / 1000:.1f} ms",
        "",
    ]
    lines += ["**Targets (issues 19 and 9)**", "", *targets_table(scenarios, import_us)]
    return "\n".join([*lines, "", *NOTES]) + "\n"


def targets_table(scenarios: list[Scenario], import_us: float) -> list[str]:
    """The targets as a Markdown table: what each measured, whether it is met, and
    what the scenario's floor row (no client: a bare loop, the bare interpreter) scores."""
    lines = [
        "| target | measured | met | the floor (no client) |",
        "|---|---:|:---:|---:|",
    ]
    for c in check_targets(scenarios, import_us):
        met = "—" if c["met"] is None else ("yes" if c["met"] else "**no**")
        lines.append(f"| {c['target']} | {c['measured']} | {met} | {c['floor']} |")
    return lines


NOTES = [
    "How each client is used: smtpmail `Client.send_many` (one connection, RFC 2920 "
    "pipelining across messages when the server offers PIPELINING), `Client.send` in a "
    "loop, `AsyncClient.send_many`, and the one-shot `smtpmail.send()` / `send_async()` "
    "(a connection per message); smtplib `SMTP.sendmail` on one connection, or a new "
    "`SMTP` per message; aiosmtplib `SMTP.sendmail` inside `async with`; `smtp-source -s N "
    "[-d] -m COUNT -l SIZE` (`-d`: each connection is kept for the next message; without "
    "it, a new connection per message); x8 rows split the count over 8 threads or tasks, "
    "each with its own connection. The floor rows (scenarios 1, 2 and 7) are not "
    "clients: a bare loop that writes and reads what `Client.send_many` does, with no "
    "check and no result, on a socket or an `asyncio.Protocol`; what a Python process "
    "cannot go below on this wire (interpreter and kernel), so smtpmail's CPU above "
    "it is its own work. swaks, msmtp and the `smtpmail send` CLI (started by "
    "the launcher pip installs) run once per message, taking turns; scenario 6's floor "
    "is that launcher with no package behind it (the interpreter alone). msgs/s for the Python "
    "clients counts from the first connect (imports excluded); CPU µs/msg is the sending's "
    "own CPU time (`time.process_time`, every thread) for the Python clients and the whole "
    "process's for the others (os.wait4); peak RSS is the whole process's (GNU time). "
    "The 50 ms RTT scenarios go through `bench/relay.py`, which holds each chunk 25 ms "
    "each way and delays the TCP handshake as a real link would (the greeting arrives "
    "2 RTT after connect). On a virtual machine absolute numbers move from run to run "
    "(by up to 30%); the per-run ratios, measured side by side, are what to compare.",
]


def draw_chart(scenarios: list[Scenario], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [sc for sc in scenarios if sc.samples]
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 2.2 + 1.9 * len(shown) * 1.1))
    if len(shown) == 1:
        axes = [axes]
    for ax, sc in zip(axes, shown, strict=True):
        rows = summarise(sc)
        names = [r["peer"] for r in rows][::-1]
        values = [r["value"] for r in rows][::-1]
        colors = ["#d62728" if n.startswith("smtpmail") else "#7f7f7f" for n in names]
        ax.barh(names, values, color=colors)
        label = "peak RSS, MiB (lower is better)" if sc.unit == "MiB" else sc.unit
        ax.set_title(f"{sc.key}. {sc.title}: {label}", fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        if sc.unit != "MiB" and max(values) / max(min(values), 1e-9) > 50:
            ax.set_xscale("log")
        for y, v in enumerate(values):
            ax.text(v, y, f" {_fmt(v)}", va="center", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(
    out: Path,
    scenarios: list[Scenario],
    import_us: float,
    *,
    machine: str,
    when: str,
    command: str,
    chart: bool,
    page: Path | None,
    readme: Path | None = None,
) -> None:
    text = markdown(scenarios, import_us, machine=machine, when=when, command=command)
    (out / "results.md").write_text("# smtpmail benchmarks\n\n" + text)
    data = {
        "when": when,
        "machine": machine,
        "command": command,
        "import_us": import_us,
        "scenarios": {
            sc.key: {"title": sc.title, "unit": sc.unit, "rows": summarise(sc)}
            for sc in scenarios
            if sc.samples
        },
        "targets": check_targets(scenarios, import_us),
    }
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    print(text)
    if chart:
        try:
            draw_chart(scenarios, out / "chart.png")
        except ImportError:
            print("matplotlib is missing: no chart (bash bench/run.sh installs it)")
    if page is not None:
        chart_name: str | None = None
        if chart and (out / "chart.png").exists():
            # Beside the page, where a documentation site finds it too.
            chart_name = CHART
            shutil.copyfile(out / "chart.png", page.parent / chart_name)
        update_page(page, text, chart_name)
    if readme is not None:
        targets = "\n".join(
            [f"Measured {when} on {machine}:", "", *targets_table(scenarios, import_us)]
        )
        replace_block(readme, targets + "\n", TARGETS_START, TARGETS_END)


def replace_block(path: Path, text: str, start: str, end: str) -> bool:
    """Replace the text between ``path``'s markers; False (unchanged) if it has none."""
    body = path.read_text()
    if start not in body or end not in body:
        return False
    head, rest = body.split(start, 1)
    path.write_text(f"{head}{start}\n{text}{end}{rest.split(end, 1)[1]}")
    return True


def update_page(page: Path, text: str, chart_name: str | None) -> None:
    """Replace the text between the page's markers (making the page if it has none)."""
    image = f"\n![benchmark chart]({chart_name})" if chart_name else ""
    if page.exists() and replace_block(page, f"{text}{image}\n", README_START, README_END):
        return
    block = f"{README_START}\n{text}{image}\n{README_END}"
    body = (
        "# Benchmarks\n\nRun `bash bench/run.sh` (installs its tools and "
        "servers; `--quick` for a smoke test).\n\n" + block + "\n"
    )
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(body)
