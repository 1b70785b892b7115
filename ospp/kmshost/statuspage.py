"""The KMS host's status page: plain server-rendered HTML, a little CSS, an inline SVG chart.

No JavaScript. Every value that came from a client or the store goes through ``html.escape``
(a workstation name is whatever a client chose to send).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from ospp.core.catalog import Channel, catalog
from ospp.kmshost.report import PAGE_SIZE, ClientQuery
from ospp.protocol.kms import THRESHOLD

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;
padding:0 1em}
h1{font-size:1.5em;margin:0 0 .5em}h2{font-size:1.1em;margin:1.5em 0 .4em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .6em;
border-bottom:1px solid #ddd}th{background:#f3f3f3}td.n,th.n{text-align:right}
.ok{color:#176d2c;font-weight:600}.bad{color:#a31515;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:1em}.card{border:1px solid #ddd;border-radius:6px;
padding:.6em 1em;min-width:12em}.card b{display:block;font-size:1.3em}
code{font-size:.95em}form{margin:.5em 0}svg{background:#fafafa;border:1px solid #ddd}
.bar{fill:#2f6db5}.axis{font-size:10px;fill:#555}nav a{margin-right:1em}
"""


def e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _cards(summary: Mapping[str, Any]) -> str:
    state = (
        '<b class="ok" id="activation">activated</b>'
        if summary["activated"]
        else '<b class="bad" id="activation">not activated (clients get 0xC004F041)</b>'
    )
    packs = summary.get("packs") or []
    key = ", ".join(f"*****-{p['key_last5']}" for p in packs) or "none installed"
    return (
        '<div class="cards">'
        f'<div class="card">Host key<b id="host-key">{e(key)}</b></div>'
        f'<div class="card">Activation{state}{e(summary["activated_at"] or "")}</div>'
        f'<div class="card">ePID<b><code id="epid">{e(summary["epid"] or "-")}</code></b></div>'
        f'<div class="card">Stored clients<b id="stored">{e(summary["stored_clients"])}</b></div>'
        "</div>"
    )


def _counts(counts: Mapping[str, int]) -> str:
    rows = []
    for app, count in sorted(counts.items()):
        ok = count >= THRESHOLD
        rows.append(
            f'<tr class="count" data-app="{e(app)}"><td><code>{e(app)}</code></td>'
            f'<td class="n current">{e(count)}</td><td class="n">{THRESHOLD}</td>'
            f'<td class="{"ok" if ok else "bad"}">'
            f"{'clients are activated' if ok else 'below the threshold'}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="4">No client has asked in the last 30 days.</td></tr>')
    return (
        "<table><tr><th>Application group ID</th><th class=n>Current count</th>"
        "<th class=n>Threshold</th><th>State</th></tr>" + "".join(rows) + "</table>"
    )


def _packs(packs: Sequence[Mapping[str, Any]]) -> str:
    """One row per licence pack: its key, group, activation and count."""
    rows = []
    for p in packs:
        state = (
            '<td class="ok">activated</td>'
            if p["activated"]
            else '<td class="bad">not activated (its clients get 0xC004F041)</td>'
        )
        rows.append(
            f'<tr class="pack" data-app="{e(p["application_id"])}" '
            f'data-key="{e(p["key_last5"])}"><td>{e(p["product_id"])}</td><td>{e(p["group"])}</td>'
            f"<td><code>*****-{e(p['key_last5'])}</code></td>{state}"
            f"<td><code>{e(p['epid'] or '-')}</code></td>"
            f'<td class="n current">{e(p["current_count"])}</td></tr>'
        )
    if not rows:
        rows.append('<tr><td colspan="6">No KMS host key is installed.</td></tr>')
    return (
        "<table id=packs><tr><th>Product</th><th>Application group</th><th>Host key</th>"
        "<th>Activation</th><th>ePID</th><th class=n>Current count</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _requests(summary: Mapping[str, Any], since_start: Mapping[str, Any]) -> str:
    rows = [
        f"<tr><td>Total requests</td><td class=n id=requests-total>"
        f"{e(summary['requests_total'])}</td></tr>",
        f"<tr><td>Failed requests</td><td class=n id=requests-failed>"
        f"{e(summary['requests_failed'])}</td></tr>",
    ]
    for status, n in sorted(summary["requests_by_status"].items()):
        rows.append(f"<tr><td>Licence status {e(status)}</td><td class=n>{e(n)}</td></tr>")
    for code, n in sorted(summary["failures_by_code"].items()):
        rows.append(f"<tr><td>Failed with <code>{e(code)}</code></td><td class=n>{e(n)}</td></tr>")
    rows.append(
        f"<tr><td>Since this process started</td><td class=n>{e(since_start['requests'])} "
        f"({e(since_start['failed'])} failed)</td></tr>"
    )
    return "<table>" + "".join(rows) + "</table>"


def chart(per_day: Sequence[tuple[str, int]]) -> str:
    """Answered activation requests per day as an inline SVG bar chart."""
    width, height, left, bottom, top = 900, 180, 36, 24, 10
    peak = max([n for _, n in per_day] + [1])
    slot = (width - left) / max(len(per_day), 1)
    parts = [
        f'<svg id="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        "<title>Activation requests answered per day, last 30 days</title>",
        f'<text class="axis" x="2" y="{top + 8}">{peak}</text>',
        f'<text class="axis" x="2" y="{height - bottom}">0</text>',
    ]
    for i, (day, n) in enumerate(per_day):
        h = (height - bottom - top) * n / peak
        x = left + i * slot + 1
        y = height - bottom - h
        parts.append(
            f'<rect class="bar" data-day="{e(day)}" data-count="{n}" x="{x:.1f}" y="{y:.1f}" '
            f'width="{slot - 2:.1f}" height="{h:.1f}"><title>{e(day)}: {n}</title></rect>'
        )
        if i % 5 == 0 or i == len(per_day) - 1:
            parts.append(f'<text class="axis" x="{x:.1f}" y="{height - 8}">{e(day[5:])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _filter_form(query: ClientQuery, statuses: Sequence[str]) -> str:
    kms_products = [p.id for p in catalog().products if _has_kms_client(p.id)]

    def options(values: Sequence[str], chosen: str, everything: str) -> str:
        out = [f'<option value="">{everything}</option>']
        for v in values:
            sel = " selected" if v == chosen else ""
            out.append(f'<option value="{e(v)}"{sel}>{e(v)}</option>')
        return "".join(out)

    return (
        '<form method="get" action="/">'
        f'<label>Product <select name="product">'
        f"{options(kms_products, query.product, 'all products')}</select></label> "
        f'<label>Status <select name="status">'
        f"{options(statuses, query.status, 'any status')}</select></label> "
        '<button type="submit">Filter</button></form>'
    )


def _has_kms_client(product_id: str) -> bool:
    product = catalog().product(product_id)
    try:
        return product is not None and product.sku(Channel.KMS_CLIENT) is not None
    except (KeyError, LookupError):
        return False


def _clients(rows: Sequence[Mapping[str, Any]], total: int, query: ClientQuery) -> str:
    head = (
        "<table id=clients><tr><th>Last seen</th><th>CMID</th><th>Workstation</th>"
        "<th>Product</th><th>Status</th><th class=n>Requests</th><th>First seen</th></tr>"
    )
    body = [
        f'<tr class="client"><td>{e(r["last_seen_at"])}</td><td><code>{e(r["cmid"])}</code></td>'
        f'<td class="workstation">{e(r["workstation"] or "-")}</td><td>{e(r["product"])}</td>'
        f"<td>{e(r['status'] or '-')}</td><td class=n>{e(r['requests'])}</td>"
        f"<td>{e(r['first_seen_at'])}</td></tr>"
        for r in rows
    ]
    if not body:
        body.append('<tr><td colspan="7">No client matches.</td></tr>')
    pages = max(1, -(-total // PAGE_SIZE))
    page = max(query.page, 1)  # the page shown: past the last one, it lists nobody

    def link(n: int, label: str) -> str:
        params = {k: v for k, v in (("product", query.product), ("status", query.status)) if v}
        return f'<a href="/?{e(urlencode({**params, "page": n}))}">{label}</a>'

    nav = [f'<span id="page-info">page {page} of {pages}, {total} client(s)</span> ']
    if page > pages:
        nav.insert(0, link(pages, "&larr; last page"))
    elif page > 1:
        nav.insert(0, link(page - 1, "&larr; newer"))
    if page < pages:
        nav.append(link(page + 1, "older &rarr;"))
    return head + "".join(body) + "</table><nav>" + "".join(nav) + "</nav>"


def render(
    summary: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    total: int,
    query: ClientQuery,
    statuses: Sequence[str],
    since_start: Mapping[str, Any],
    listening: str,
) -> str:
    dns = summary["dns_last_publish"]
    dns_line = (
        f"Last DNS publishing: {e(dns['at'])}: {e(dns['result'])}"
        if dns
        else (
            "DNS publishing enabled, not yet attempted"
            if summary["dns_publishing"]
            else "DNS publishing disabled"
        )
    )
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>ospp KMS host {e(listening)}</title><style>{CSS}</style></head><body>"
        f"<h1>ospp KMS host <small>{e(listening)}</small></h1>"
        f"<p>As of {e(summary['now'])}. {dns_line}.</p>"
        + _cards(summary)
        + "<h2>Licence packs</h2>"
        + _packs(summary.get("packs") or [])
        + "<h2>Current count per application group</h2>"
        + _counts(summary["current_count"])
        + "<h2>Activation requests answered per day (last 30 days)</h2>"
        + chart(summary["per_day"])
        + "<h2>Requests</h2>"
        + _requests(summary, since_start)
        + "<h2>Clients seen in the last 30 days</h2>"
        + _filter_form(query, statuses)
        + _clients(rows, total, query)
        + '<p><a href="/metrics">metrics</a> · <a href="/healthz">health</a></p>'
        + "</body></html>"
    )
