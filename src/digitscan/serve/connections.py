"""Connection guards for uvicorn: a deadline for each request's headers, a cap on open connections, a bounded log.

uvicorn has no header timeout: a client that connects and sends half a request line keeps its connection (and a file
descriptor) forever, and near the descriptor limit every `accept()` fails and asyncio logs a traceback per failure,
thousands a second. `GuardedProtocol(header_timeout_s, max_connections)` makes uvicorn's h11 protocol with a deadline
for the headers (and for a body nobody reads) and an immediate 503 for connections past the cap;
`fit_to_open_file_limit` keeps that cap below the open-file limit; `RepeatedLogFilter` lets one line of each known
flood through per interval. `app.run` wires them in.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from digitscan.constants import FILE_DESCRIPTOR_RESERVE, REPEATED_LOG_INTERVAL_S

log = logging.getLogger("digitscan.serve")

# Written to a connection past the cap before closing it, without waiting for (or reading) its request.
SERVICE_UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
                       b"content-length: 34\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
                       b"too many connections; retry later\n")
REFUSED_CONNECTION = "refused a connection: already %d open (max_connections)"
# Log lines that come once per bad connection or failed accept: under attack they come thousands a second.
FLOODS = (
    "socket.accept() out of system resource",  # asyncio, once per failed accept (EMFILE), with a traceback
    "Exceeded concurrency limit.",  # uvicorn, once per request answered 503
    "Invalid HTTP request received.",  # uvicorn, once per malformed request
    "refused a connection",  # ours (REFUSED_CONNECTION), once per connection past the cap
    # asyncio retries accept() later once per failed accept, and each retry still pending at shutdown fails
    "Exception in callback BaseSelectorEventLoop._start_serving",
)


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus: the headers of each request must be complete within `header_timeout_s` of the
    connection opening or of the request's first byte (a deadline, not an idle timer, so trickling bytes does not
    extend it), else the connection is closed, and so must the body of a request that was answered without reading
    it; and a connection opened while `max_connections` are already open is answered 503 and closed at once,
    without reading it, so a flood of connections cannot use up the file descriptors (uvicorn's own
    limit_concurrency only answers 503 once a request is complete)."""

    def __init__(self, *args, header_timeout_s: float = 10.0, max_connections: int = 1000, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s  # both set per server by GuardedProtocol
        self.max_connections = max_connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_deadline: asyncio.TimerHandle | None = None
        send_without_delay(transport)
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:  # it counts itself
            log.warning(REFUSED_CONNECTION, len(self.connections) - 1)
            transport.write(SERVICE_UNAVAILABLE)
            transport.close()
            return
        self._arm_header_deadline()  # a client that connects and sends nothing is held to it too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_deadline()  # bytes of the next request may have come in while this one was being answered

    def _watch_deadline(self) -> None:
        """Keep the deadline while the client owes bytes that nothing waits for: the rest of a request's headers,
        or the body of a request already answered (a 413, a 405): uvicorn discards those bytes, and each one would
        otherwise restart its keep-alive timer, so trickling them held the connection forever."""
        headers_pending = self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])
        unread_body = self.conn.our_state in (h11.DONE, h11.MUST_CLOSE) and self.conn.their_state is h11.SEND_BODY
        if headers_pending or unread_body:
            self._arm_header_deadline()
        else:
            self._cancel_header_deadline()  # headers complete, or idle between requests (timeout_keep_alive's turn)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None and not self.transport.is_closing():
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def send_without_delay(transport: asyncio.Transport) -> None:
    """TCP_NODELAY on the connection, so an answer's last segment is not held back waiting for an ACK. asyncio sets it
    only on sockets whose protocol number says TCP, and the listening socket uvicorn binds for its worker processes
    is made with protocol 0, as are the connections it accepts: without this, every answer after the first on a
    kept-alive connection waited ~40 ms for the client's delayed ACK (Nagle's algorithm) with --workers 2."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # the connection is already gone; nothing to tune
            pass


@dataclass(frozen=True)
class GuardedProtocol:
    """What to pass as uvicorn's `http=`: makes HeaderDeadlineProtocol connections with this server's header
    deadline and connection cap. A plain module-level class with two fields, so it pickles: uvicorn sends its
    config, `http` included, to each spawned worker process (a class made at run time would not survive that)."""

    header_timeout_s: float
    max_connections: int

    def __call__(self, *args, **kwargs) -> HeaderDeadlineProtocol:
        return HeaderDeadlineProtocol(*args, header_timeout_s=self.header_timeout_s,
                                      max_connections=self.max_connections, **kwargs)


class RepeatedLogFilter(logging.Filter):
    """Lets through at most one record per `interval_s` for each message in FLOODS, as one line without its
    traceback, saying how many were dropped since the last; every other record passes untouched."""

    def __init__(self, interval_s: float = REPEATED_LOG_INTERVAL_S):
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[str, float] = {}  # flood -> when its last line went through
        self._dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        flood = next((prefix for prefix in FLOODS if message.startswith(prefix)), None)
        if flood is None:
            return True
        now = time.monotonic()
        if now - self._last.get(flood, -self.interval_s) < self.interval_s:
            self._dropped[flood] = self._dropped.get(flood, 0) + 1
            return False
        self._last[flood] = now
        dropped = self._dropped.pop(flood, 0)
        error = record.exc_info[1] if record.exc_info else None
        record.msg = record.getMessage().split("\n")[0] + (f": {error}" if error else "")
        if dropped:
            record.msg += f" ({dropped:,} more like it in the last {self.interval_s:g} s not logged)"
        record.args, record.exc_info, record.exc_text = (), None, None
        return True


def fit_to_open_file_limit(max_connections: int) -> int:
    """The connection cap to use: `max_connections`, after raising the soft open-file limit to fit it (plus the
    process's own files) where the hard limit allows; else lowered to fit, with a warning. Past the open-file limit
    accept() fails, and asyncio then neither accepts nor refuses anyone, so the cap must come first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    needed = max_connections + FILE_DESCRIPTOR_RESERVE
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    cap = max(1, min(max_connections, soft - FILE_DESCRIPTOR_RESERVE))
    if cap < max_connections:
        log.warning("max_connections lowered from %d to %d: the open-file limit is %d (%d kept for the server's "
                    "own files)", max_connections, cap, soft, FILE_DESCRIPTOR_RESERVE)
    return cap
