"""The streamed JSON report prints the very bytes the collected one does."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from ospp.cli import base, stream
from ospp.core.errors import OsppError, StoreError

ROWS: list[dict[str, Any]] = [
    {"machine": "ws1", "status": "LICENSED", "days": 180, "host": None, "ok": True},
    {"machine": "ws2", "status": "ERROR", "error": {"code": "0x8007000D", "hint": None}},
    {"machine": "ws3", "note": 'caf\u00e9 "quoted"\n\x1b[31m', "empty": [], "list": [1, 2]},
    {},
]


def collected(
    capsys: pytest.CaptureFixture[str], data: dict[str, Any], problem: Any, command: str
) -> str:
    base.emit(base.Result(data=data, failed=problem), True, command)
    return capsys.readouterr().out


@pytest.mark.parametrize("spool", [stream.SPOOL, 64])  # in memory, and through a file
@pytest.mark.parametrize("failed", [False, True])
@pytest.mark.parametrize("rows", [ROWS, [], ROWS[:1] * 2500])
def test_streamed_report_matches_the_collected_one(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    rows: list[dict[str, Any]],
    failed: bool,
    spool: int,
) -> None:
    monkeypatch.setattr(stream, "SPOOL", spool)
    problem = StoreError(0x8007000D, "1 store(s) could not be read", "Left as they are.")
    counts: Counter[str] = Counter()

    def counted() -> Iterator[dict[str, Any]]:
        for row in rows:
            counts[str(row.get("status"))] += 1
            yield row

    def outcome() -> OsppError | None:
        return problem if failed else None

    # the counter is filled while the rows are read, yet printed where it was given
    fields = [("summary", counts), ("rows", counted()), ("more", iter(rows[:2])), ("n", 3)]
    stream.json_report("fleet status", fields, outcome)
    streamed = capsys.readouterr().out
    want = {"summary": Counter(str(r.get("status")) for r in rows), "rows": rows,
            "more": rows[:2], "n": 3}  # fmt: skip
    assert streamed == collected(capsys, want, problem if failed else None, "fleet status")
    assert json.loads(streamed)["ok"] is not failed


def test_without_an_outcome_the_report_is_written_as_it_goes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "CHUNK", 1)
    seen: list[str] = []

    def rows() -> Iterator[dict[str, Any]]:
        yield from ROWS
        seen.append(capsys.readouterr().out)  # what was printed before the last row was read

    stream.json_report("kms clients", [("clients", rows()), ("total", len(ROWS))])
    rest = capsys.readouterr().out
    assert seen[0].startswith(
        '{\n  "schema": 1,\n  "ok": true,\n  "command": "kms clients",\n  "data": {\n'
        '    "clients": ['
    )
    assert '"machine": "ws3"' in seen[0] and '"total"' in rest
    assert seen[0] + rest == collected(capsys, {"clients": ROWS, "total": 4}, None, "kms clients")


@pytest.mark.parametrize("quiet", [False, True])
@pytest.mark.parametrize("release", [False, True])
def test_held_lines_print_as_emit_would(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, quiet: bool, release: bool
) -> None:
    monkeypatch.setattr(stream, "SPOOL", 64)
    lines = [f"ws{n}: peer said \x1b[31m\u202eevil\ttab\nnext" for n in range(50)]
    with stream.Held(quiet) as out:
        for line in lines[:10]:
            out.line(line)
        out.go()  # what was held is printed, and the rest as it comes (unless quiet)
        for line in lines[10:]:
            out.line(line)
        out.release = release
    held = capsys.readouterr().out
    base.emit(base.Result(lines, banners=False), False, "service")
    shown = capsys.readouterr().out
    assert "\\x1b[31m\\u202eevil\ttab\\x0anext" in shown
    assert held == (shown if release or not quiet else "")
