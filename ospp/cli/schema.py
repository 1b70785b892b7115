"""The JSON Schema of every command's ``--json`` output, and the builders that define them.

One definition per command (in :mod:`ospp.cli.reports`) says what its ``data`` holds; this
module wraps it in the envelope of :func:`ospp.cli.base.envelope` and writes
``docs/schema/<command>.json`` (JSON Schema draft 2020-12). The published schemas accept
fields they do not name, as version 1 may gain fields; :func:`strict` is the same schema with
every object closed, which the tests check each command's output against, so a field added
to a command and not to its definition fails a test.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import click

from ospp.cli.base import SCHEMA_VERSION

Schema = dict[str, Any]
DRAFT = "https://json-schema.org/draft/2020-12/schema"

# -- builders -----------------------------------------------------------------------------------


def string(description: str = "") -> Schema:
    return _described({"type": "string"}, description)


def integer(description: str = "") -> Schema:
    return _described({"type": "integer"}, description)


def number(description: str = "") -> Schema:
    return _described({"type": "number"}, description)


def boolean(description: str = "") -> Schema:
    return _described({"type": "boolean"}, description)


def time(description: str = "") -> Schema:
    """A moment: ISO 8601 in UTC, to the second, ending in Z (``2026-11-28T15:00:00Z``)."""
    return _described({"$ref": "#/$defs/time"}, description)


def enum(*values: str | int | None, description: str = "") -> Schema:
    return _described({"enum": list(values)}, description)


def nullable(schema: Schema) -> Schema:
    """``schema`` or null (a fact that does not apply, or is not known)."""
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: Schema, description: str = "") -> Schema:
    return _described({"type": "array", "items": items}, description)


def mapping(values: Schema, description: str = "") -> Schema:
    """An object whose keys are data (application ids, statuses), each value ``values``."""
    return _described({"type": "object", "additionalProperties": values}, description)


def obj(optional: tuple[str, ...] = (), **fields: Schema) -> Schema:
    """An object with exactly these fields; those in ``optional`` may be absent."""
    return {
        "type": "object",
        "properties": fields,
        "required": [name for name in fields if name not in optional],
    }


def ref(name: str, description: str = "") -> Schema:
    """A shape shared by several commands (see ``SHARED`` in :mod:`ospp.cli.reports_shared`), or
    ``error``, the one error object."""
    return _described({"$ref": f"#/$defs/{name}"}, description)


def one_of(*schemas: Schema) -> Schema:
    return {"anyOf": list(schemas)}


def _described(schema: Schema, description: str) -> Schema:
    return {**schema, "description": description} if description else schema


TIME: Schema = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$",
    "description": "ISO 8601 in UTC, ending in Z.",
}

ERROR = obj(
    code=string("The licensing code (an HRESULT) as ospp.vbs prints it: 0xC004F074."),
    code_int=integer("The same code as a number."),
    description=string("The Software Licensing Service wording for the code (may be empty)."),
    message=string("What was found and what was expected."),
    hint=nullable(string("What to try next.")),
    exit_status=integer("The exit status of the command for this failure."),
)
ERROR["properties"]["code"]["pattern"] = "^0x[0-9A-F]{8}$"


# -- the envelope -------------------------------------------------------------------------------


def file_name(command: str) -> str:
    """``kms status`` -> ``kms.status.json``."""
    return command.replace(" ", ".") + ".json"


def envelope(command: str, data: Schema, shared: dict[str, Schema]) -> Schema:
    """The schema of ``ospp COMMAND --json``: the envelope with ``data`` in it."""
    defs: dict[str, Schema] = {"time": TIME, "error": ERROR, "data": data}
    needed = _refs(data, shared)
    defs.update({name: shared[name] for name in sorted(needed)})
    return {
        "$schema": DRAFT,
        "$id": f"https://ospp.invalid/schema/{SCHEMA_VERSION}/{file_name(command)}",
        "title": f"ospp {command} --json",
        "description": "Every --json output is this envelope: 'data' holds the report (null when "
        "the command failed before it had one), 'error' the failure (null on success).",
        "type": "object",
        "properties": {
            "schema": {"const": SCHEMA_VERSION},
            "ok": {"type": "boolean"},
            "command": {"const": command},
            "data": nullable(ref("data")),
            "error": nullable(ref("error")),
        },
        "required": ["schema", "ok", "command", "data", "error"],
        "if": {"properties": {"ok": {"const": True}}},
        "then": {"properties": {"data": ref("data"), "error": {"type": "null"}}},
        "else": {"properties": {"error": ref("error")}},
        "$defs": defs,
    }


def any_command() -> Schema:
    """``envelope.json``: what every command prints, whatever its report; also the output of
    a command line that names no command ospp knows (``command`` is then empty)."""
    schema = envelope("", {"type": "object"}, {})
    schema["$id"] = f"https://ospp.invalid/schema/{SCHEMA_VERSION}/envelope.json"
    schema["title"] = "ospp --json, any command"
    schema["properties"]["command"] = {
        "type": "string",
        "description": "The command's path without the program name (kms status), or empty.",
    }
    return schema


def _refs(schema: Any, shared: dict[str, Schema]) -> set[str]:
    """The shared definitions ``schema`` refers to, directly or through each other."""
    found: set[str] = set()
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            target = node.get("$ref", "")
            name = target.removeprefix("#/$defs/")
            if name in shared and name not in found:
                found.add(name)
                todo.append(shared[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return found


def strict(schema: Schema) -> Schema:
    """``schema`` with every object closed to the fields it names (for the tests)."""
    closed = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("type") == "object":
                node.setdefault("additionalProperties", False)
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(closed)
    return closed


def command_paths(group: click.Group, ctx: click.Context, prefix: str = "") -> Iterator[str]:
    """Every command that is not a group, as ``kms status`` (without the program name)."""
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        path = f"{prefix} {name}".strip()
        if isinstance(cmd, click.Group):
            yield from command_paths(cmd, click.Context(cmd, info_name=name, parent=ctx), path)
        else:
            yield path
