"""The KMS connections of one fleet pass (``fleet act``, ``service`` over many machines): one
kept connection per KMS host, shared by the worker threads, and the hosts that did not answer.

A host that accepts connections and never answers costs each request its whole timeout. A
fleet pass asks it once: when a request to it times out, the machines that would use it later
in the pass are not sent anything; their request fails at once with :class:`NotTried`
(0xC004F074, naming the host and what it did), and their stores are left as they are, so that
running the pass again once the host answers tries them. A host that refuses connections
fails fast, and each thread keeps trying it on its own.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ospp.core.endpoint import Endpoint
from ospp.core.errors import E_NO_KMS, NetworkError

if TYPE_CHECKING:
    from ospp.protocol.wire import Connection

REQUEST_TIMEOUT = 5.0  # seconds for one KMS request, connecting included


class NotTried(NetworkError):
    """A request not sent: its KMS host did not answer an earlier request of this pass within
    the timeout. Nothing was sent from the machine, and nothing was recorded in its store."""

    def __init__(self, where: str) -> None:
        super().__init__(
            E_NO_KMS,
            f"not tried: the KMS host at {where} did not answer a request within "
            f"{REQUEST_TIMEOUT:.0f} s earlier in this run",
            f"Nothing was sent from this machine and it was left as it is. Check that the host "
            f"at {where} runs and answers (ospp kms ping {where}), then run the command again.",
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
    its own until it answers again; once a request to it timed out, it is not tried again by
    this pool (:class:`NotTried`)."""

    def __init__(self) -> None:
        self._open: dict[str, Connection] = {}
        self._turns: dict[str, threading.Lock] = {}
        self._failing: set[str] = set()
        self._silent: set[str] = set()  # timed out: not tried again
        self._guard = threading.Lock()  # over the four above

    def call(self, endpoint: Endpoint, request: dict[str, Any]) -> dict[str, Any]:
        where = str(endpoint)
        with self._guard:
            turn = self._turns.setdefault(where, threading.Lock())
            failing = where in self._failing
        if not failing:
            with turn:
                with self._guard:  # again: it may have stopped answering while we waited
                    failing = where in self._failing
                    kept = None if failing else self._open.pop(where, None)
                if kept is not None:
                    try:
                        response = kept.call(request)
                    except NetworkError as exc:
                        kept.close()  # the host closed an idle connection: one fresh try below
                        if _timed_out(exc):  # connected, and it did not answer
                            self._fail(where, silent=True)
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

    def _fresh(self, where: str, endpoint: Endpoint, request: dict[str, Any]) -> dict[str, Any]:
        from ospp.protocol.wire import Connection

        with self._guard:
            if where in self._silent:
                raise NotTried(where)
        try:
            conn = Connection(endpoint, "KMS host", REQUEST_TIMEOUT)
            try:
                response = conn.call(request)
            except BaseException:
                conn.close()
                raise
        except NetworkError as exc:
            self._fail(where, silent=_timed_out(exc))
            raise
        with self._guard:  # it answered: tried again by every thread
            self._failing.discard(where)
            self._silent.discard(where)
        self._keep(where, conn)
        return response

    def _fail(self, where: str, silent: bool) -> None:
        with self._guard:
            self._failing.add(where)
            if silent:
                self._silent.add(where)

    def _keep(self, where: str, conn: Connection) -> None:
        with self._guard:
            if where not in self._open:
                self._open[where] = conn
                return
        conn.close()  # another thread's connection is kept

    def close(self) -> None:
        with self._guard:
            for conn in self._open.values():
                conn.close()
            self._open.clear()
