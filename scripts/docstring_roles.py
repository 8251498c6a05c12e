"""mkdocs hook: Sphinx roles in the docstrings, as links in the API reference.

The docstrings cite other objects the Sphinx way (``:class:`~smtpmail.Client```),
which mkdocstrings leaves as text (``:class:`` before the code). This turns each
into the code alone, linked by mkdocs-autorefs to the object's entry where the
site documents it (``optional``: no link and no warning where it does not).
A ``~`` prefix shows the last name only, as Sphinx does.
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):<code>(~?)([\w.]+)(\(\))?</code>")


def _link(match: re.Match[str]) -> str:
    tilde, target, call = match.groups()
    shown = target.rsplit(".", 1)[-1] if tilde else target
    code = f"<code>{shown}{call or ''}</code>"
    return f'<autoref identifier="{target}" optional>{code}</autoref>'


def on_page_content(html: str, **_: Any) -> str:
    return ROLE.sub(_link, html)
