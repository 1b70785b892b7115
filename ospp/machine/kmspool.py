"""The KMS connections of one fleet pass (``fleet act``, ``service`` over many machines): one
kept connection per KMS host, shared by the worker threads, and the hosts that stopped
answering.

A host that accepts connections and never answers costs each request its whole timeout. When a
request to a host times out, the next request looks at it again while the others wait for that
one; if it times out too, the host is given up on for SILENT_FOR seconds: the machines that
would use it meanwhile are not sent anything, their request fails at once with
:class:`NotTried` (0xC004F074, naming the host), and their stores are left as they are, so
that running the pass again once the host answers tries them. Then one request looks again
(the others are still not sent while it does). So a host that stalled once (one answer late)
costs one machine, as it would without a pool, and a dead one costs a pass two timeouts, then
one every SILENT_FOR seconds, not one per machine. Requests that were all waiting through one
pause of the host count as one timeout; an answer, or a refusal (the host is up), starts the
count over. A host that refuses connections fails fast, and each thread
keeps trying it on its own. Once the pass is closed (it ends, or was interrupted), nothing
more is sent.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from ospp.core.endpoint import Endpoint
from ospp.core.errors import E_NO_KMS, NetworkError

if TYPE_CHECKING:
    from ospp.dns.discovery import Answers
    from ospp.protocol.wire import Connection

REQUEST_TIMEOUT = 5.0  # seconds for one KMS request, connecting included
SILENT_FOR = 30.0  # seconds a host that missed two answers in a row is not tried


class NotTried(NetworkError):
    """A request not sent: its KMS host did not answer two requests in a row earlier in this
    pass. Nothing was sent from the machine, and nothing was recorded in its store."""

    def __init__(self, where: str, stopped: bool = False) -> None:
        if stopped:  # the pass was interrupted before this request was sent
            super().__init__(
                E_NO_KMS,
                f"not sent to the KMS host at {where}: the run was stopped first",
                "Run the command again: it tries this machine.",
            )
        else:
            super().__init__(
                E_NO_KMS,
                f"the KMS host at {where} did not answer two requests in a row within "
                f"{REQUEST_TIMEOUT:.0f} s each, earlier in this run: not sent, nothing recorded "
                f"(it is looked at again {SILENT_FOR:.0f} s after the last)",
                f"Check that the host at {where} runs and answers (ospp kms ping {where}), "
                "then run the command again: it tries these machines.",
            )
        self.where = where


def _timed_out(exc: NetworkError) -> bool:
    """Whether a request failed because the host did not answer in time (connected or not),
    rather than refusing or closing the connection."""
    return isinstance(exc.__cause__, TimeoutError)


class Pool:
    """Open connections by host:port, kept for the next activations: one per KMS host, shared
    by a fleet's worker threads, each request in turn (a host answers a connection's requests
    one at a time anyway). Once a host has refused or dropped a request, each thread tries it on
    its own until it answers again; once requests to it time out, see the module's rule."""

    def __init__(self) -> None:
        self._open: dict[str, Connection] = {}
        self._turns: dict[str, threading.Lock] = {}
        self._failing: set[str] = set()
        self._missed: dict[str, int] = {}  # pauses in a row (requests that timed out)
        self._missed_at: dict[str, float] = {}  # when the last one was counted
        self._given_up: dict[str, float] = {}  # not tried until this time.monotonic()
        self._looking: dict[str, threading.Event] = {}  # the request looking at a host again
        self._closed = False  # the pass is over (or interrupted): nothing more is sent
        self._guard = threading.Lock()  # over the eight above
        self._answers: Answers | None = None  # the pass's DNS answers, made on first use

    def answers(self) -> Answers:
        """The DNS answers the machines of this pass share (KMS discovery)."""
        from ospp.dns.discovery import Answers

        with self._guard:
            if self._answers is None:
                self._answers = Answers()
            return self._answers

    @property
    def closed(self) -> bool:
        """The pass is over or was interrupted: nothing more is to be sent, to any server."""
        return self._closed

    def call(self, endpoint: Endpoint, request: dict[str, Any]) -> dict[str, Any]:
        where = str(endpoint)
        with self._guard:
            if self._closed:
                raise NotTried(where, stopped=True)
            turn = self._turns.setdefault(where, threading.Lock())
            failing = where in self._failing
        if not failing:
            with turn:
                with self._guard:  # again: it may have stopped answering while we waited
                    failing = where in self._failing
                    kept = None if failing else self._open.pop(where, None)
                if kept is not None and not kept.quiet():
                    kept.close()  # closed by the host, or holding an answer nobody asked for
                    kept = None
                if kept is not None:
                    started = time.monotonic()
                    try:
                        response = kept.call(request)
                    except NetworkError as exc:
                        kept.close()  # the host closed an idle connection: one fresh try below
                        if _timed_out(exc):  # connected, and it did not answer
                            self._fail(where, True, started)
                            raise
                    except BaseException:
                        kept.close()
                        raise
                    else:
                        self._keep(where, kept)
                        return response
                if not failing:
                    return self._fresh(where, endpoint, request)
        return self._fresh(where, endpoint, request)  # each thread on its own, at once

    def _look_again(self, where: str) -> threading.Event | None:
        """Before a request on a new connection: None for a host that answers; for one whose
        last request timed out, the event of this request if it is the one to look at the
        host again (the others wait for it, then go on by what it found); NotTried while the
        host is given up on."""
        while True:
            with self._guard:
                if self._closed:
                    raise NotTried(where, stopped=True)
                missed = self._missed.get(where, 0)
                if not missed:
                    return None
                if time.monotonic() < self._given_up.get(where, 0.0):
                    raise NotTried(where)
                looking = self._looking.get(where)
                if looking is None:
                    looking = self._looking[where] = threading.Event()
                    return looking
                if missed >= 2:  # given up on already: not sent while one request looks
                    raise NotTried(where)
            looking.wait(REQUEST_TIMEOUT + 1.0)  # the look is over within its own deadline

    def _fresh(self, where: str, endpoint: Endpoint, request: dict[str, Any]) -> dict[str, Any]:
        from ospp.protocol.wire import Connection

        looking = self._look_again(where)
        started = time.monotonic()
        try:
            try:
                conn = Connection(endpoint, "KMS host", REQUEST_TIMEOUT)
                try:
                    response = conn.call(request)
                except BaseException:
                    conn.close()
                    raise
            except NetworkError as exc:
                self._fail(where, _timed_out(exc), started)
                raise
            with self._guard:  # it answered: tried again by every thread
                self._failing.discard(where)
                self._missed.pop(where, None)
                self._missed_at.pop(where, None)
                self._given_up.pop(where, None)
        finally:
            if looking is not None:  # what it found is recorded: the waiting requests go on
                with self._guard:
                    self._looking.pop(where, None)
                looking.set()
        self._keep(where, conn)
        return response

    def _fail(self, where: str, silent: bool, started: float) -> None:
        """A request begun at ``started`` failed; ``silent``: it timed out. Requests that were
        all waiting through one pause of the host count as one timeout, not one each."""
        with self._guard:
            self._failing.add(where)
            if not silent:  # it refused: the host is up, and its timeouts are counted anew
                self._missed.pop(where, None)
                self._missed_at.pop(where, None)
                self._given_up.pop(where, None)
                return
            if started <= self._missed_at.get(where, float("-inf")):
                return  # this pause is counted already
            now = time.monotonic()
            self._missed_at[where] = now
            missed = self._missed[where] = self._missed.get(where, 0) + 1
            if missed >= 2:
                self._given_up[where] = now + SILENT_FOR

    def _keep(self, where: str, conn: Connection) -> None:
        with self._guard:
            if where not in self._open:
                self._open[where] = conn
                return
        conn.close()  # another thread's connection is kept

    def close(self) -> None:
        """End the pass: kept connections are closed, and nothing more is sent (requests
        waiting for a look at a host stop waiting)."""
        with self._guard:
            self._closed = True
            for conn in self._open.values():
                conn.close()
            self._open.clear()
            looking = list(self._looking.values())
        for event in looking:
            event.set()
