"""The KMS host's metrics: what the serving process counts in memory, and ``/metrics``.

Counters start at zero with the process (Prometheus expects resets); the gauges (current
count, stored clients) are read from the store by :mod:`ospp.kmshost.report`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ospp.core.errors import hex_code
from ospp.core.promtext import Histogram, Page
from ospp.protocol.kms import THRESHOLD

LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServingMetrics:
    """Requests answered by this process, by result and code, with latency and batch sizes."""

    def __init__(self) -> None:
        self.started = time.time()
        self.results: dict[str, int] = {"ok": 0, "failed": 0}
        self.codes: dict[str, int] = {}
        self.latency = Histogram(LATENCY_BOUNDS)
        self.batches = Histogram(BATCH_BOUNDS)
        self.log_lines_dropped = 0  # request log lines that could not be written

    def log_lines_lost(self, lines: int) -> None:
        self.log_lines_dropped += lines

    @property
    def requests(self) -> int:
        return sum(self.results.values())

    def observe(self, answers: Sequence[dict[str, Any] | bytes], seconds: Sequence[float]) -> None:
        """One group-commit batch: its answers and each request's time in the host."""
        self.batches.observe(len(answers))
        for answer, spent in zip(answers, seconds, strict=True):
            self.latency.observe(spent)
            if isinstance(answer, bytes) or answer.get("ok"):
                self.results["ok"] += 1
            else:
                self.failed(answer.get("code"))

    def failed(self, code: object) -> None:
        self.results["failed"] += 1
        name = hex_code(code) if isinstance(code, int) else "store"
        self.codes[name] = self.codes.get(name, 0) + 1


def render(metrics: ServingMetrics, gauges: Mapping[str, Any] | None) -> str:
    """The ``/metrics`` page; ``gauges`` is what :meth:`ospp.kmshost.report.Reader.gauges`
    read, None when the store or the clock could not be read for this scrape."""
    page = Page()
    page.family(
        "ospp_kms_requests_total",
        "counter",
        "KMS activation requests answered since the host started, by result.",
        [({"result": r}, n) for r, n in sorted(metrics.results.items())],
    )
    page.family(
        "ospp_kms_request_failures_total",
        "counter",
        "Failed KMS activation requests since the host started, by licensing code.",
        [({"code": c}, n) for c, n in sorted(metrics.codes.items())],
    )
    page.histogram(
        "ospp_kms_request_seconds",
        "Time from a request's arrival to its answer (including the group commit).",
        metrics.latency,
    )
    page.family(
        "ospp_kms_request_log_lost_lines_total",
        "counter",
        "Request log lines dropped since the host started because the log could not be written.",
        [({}, metrics.log_lines_dropped)],
    )
    page.histogram("ospp_kms_batch_size", "Requests per group-commit transaction.", metrics.batches)
    page.family(
        "ospp_kms_threshold",
        "gauge",
        "The count clients need before the host activates them.",
        [({}, THRESHOLD)],
    )
    page.family(
        "ospp_kms_store_readable",
        "gauge",
        "1 if this scrape could read the host's store and clock; while 0, the gauges read "
        "from them (current count, stored clients, activation) are left out.",
        [({}, 0 if gauges is None else 1)],
    )
    if gauges is not None:
        _store_gauges(page, gauges)
    page.family(
        "ospp_kms_start_time_seconds",
        "gauge",
        "When the host process started, in seconds since the epoch.",
        [({}, int(metrics.started))],
    )
    return page.text()


def _store_gauges(page: Page, gauges: Mapping[str, Any]) -> None:
    """The gauges read from the store (:meth:`ospp.kmshost.report.Reader.gauges`)."""
    page.family(
        "ospp_kms_current_count",
        "gauge",
        "Unique clients seen in the last 30 days per application group (capped at twice "
        "the threshold).",
        [({"app": app}, n) for app, n in sorted(gauges["current_count"].items())],
    )
    page.family(
        "ospp_kms_stored_clients",
        "gauge",
        "Client machines in the store.",
        [({}, gauges["stored_clients"])],
    )
    page.family(
        "ospp_kms_host_activated",
        "gauge",
        "1 if a host key (of any licence pack) is activated with the activation authority.",
        [({}, 1 if gauges["activated"] else 0)],
    )
    page.family(
        "ospp_kms_pack_activated",
        "gauge",
        "1 if this licence pack's KMS host key is activated, per application group.",
        [
            (
                {
                    "app": p["application_id"],
                    "product": p["product_id"],
                    "key_last5": p["key_last5"],
                },
                1 if p["activated"] else 0,
            )
            for p in gauges.get("packs", [])
        ],
    )
