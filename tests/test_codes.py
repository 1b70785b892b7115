"""Every licensing code ospp can print has one definition and a description /ddescr shows."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from ospp.core import errors
from tests.conftest import Ospp

SOURCE = Path(errors.__file__).resolve().parents[1]
HEX = re.compile(r"\b0x[0-9A-Fa-f]{8}\b")
# 8-digit hex literals that are not licensing codes.
NOT_CODES = {
    0x4F535050,  # core/db.py: the SQLite application_id, "OSPP"
    0x80000000,  # core/errors.py: the failure bit of an HRESULT
}


def _modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def _named_codes() -> dict[str, int]:
    return {
        name: value
        for name, value in vars(errors).items()
        if re.fullmatch(r"[EI]_[A-Z0-9_]+", name) and isinstance(value, int)
    }


def _printable_codes() -> set[int]:
    found = set(_named_codes().values())
    for path in _modules():
        found |= {int(m, 16) for m in HEX.findall(path.read_text(encoding="utf-8"))}
    return found - NOT_CODES


def test_codes_are_defined_once_in_core_errors() -> None:
    defined = re.compile(r"^\s*[EI]_[A-Z0-9_]+\s*(?::\s*int\s*)?=\s*0x", re.M)
    elsewhere = [
        str(p.relative_to(SOURCE))
        for p in _modules()
        if p.name != "errors.py" and defined.search(p.read_text(encoding="utf-8"))
    ]
    assert elsewhere == []
    values = list(_named_codes().values())
    assert len(values) == len(set(values)), "two names for one code"
    assert set(values) == set(errors.DESCRIPTIONS)


def test_every_code_ospp_can_print_has_a_description(ospp: Ospp) -> None:
    codes = _printable_codes()
    # codes that once had no description, and codes from every package
    assert {0x80072EFD, 0x8007232D, 0x80072331, 0x80072339, 0x8000FFFF, 0xC004F074} <= codes
    for code in sorted(codes):
        text = f"0x{code:08X}"
        ran = ospp(f"/ddescr:{text}")
        assert ran.code == 0, (text, ran.out)
        assert f"ERROR CODE: {text}" in ran.out
        assert f"ERROR DESCRIPTION: {errors.DESCRIPTIONS[code]}" in ran.out
        assert errors.DESCRIPTIONS[code].strip()


def test_descriptions_do_not_depend_on_what_was_imported(ospp: Ospp) -> None:
    """A fresh ``ospp`` process (which imports only what /ddescr needs) knows every code."""
    codes = [f"0x{c:08X}" for c in sorted(_printable_codes())]
    script = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from ospp.cli import cli\n"
        "out = {}\n"
        "for code in json.loads(sys.argv[1]):\n"
        "    r = CliRunner().invoke(cli, ['ddescr', code, '--json'])\n"
        "    out[code] = [r.exit_code, json.loads(r.stdout)['data'].get('description')]\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(codes)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**ospp.env, "PATH": ""},
        check=True,
    )
    shown = json.loads(done.stdout)
    assert {code: status for code, (status, _) in shown.items()} == dict.fromkeys(codes, 0)
    assert all(description for _, description in shown.values())
