"""The inbox's two pages, rendered on the server: the list and one message.

Every value from a message goes through :func:`html.escape`; the HTML body
itself is never placed in these pages: it is served on its own, sandboxed,
into an ``<iframe sandbox>`` (see ``web.py``). The pages' few scripts come
from ``static/inbox.js`` (no inline script, so the page's CSP forbids all
inline script).
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

__all__ = ["list_page", "message_page", "row"]

TABS = (
    ("html", "HTML"),
    ("text", "Text"),
    ("headers", "Headers"),
    ("raw", "Raw"),
    ("mime", "MIME"),
    ("attachments", "Attachments"),
    ("session", "Session"),
    ("lint", "Lint"),
    ("release", "Release"),
)


def _page(title: str, token: str, body: str, page: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="inbox-token" content="{escape(token)}">'
        f"<title>{escape(title)}</title>"
        '<link rel="stylesheet" href="/static/inbox.css">'
        '<script src="/static/inbox.js" defer></script></head>'
        f'<body data-page="{page}">{body}</body></html>\n'
    )


def _size(octets: int) -> str:
    if octets < 1024:
        return f"{octets} B"
    if octets < 1024 * 1024:
        return f"{octets / 1024:.1f} kB"
    return f"{octets / 1024 / 1024:.1f} MB"


def when(iso: str) -> str:
    """2026-12-01T00:21:27Z as 2026-12-01 00:21:27 UTC (inbox.js shows local time)."""
    return iso.replace("T", " ").replace("Z", " UTC")


def row(m: dict[str, Any]) -> str:
    """One message in the list (inbox.js builds the same from the JSON)."""
    url = f"/messages/{quote(m['id'])}"
    marks = ""
    if m["attachments"]:
        marks = f'<span class="att" title="attachments">{m["attachments"]} att.</span>'

    lint = m["lint"]
    if lint["errors"] or lint["warnings"]:
        kind = "error" if lint["errors"] else "warning"
        n = lint["errors"] + lint["warnings"]
        marks += f' <span class="badge {kind}" title="lint findings">{n}</span>'
    return (
        f'<tr class="message{"" if m["read"] else " unread"}" data-id="{escape(m["id"])}">'
        f'<td><time datetime="{escape(m["received"])}">{escape(when(m["received"]))}</time></td>'
        f'<td class="from">{escape(m["from"])}</td>'
        f'<td class="to">{escape(", ".join(m["to"]))}</td>'
        f'<td class="subject"><a href="{escape(url)}">{escape(m["subject"]) or "(no subject)"}'
        f'</a></td><td class="size">{_size(m["size"])}</td>'
        f'<td class="marks">{marks}</td></tr>'
    )


def _header(smtp: str, query: str = "") -> str:
    return (
        '<header><a class="brand" href="/">smtpmail inbox</a>'
        f'<span class="where">SMTP on {escape(smtp)}</span>'
        '<form method="get" action="/" role="search">'
        f'<input type="search" name="q" value="{escape(query)}" '
        'placeholder="Search from, to, subject, body" aria-label="Search">'
        '<button type="submit">Search</button></form></header>'
    )


def list_page(messages: list[dict[str, Any]], token: str, smtp: str, query: str) -> str:
    rows = "".join(row(m) for m in messages)
    empty = "" if messages else ' class="shown"'
    body = (
        _header(smtp, query)
        + '<main><div class="toolbar">'
        + f'<span id="count">{len(messages)} message(s)</span>'
        + '<button type="button" id="delete-all" class="danger">Delete all</button></div>'
        + '<table id="messages"><thead><tr><th>Received</th><th>From</th><th>To</th>'
        + "<th>Subject</th><th>Size</th><th></th></tr></thead>"
        + f"<tbody>{rows}</tbody></table>"
        + f'<p id="empty"{empty}>No messages. Send one to {escape(smtp)}.</p></main>'
    )
    return _page("smtpmail inbox", token, body, "list")


def message_page(m: dict[str, Any], raw: str, token: str, smtp: str, release: str | None) -> str:
    mid = quote(m["id"])
    api = f"/api/v1/messages/{mid}"
    first = "html" if m["has_html"] else "text"
    tabs = "".join(
        f'<button type="button" role="tab" data-tab="{key}" '
        f'aria-selected="{"true" if key == first else "false"}">{label}'
        f"{_count(m, key)}</button>"
        for key, label in TABS
    )
    panels = {
        "html": _html_panel(m, mid),
        "text": f"<pre>{escape(m['text'])}</pre>" if m["text"] is not None
        else "<p>This message has no plain-text body.</p>",
        "headers": "<table class=\"headers\">" + "".join(
            f"<tr><th>{escape(h['name'])}</th><td>{escape(h['value'])}</td></tr>"
            for h in m["headers"]) + "</table>",
        "raw": f"<p><a href=\"{api}/raw\" download=\"message.eml\">Download .eml</a></p>"
        f"<pre class=\"raw\">{escape(raw)}</pre>",
        "mime": f"<ul class=\"tree\">{_tree(m['mime'])}</ul>",
        "attachments": _attachments(m, api),
        "session": _session(m["session"]),
        "lint": _lint(m["lint_findings"]),
        "release": _release(release),
    }  # fmt: skip
    sections = "".join(
        f'<section class="panel" id="tab-{key}" role="tabpanel"'
        f"{'' if key == first else ' hidden'}>{panels[key]}</section>"
        for key, _ in TABS
    )
    body = (
        _header(smtp)
        + f'<main id="message" data-id="{escape(m["id"])}">'
        + f'<h1>{escape(m["subject"]) or "(no subject)"}</h1><dl class="summary">'
        + f"<dt>From</dt><dd>{escape(m['from'])}</dd>"
        + f"<dt>To</dt><dd>{escape(', '.join(m['to']))}</dd>"
        + f"<dt>Envelope</dt><dd>{escape(_envelope(m))}</dd>"
        + f"<dt>Received</dt><dd><time>{escape(when(m['received']))}</time></dd>"
        + f"<dt>Size</dt><dd>{_size(m['size'])}</dd></dl>"
        + '<div class="toolbar"><a href="/">← Inbox</a>'
        + '<button type="button" id="delete" class="danger">Delete</button></div>'
        + f'<nav class="tabs" role="tablist">{tabs}</nav>{sections}</main>'
    )
    return _page(m["subject"] or "(no subject)", token, body, "message")


def _count(m: dict[str, Any], key: str) -> str:
    n = {"attachments": len(m["attachments_list"]), "lint": len(m["lint_findings"])}.get(key)
    return f' <span class="n">{n}</span>' if n else ""


def _envelope(m: dict[str, Any]) -> str:
    env = m["envelope"]
    return f"<{env['mail_from']}> → " + ", ".join(f"<{r}>" for r in env["rcpt_tos"])


def _html_panel(m: dict[str, Any], mid: str) -> str:
    if not m["has_html"]:
        return "<p>This message has no HTML body.</p>"
    return (
        '<p class="note">Shown sandboxed: scripts, forms and remote content are blocked. '
        '<button type="button" id="remote-images">Show remote images</button></p>'
        # No allow-* token: no script, no form, no same origin, no popups, no navigation.
        f'<iframe sandbox="" referrerpolicy="no-referrer" title="HTML body" '
        f'id="html-body" src="/messages/{mid}/html"></iframe>'
    )


def _tree(node: dict[str, Any]) -> str:
    bits = [node["content_type"]]
    for key in ("charset", "transfer_encoding", "disposition", "filename"):
        if node.get(key):
            bits.append(f"{key.replace('_', '-')}: {node[key]}")
    if "size" in node:
        bits.append(_size(node["size"]))
    children = "".join(_tree(c) for c in node.get("parts", []))
    inner = f"<ul>{children}</ul>" if children else ""
    label = f'<span class="part">part {node["part"]}</span>'
    return f"<li>{label} {escape('; '.join(bits))}{inner}</li>"


def _attachments(m: dict[str, Any], api: str) -> str:
    if not m["attachments_list"]:
        return "<p>No attachments.</p>"
    items = "".join(
        f'<li><a class="attachment" href="{api}/parts/{a["part"]}" '
        f'download="{escape(a["filename"] or "part-" + str(a["part"]))}">'
        f"{escape(a['filename'] or '(no name)')}</a> {escape(a['content_type'])}, "
        f"{_size(a['size'])}</li>"
        for a in m["attachments_list"]
    )
    return f'<ul class="attachments">{items}</ul>'


def _session(s: dict[str, Any] | None) -> str:
    if s is None:
        return "<p>No session details (the message was loaded from the Maildir).</p>"
    auth = s["auth"]
    rows = [
        ("Client", s["client"]),
        ("Greeting", f"{s['greeting']} {s['ehlo_name'] or ''}"),
        ("Extensions used", ", ".join(s["extensions_used"]) or "none"),
        ("TLS", s["tls"] or "none (clear text)"),
        ("AUTH", f"{auth['mechanism'] or ''} as {auth['user']}" if auth else "none"),
        ("MAIL parameters", " ".join(s["mail_parameters"]) or "none"),
        ("RCPT parameters", " ".join(s["rcpt_parameters"]) or "none"),
        ("Connected", when(s["timing"]["connected"])),
        ("MAIL after", f"{s['timing']['mail_after_seconds']} s"),
        ("End of data after", f"{s['timing']['data_end_after_seconds']} s"),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    if s["dialogue"] is None:
        dialogue = "<p>Start the sink with <code>--record-session</code> to see the dialogue.</p>"
    else:
        lines = "\n".join(f"{d['t']:8.3f}  {d['line']}" for d in s["dialogue"])
        dialogue = f'<h2>Dialogue</h2><pre class="dialogue">{escape(lines)}</pre>'
    return f'<table class="session">{table}</table>{dialogue}'


def _lint(findings: list[dict[str, str]]) -> str:
    if not findings:
        return '<p class="ok">No problems found.</p>'
    items = "".join(
        f'<li class="{escape(f["severity"])}"><strong>{escape(f["severity"])}</strong> '
        f"<code>{escape(f['code'])}</code> {escape(f['message'])} "
        f'<span class="rfc">({escape(f["rfc"])})</span></li>'
        for f in findings
    )
    return f'<ul class="lint">{items}</ul>'


def _release(server: str | None) -> str:
    if server is None:
        return (
            "<p>Release sends this message on to a real server. Start the sink with "
            "<code>--release-server URL</code> (and the options of <code>smtpmail send</code>: "
            "<code>--account</code>, <code>--user</code>, <code>--tls</code>...) to use it.</p>"
        )
    return (
        f'<form id="release"><p>Send this message on to <code>{escape(server)}</code></p>'
        '<label>Recipients <input name="to" id="release-to" required '
        'placeholder="a@example.org, b@example.org"></label> '
        '<button type="submit">Release</button><output id="release-result"></output></form>'
    )
