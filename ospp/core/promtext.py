"""Writing the Prometheus text exposition format (version 0.0.4), and a histogram to feed it.

Label values are escaped (backslash, double quote, newline), so a value that came from a
client cannot break the page's syntax.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return (
        repr(float(value))
        if isinstance(value, float) and not value.is_integer()
        else str(int(value))
    )


class Page:
    """The lines of one exposition, built family by family."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, hist: Histogram) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} histogram")
        running = 0
        for bound, count in zip(hist.bounds, hist.counts, strict=False):
            running += count
            self.lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {running}')
        self.lines.append(f'{name}_bucket{{le="+Inf"}} {hist.total}')
        self.lines.append(f"{name}_sum {_number(hist.sum)}")
        self.lines.append(f"{name}_count {hist.total}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class Histogram:
    """Counts of observations per bucket (upper bounds, ascending), plus their sum."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is the +Inf overflow
        self.sum = 0.0
        self.total = 0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += times
        self.sum += value * times
        self.total += times
