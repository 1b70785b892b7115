"""One connection of a server speaking the ospp wire protocol (:mod:`ospp.protocol.wire`):
frames in, one request at a time, answers out in order, the idle timeout and the deadline for
a frame's body, flow control both ways, and closing (gracefully, or with a reset when the peer
does not take its answers). :mod:`ospp.protocol.serving` listens and makes one per connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from ospp.core.errors import E_BAD_FORMAT as E_BAD_FRAME
from ospp.core.errors import E_UNEXPECTED, OsppError
from ospp.core.sockets import reset, unsent_bytes
from ospp.protocol.capacity import Gauge
from ospp.protocol.wire import (
    HEADER,
    MAX_FRAME,
    REQUEST_TIMEOUT,
    FrameError,
    decode,
    encode,
    error_response,
)

# Requests of one connection answered at once (pings, lone clients' activations) in one turn
# of the event loop: a connection that sends thousands in one write yields to the others
# after this many, instead of holding the loop for all of them.
ANSWERS_PER_TURN = 16

# A handler answers one request with a JSON object, or with the bytes of one already encoded.
Reply = dict[str, Any] | bytes
Handler = Callable[[dict[str, Any]], Awaitable[Reply]]


def encode_reply(reply: Reply) -> bytes:
    if isinstance(reply, bytes):
        if len(reply) > MAX_FRAME:
            raise FrameError(f"frame of {len(reply)} bytes exceeds {MAX_FRAME}")
        return HEADER.pack(len(reply)) + reply
    return encode(reply)


class FrameProtocol(asyncio.Protocol):
    """One connection: frames in, one request at a time, replies out in order.

    A protocol rather than streams: no task per request and no timer per read, which is
    most of the cost of a small request. One timer per connection enforces the idle
    timeout, the deadline for a frame's body to arrive and the draining of a closing
    connection.

    Reading stops while the peer is not taking its answers (``paused``) and while whole
    frames wait for the next turn of the loop (``more``: at most ANSWERS_PER_TURN are
    answered at once per turn), so neither a peer that does not read nor one that floods
    can grow the buffers. A connection whose answers are being taken is never idle; one
    whose answers stop moving is reset, not closed gracefully, so that neither it nor the
    kernel keeps them.
    """

    def __init__(self, handler: Handler, idle_timeout: float, gauge: Gauge) -> None:
        self.handler = handler
        self.gauge = gauge
        self.idle_timeout = idle_timeout
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.busy = False
        self.closed = False
        self.lost = False
        self.eof = False  # the peer shut its sending side: answer what came in full, then close
        # The peer is not taking its answers (the transport's buffer is full): read and answer
        # nothing more until it does, so a peer that never reads cannot grow our memory.
        self.paused = False
        self.more = False  # whole frames left for the next turn of the loop (one is scheduled)
        self.reading = True
        self.last = self.loop.time()
        self.partial_since: float | None = None
        # The answers not yet taken (ours and the kernel's) when last looked at, and when
        # they last went down: a peer taking them is not idle.
        self.unsent_seen: int | None = None
        self.moved_at = self.last
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.gauge.open += 1
        self.gauge.admit(self)
        if self.closed:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._wake_in(min(self.idle_timeout, REQUEST_TIMEOUT))

    def connection_lost(self, exc: Exception | None) -> None:
        self.gauge.open -= 1
        self.gauge.live.pop(self, None)
        self.closed = self.lost = True
        if self.timer is not None:
            self.timer.cancel()

    def _wake_in(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(max(0.05, seconds), self._check)

    def unsent(self) -> int:
        """Bytes of answers the peer has not taken: in our buffer and in the kernel's."""
        if self.transport is None or self.lost:
            return 0
        return self.transport.get_write_buffer_size() + unsent_bytes(
            self.transport.get_extra_info("socket")
        )

    def sending(self) -> bool:
        """Whether its answers are being taken: some were made or taken within the idle
        timeout and some are still unsent (the cap closes others first). A peer that stopped
        taking them is not sending, and is looked at without a system call."""
        if self.closed or self.loop.time() - self.moved_at >= self.idle_timeout:
            return False
        return self.unsent() > 0

    def _moving(self, now: float, within: float) -> bool:
        """Whether the peer has taken some of its answers in the last ``within`` seconds
        (or answers were added since the last look); False when none are left to take."""
        unsent = self.unsent()
        if unsent and (self.unsent_seen is None or unsent < self.unsent_seen):
            self.moved_at = now
        self.unsent_seen = unsent or None
        return bool(unsent) and now - self.moved_at < within

    def _drain_limit(self) -> float:
        """How long a closing connection may take no answer at all: TCP reopens a slow
        reader's window a segment at a time, so this is never less than the idle timeout."""
        return max(self.idle_timeout, REQUEST_TIMEOUT)

    def _check(self) -> None:
        now = self.loop.time()
        if self.lost:
            return
        assert self.transport is not None
        if self.closed:  # closed gracefully: close for good once the peer took every answer
            if not self.unsent():
                self.transport.close()
            elif not self._moving(now, self._drain_limit()):
                reset(self.transport)  # it took no answer for that long
            else:
                self._wake_in(0.2)
            return
        if self.partial_since is not None and now - self.partial_since >= REQUEST_TIMEOUT:
            return self.close()
        if self.busy:  # a request being answered: not idle, and nothing to look at until then
            return self._wake_in(self.idle_timeout)
        if now - self.last >= self.idle_timeout:
            if not self._moving(now, self.idle_timeout):
                return self.close()
            self.last = now  # the peer is still taking its answers: not idle
        wait = self.idle_timeout - (now - self.last)
        if self.partial_since is not None:
            wait = min(wait, REQUEST_TIMEOUT - (now - self.partial_since))
        self._wake_in(wait)

    def close(self) -> None:
        """Close the connection (idle, making room at the cap, or out of descriptors): at
        once, with a reset, when answers are still waiting to be taken, since a peer that does
        not read would otherwise keep them (with the kernel's buffers) and the descriptor for
        ever. A connection still draining after a graceful close is reset."""
        if self.transport is not None and not self.lost:
            if self.closed or self.unsent():
                reset(self.transport)
            else:
                self.transport.close()
        self.closed = True
        self.gauge.live.pop(self, None)

    def _end_gracefully(self) -> None:
        """Close once the peer has taken every answer (the end of input follows them at once);
        reset it if it takes none for the drain limit meanwhile (see _check). Until then it
        counts against the connection cap, and the cap closes it first."""
        if self.closed or self.transport is None:
            return
        transport = self.transport
        if self.reading and not transport.is_closing():
            transport.pause_reading()  # nothing more is read while the answers drain
            self.reading = False
        self.closed = True
        self.gauge.live.move_to_end(self, last=False)
        self.unsent_seen, self.moved_at = None, self.loop.time()
        if self.unsent() and transport.can_write_eof() and not transport.is_closing():
            transport.write_eof()  # the peer sees the end right after its last answer
        self._check()

    def data_received(self, data: bytes) -> None:
        if self.closed:  # closing: what it sends now is never read
            return
        self.buffer += data
        self.last = self.loop.time()
        self.gauge.live.move_to_end(self)
        if not self.more:  # else the turn already scheduled answers these too
            self._pump_safely()

    def eof_received(self) -> bool:
        """The peer sends nothing more (a half-close, ``shutdown(SHUT_WR)``): every request
        it sent in full is still answered; the connection closes after the last answer."""
        self.eof = True
        self._close_when_answered()
        return True  # keep the transport open for the answers still to come

    def pause_writing(self) -> None:
        self.paused = True
        self._read_when_ready()

    def resume_writing(self) -> None:
        self.paused = False
        if not self.more:
            self._pump_safely()

    def _read_when_ready(self) -> None:
        """Read from the peer only while its answers are taken and no frame waits."""
        want = not self.paused and not self.more
        if want == self.reading or self.closed or self.transport is None:
            return
        if self.transport.is_closing():
            return
        self.reading = want
        if want:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def _close_when_answered(self) -> None:
        """After end of input: close once every complete request has been answered."""
        if self.eof and not self.busy and not self.paused and not self.more:
            self._end_gracefully()  # what is left in the buffer is not a whole frame

    def _pump_safely(self) -> None:
        try:
            self._pump()
        except Exception as exc:  # a bug, not the peer's: answer it, no traceback per frame
            self._send(error_response(E_UNEXPECTED, f"internal error: {type(exc).__name__}"))
            self._end_gracefully()
        self._close_when_answered()
        self._read_when_ready()

    def _writable(self) -> bool:
        """Not closed, and the transport not closing (after a reset by the peer, writing
        would only make asyncio log a warning per answer)."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def _send(self, reply: Reply) -> None:
        if self.transport is not None and self._writable():
            try:
                data = encode_reply(reply)
            except FrameError as exc:  # an answer too large to send: say so instead
                data = encode(error_response(E_UNEXPECTED, str(exc)))
            self.transport.write(data)

    def _pump(self) -> None:
        self.more = False
        answered = 0  # frames answered in this turn, errors included
        while not self.busy and not self.paused and self._writable() and len(self.buffer) >= 4:
            if answered == ANSWERS_PER_TURN:  # let the other connections in first
                self.more = True
                self.loop.call_soon(self._resume)
                return
            (length,) = HEADER.unpack_from(self.buffer)
            if length > MAX_FRAME:
                self._send(error_response(E_BAD_FRAME, f"frame exceeds {MAX_FRAME} bytes"))
                return self._end_gracefully()
            if len(self.buffer) < 4 + length:
                self.partial_since = self.partial_since or self.loop.time()
                return
            body = bytes(self.buffer[4 : 4 + length])
            del self.buffer[: 4 + length]
            self.partial_since = None
            answered += 1
            try:
                message = decode(body)
            except FrameError as exc:
                self._send(error_response(E_BAD_FRAME, str(exc)))
                continue
            self.busy = True
            try:
                pending = asyncio.ensure_future(self.handler(message))
            except OsppError as exc:
                self.busy = False
                self._send(error_response(exc.code, exc.message))
                continue
            if pending.done():  # answered at once (a batch complete): no extra turn of the loop
                self._reply(pending)
                continue
            pending.add_done_callback(self._done)

    def _done(self, pending: asyncio.Future[Reply]) -> None:
        self._reply(pending)
        self._pump_safely()

    def _resume(self) -> None:
        if self.more:
            self._pump_safely()

    def _reply(self, pending: asyncio.Future[Reply]) -> None:
        self.busy = False
        self.last = self.loop.time()
        self.unsent_seen = None  # answers added: what is unsent now is the new baseline
        self.moved_at = self.last
        try:
            reply: Reply = pending.result()
        except FrameError as exc:
            reply = error_response(E_BAD_FRAME, str(exc))
        except OsppError as exc:
            reply = error_response(exc.code, exc.message)
        except Exception as exc:  # the server stays up; the client learns it failed
            reply = error_response(E_UNEXPECTED, f"internal error: {type(exc).__name__}")
        self._send(reply)
