"""The phone centre's call log: concurrent consoles append whole lines and lose none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ospp.authority import calllog

WRITER = """
import sys
from pathlib import Path
from ospp.authority import calllog
home, who = Path(sys.argv[1]), sys.argv[2]
for i in range(50):
    calllog.append(home, {"who": who, "n": i, "installation_id": "0" * 63, "pad": "x" * 300})
"""


def test_four_consoles_appending_at_once_lose_and_tear_nothing(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w)]) for w in range(4)
    ]
    for p in procs:
        assert p.wait(timeout=60) == 0
    lines = calllog.log_path(tmp_path).read_text().splitlines()
    calls = calllog.read(tmp_path)
    assert len(lines) == len(calls) == 200  # every line is whole JSON
    assert {(c["who"], c["n"]) for c in calls} == {(str(w), n) for w in range(4) for n in range(50)}
