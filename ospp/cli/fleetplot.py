"""Drawing a fleet timeline: a stacked area chart as a standalone SVG (or an HTML page).

One ``<g class="series" data-state="...">`` per licence state, in the order of
``ospp.machine.fleetview.STATES``, each holding one filled path; days along the x axis.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

COLOURS = {
    "UNLICENSED": "#9e9e9e",
    "OOB_GRACE": "#64b5f6",
    "OOB_GRACE_NOTIFYING": "#ffb74d",
    "LICENSED": "#66bb6a",
    "OOT_GRACE": "#ffee58",
    "NOTIFICATIONS": "#e53935",
}
LABELS = {
    "UNLICENSED": "unlicensed (no key)",
    "OOB_GRACE": "initial grace (day 0-24)",
    "OOB_GRACE_NOTIFYING": "initial grace, notifying (day 25-29)",
    "LICENSED": "licensed (KMS: 180 days per activation or renewal)",
    "OOT_GRACE": "out-of-tolerance grace (30 days)",
    "NOTIFICATIONS": "notifications (unlicensed, nagging)",
}
W, H = 900, 420
LEFT, RIGHT, TOP, BOTTOM = 60, 290, 40, 50


def svg(points: list[tuple[datetime, Counter[str]]], states: tuple[str, ...], title: str) -> str:
    """The chart as SVG text."""
    total = max((sum(c.values()) for _, c in points), default=0) or 1
    n = len(points)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return TOP + ph - ph * v / total

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    below = [0] * n
    for k, state in enumerate(states):
        values = [c.get(state, 0) for _, c in points]
        top = [b + v for b, v in zip(below, values, strict=True)]
        path = " ".join(f"{x(i):.1f},{y(top[i]):.1f}" for i in range(n))
        back = " ".join(f"{x(i):.1f},{y(below[i]):.1f}" for i in reversed(range(n)))
        peak = max(values, default=0)
        out.append(
            f'<g class="series" data-state={quoteattr(state)} data-peak="{peak}">'
            f"<title>{escape(state)}: up to {peak} machine(s)</title>"
            f'<path d="M {path} L {back} Z" fill="{COLOURS.get(state, "#888")}" '
            f'stroke="white" stroke-width="0.5"/></g>'
        )
        ly = TOP + 10 + 22 * k
        out.append(
            f'<rect x="{W - RIGHT + 15}" y="{ly - 10}" width="14" height="14" '
            f'fill="{COLOURS.get(state, "#888")}"/>'
            f'<text x="{W - RIGHT + 35}" y="{ly + 2}">{escape(LABELS.get(state, state))}</text>'
        )
        below = top
    # axes: machine counts on the left, dates along the bottom
    out.append(
        f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}" stroke="black"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" stroke="black"/>'
        f'<text x="{LEFT - 8}" y="{TOP + 4}" text-anchor="end">{total}</text>'
        f'<text x="{LEFT - 8}" y="{TOP + ph + 4}" text-anchor="end">0</text>'
        f'<text x="14" y="{TOP + ph / 2}" transform="rotate(-90 14 {TOP + ph / 2})" '
        f'text-anchor="middle">machines</text>'
    )
    ticks = min(n, 8)
    for t in range(ticks):
        i = round(t * (n - 1) / (ticks - 1)) if ticks > 1 else 0
        day = points[i][0]
        out.append(
            f'<line x1="{x(i):.1f}" y1="{TOP + ph}" x2="{x(i):.1f}" y2="{TOP + ph + 5}" '
            f'stroke="black"/><text x="{x(i):.1f}" y="{TOP + ph + 20}" text-anchor="middle">'
            f"{day:%Y-%m-%d}</text>"
            f'<text x="{x(i):.1f}" y="{TOP + ph + 36}" text-anchor="middle" fill="#555">'
            f"day {(day - points[0][0]).days}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def html(svg_text: str, title: str, table: list[str]) -> str:
    """A page with the chart and the day-by-day counts."""
    rows = "\n".join(f"<tr><td>{escape(r)}</td></tr>" for r in table)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title></head><body>\n{svg_text}"
        f"<pre><table>{rows}</table></pre>\n</body></html>\n"
    )
