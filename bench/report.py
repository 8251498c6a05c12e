"""Medians, ratios and the targets of issue 9, written as Markdown, JSON and a PNG chart."""

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
#: The chart's name beside the results page.
CHART = "benchmark-chart.png"


@dataclass(frozen=True)
class Target:
    scenario: str
    ours: str
    peer: str  # "" for an absolute bound
    ratio: float  # smtpmail ÷ peer must be at least this (or RSS at most, for "MiB")
    text: str


TARGETS = [
    Target("1", "smtpmail", "smtp-source", 1.5, "1 KB, one connection: ≥ 1.5x smtp-source"),
    Target("1", "smtpmail", "smtplib", 2.0, "1 KB, one connection: ≥ 2x smtplib"),
    Target("1", "smtpmail", "aiosmtplib", 3.0, "1 KB, one connection: ≥ 3x aiosmtplib"),
    Target("2", "smtpmail async x8", "aiosmtplib x8", 2.0, "8 connections: ≥ 2x aiosmtplib"),
    Target(
        "2", "smtpmail async x8", "smtp-source -s 8", 0.5, "8 connections: ≥ 0.5x smtp-source -s 8"
    ),
    Target("3", "smtpmail", "smtp-source", 0.8, "5 MB messages: ≥ 0.8x smtp-source MB/s"),
    Target("3", "smtpmail", "smtplib", 2.0, "5 MB messages: ≥ 2x smtplib MB/s"),
    Target("4", "smtpmail", "", 64.0, "1 GiB from a file: peak RSS ≤ 64 MiB"),
    Target("5", "smtpmail", "smtplib", 3.5, "50 ms RTT: ≥ 3.5x smtplib"),
    Target("6", "smtpmail send (CLI)", "swaks", 1.0, "CLI: at least as many per second as swaks"),
]


def metric(sc: Scenario, samples: list[Sample]) -> float:
    """The scenario's headline number: median rate, median MB/s, or peak RSS (MiB)."""
    if sc.unit == "MiB":
        return max(s.rss_kib for s in samples) / 1024
    if sc.unit == "MB/s":
        return statistics.median(s.mbps for s in samples)
    return statistics.median(s.rate for s in samples)


def ratio(sc: Scenario, ours: float, theirs: float) -> float:
    """How many times better smtpmail is (less memory counts as better for RSS)."""
    if sc.unit == "MiB":
        return theirs / ours if ours else float("inf")
    return ours / theirs if theirs else float("inf")


def summarise(sc: Scenario) -> list[dict[str, Any]]:
    lead = next(iter(sc.samples), None)
    lead_value = metric(sc, sc.samples[lead]) if lead else 0.0
    rows = []
    for name, samples in sc.samples.items():
        value = metric(sc, samples)
        rows.append(
            {
                "peer": name,
                "runs": len(samples),
                "messages": samples[0].messages,
                "rate": statistics.median(s.rate for s in samples),
                "mbps": statistics.median(s.mbps for s in samples),
                "cpu_ms_per_msg": statistics.median(s.cpu / s.messages * 1000 for s in samples),
                "rss_mib": max(s.rss_kib for s in samples) / 1024,
                "value": value,
                "ratio": None if name == lead else ratio(sc, lead_value, value),
            }
        )
    return rows


def check_targets(scenarios: list[Scenario], import_us: float) -> list[dict[str, Any]]:
    by_key = {sc.key: sc for sc in scenarios}
    checks = []
    for t in TARGETS:
        sc = by_key.get(t.scenario)
        if sc is None or t.ours not in sc.samples or (t.peer and t.peer not in sc.samples):
            checks.append({"target": t.text, "measured": "not run", "met": None})
            continue
        ours = metric(sc, sc.samples[t.ours])
        if not t.peer:
            checks.append({"target": t.text, "measured": f"{ours:.1f} MiB", "met": ours <= t.ratio})
            continue
        r = ratio(sc, ours, metric(sc, sc.samples[t.peer]))
        checks.append({"target": t.text, "measured": f"{r:.2f}x", "met": r >= t.ratio})
    checks.append(
        {
            "target": "import smtpmail under 50 ms",
            "measured": f"{import_us / 1000:.1f} ms",
            "met": import_us < 50_000,
        }
    )
    return checks


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}" if x >= 10 else f"{x:,.2f}"


def markdown(
    scenarios: list[Scenario],
    sanity: list[dict[str, Any]],
    import_us: float,
    *,
    machine: str,
    when: str,
    command: str,
) -> str:
    lines = [
        f"Measured {when} on {machine}; `{command}`. Server: Postfix `smtp-sink` on "
        "loopback, client and server pinned to different CPUs. Medians of the runs shown; "
        "ratio = smtpmail's first row ÷ the peer (for peak RSS: peer ÷ smtpmail).",
        "",
    ]
    for sc in scenarios:
        if not sc.samples:
            continue
        lines += [
            f"**Scenario {sc.key}: {sc.title}**",
            "",
            "| client | runs | msgs/s | MB/s | CPU ms/msg | peak RSS MiB | ratio |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in summarise(sc):
            r = "—" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            lines.append(
                f"| {row['peer']} | {row['runs']} | {_fmt(row['rate'])} | {_fmt(row['mbps'])} | "
                f"{row['cpu_ms_per_msg']:.3f} | {row['rss_mib']:.1f} | {r} |"
            )
        lines.append("")
    lines += [
        f"`import smtpmail` (python -X importtime, cumulative): {import_us / 1000:.1f} ms",
        "",
    ]
    if sanity:
        lines += [
            "**Sanity check against aiosmtpd** (1 KB messages, one connection)",
            "",
            "| client | msgs/s | received |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {r['peer']} | {_fmt(r['rate'])} | {r['received']}/{r['sent']} |" for r in sanity
        ]
        lines.append("")
    lines += ["**Targets (issue 9)**", "", "| target | measured | met |", "|---|---:|:---:|"]
    for c in check_targets(scenarios, import_us):
        met = "—" if c["met"] is None else ("yes" if c["met"] else "**no**")
        lines.append(f"| {c['target']} | {c['measured']} | {met} |")
    return "\n".join([*lines, "", *NOTES]) + "\n"


NOTES = [
    "How each client is used: smtpmail `Client.send_many` (one connection, RFC 2920 "
    "pipelining across messages: one round trip per message), `smtpmail send()` is "
    "`Client.send` in a loop; smtplib `SMTP.sendmail` on one connection (and one connection "
    "per message, a tenth of the count); aiosmtplib `SMTP.sendmail` inside `async with`; "
    "8-connection rows split the count over 8 threads or tasks; `smtp-source -s N -m N -l "
    "SIZE`; swaks and msmtp (and the `smtpmail send` CLI, started by the launcher that "
    "pip installs as `smtpmail`) run once per message, 50 times "
    "(in scenario 6 the peers take turns, one process each, so that a slow moment of the "
    "machine falls on all of them). "
    "msgs/s for the Python clients counts from the first connect (imports excluded); "
    "CPU time and peak RSS are the whole client process's (os.wait4, GNU time). "
    "Scenario 5 goes through `bench/relay.py`, which holds each chunk 25 ms each way. "
    "Numbers on a shared machine move from run to run; the ratios, measured side by side "
    "in the same run, are what to compare.",
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
    sanity: list[dict[str, Any]],
    import_us: float,
    *,
    machine: str,
    when: str,
    command: str,
    chart: bool,
    readme: Path | None,
) -> None:
    text = markdown(scenarios, sanity, import_us, machine=machine, when=when, command=command)
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
        "sanity": sanity,
        "targets": check_targets(scenarios, import_us),
    }
    (out / "results.json").write_text(json.dumps(data, indent=1) + "\n")
    print(text)
    if chart:
        try:
            draw_chart(scenarios, out / "chart.png")
        except ImportError:
            print("matplotlib is missing: no chart (bash bench/run.sh installs it)")
    if readme is not None:
        update_readme(readme, text)
        if (out / "chart.png").exists():
            # Beside the page, where the documentation site finds it.
            shutil.copyfile(out / "chart.png", readme.parent / CHART)


def update_readme(readme: Path, text: str) -> None:
    """Replace the text between the markers of the page (docs/benchmarks.md),
    appending a Benchmarks section if they are absent."""
    body = readme.read_text() if readme.exists() else ""
    block = f"{README_START}\n{text}\n![benchmark chart]({CHART})\n{README_END}"
    if README_START in body and README_END in body:
        head, rest = body.split(README_START, 1)
        tail = rest.split(README_END, 1)[1]
        body = head + block + tail
    else:
        body = (
            body.rstrip("\n")
            + ("\n\n" if body else "")
            + (
                "## Benchmarks\n\nRun `bash bench/run.sh` (installs its tools, takes a few "
                "minutes; `--quick` for a smoke test).\n\n" + block + "\n"
            )
        )
    readme.write_text(body)
