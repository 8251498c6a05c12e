"""The ``--json`` contract: parse a command's stdout and check it against the
JSON Schema the package ships (``smtpmail/cli/json-schema/v1.json``)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

import smtpmail.cli

SCHEMA_FILE = Path(smtpmail.cli.__file__).parent / "json-schema" / "v1.json"


@functools.cache
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def check(stdout: str, status: int) -> dict[str, Any]:
    """stdout is exactly one document, valid against the schema, whose exit
    status is the process's; return it."""
    document = json.loads(stdout)  # fails on any text around the document
    errors = sorted(validator().iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    assert document["schema"] == "smtpmail/v1"
    assert document["exit_status"] == status
    assert document["ok"] is (status == 0)
    return document  # type: ignore[no-any-return]
