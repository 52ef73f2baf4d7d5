"""A fault-injecting HTTP proxy between the bot and the test Synapse (aiohttp, on loopback).

The bot's `[matrix] homeserver` points at `proxy.url`; members keep talking to Synapse directly.
Every switch is one attribute or method, flipped by a test while the bot runs:

- `down()` answers every request (those in flight or held too) with a 502 HTML page,
  `refuse_connections()` closes the listener and every open connection, `up()` forwards again;
- `sends` = "hold": send requests wait in the proxy and are never forwarded;
  "hold_answer": forwarded to Synapse, but the answer is kept back (the client never sees it);
- `drop_send_answers = n`: the next n sends are forwarded, then the connection is cut before
  the answer, so the client cannot know whether the server took them;
- `hold_reads_of`: a regular expression; GET requests whose path matches it wait in the proxy,
  never forwarded (e.g. the room state the bot reads to check a moderator's level);
- `rate_limit_sends = n`: the next n sends get `M_LIMIT_EXCEEDED` with `retry_after_ms`;
- `replay_sync_containing(event_id)`: the next sync gets an earlier sync answer (one that
  carried `event_id`) again;
- `inject_events(room_id, events)`: the next sync answer carries these extra timeline events,
  and so does every answer to a retry of that sync (as if the server had stored them).

`seen` records every request with the time and how it was answered.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

SEND_PATH = re.compile(r"/rooms/[^/]+/send/[^/]+/(?P<txn_id>[^/]+)$")
BAD_GATEWAY_PAGE = ("<html><head><title>502 Bad Gateway</title></head>"
                    "<body><h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>")
# Headers that belong to one hop, or that aiohttp sets itself.
NOT_FORWARDED = {"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                 "accept-encoding", "content-encoding"}


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic()
    method: str
    path: str  # without the query
    answer: str  # forwarded, 502, held, held_answer, dropped, 429, replayed
    status: int = 0  # Synapse's status for what was forwarded

    @property
    def is_send(self) -> bool:
        return SEND_PATH.search(self.path) is not None

    @property
    def txn_id(self) -> str | None:
        match = SEND_PATH.search(self.path)
        return match["txn_id"] if match else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.seen: list[Seen] = []
        self.sends = "forward"  # or "hold", "hold_answer"
        self.drop_send_answers = 0
        self.hold_reads_of: str | None = None
        self.rate_limit_sends = 0
        self.retry_after_ms = 300
        self._is_down = False
        self._replay: bytes | None = None
        self._injected: dict[str, list[Any]] = {}  # room id → events, not delivered yet
        self._delivered: dict[str, dict[str, list[Any]]] = {}  # by the sync's `since`
        self._sync_answers: list[bytes] = []  # bodies of successful syncs, oldest first
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._release = asyncio.Event()  # ends every hold (at stop, or when switched)
        self._client: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        # No total timeout: a sync long poll takes up to 30 s.
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None),
                                             auto_decompress=False)
        await self._listen()

    async def stop(self) -> None:
        self._release.set()
        await self._close_listener()
        if self._client is not None:
            await self._client.close()

    async def _listen(self) -> None:
        app = web.Application(client_max_size=1024 ** 3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _close_listener(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- switches ----------------------------------------------------------------------------

    def down(self) -> None:
        """Answer everything with a 502 page from now on, the requests in flight (and held)
        included."""
        self._is_down = True
        for task in list(self._in_flight):
            task.cancel()
        self.release_held()

    async def refuse_connections(self) -> None:
        """Like a stopped server: no listener, every open connection closed."""
        self.down()
        await self._close_listener()

    async def up(self) -> None:
        self._is_down = False
        if self._runner is None:
            await self._listen()

    def release_held(self) -> None:
        """End every hold: held requests are answered 502 (their client is usually dead)."""
        self._release.set()
        self._release = asyncio.Event()

    def replay_sync_containing(self, event_id: str) -> None:
        bodies = [b for b in self._sync_answers if event_id.encode() in b]
        assert bodies, f"no sync answer seen that carried {event_id}"
        self._replay = bodies[0]  # the first: later ones may only mention it (a reply)

    def inject_events(self, room_id: str, events: list[Any]) -> None:
        self._injected.setdefault(room_id, []).extend(events)

    def injected_pending(self) -> int:
        """Injected events not yet handed to the client."""
        return sum(len(events) for events in self._injected.values())

    # -- reading what happened ---------------------------------------------------------------

    def sends_seen(self) -> list[Seen]:
        return [s for s in self.seen if s.is_send]

    def requests_between(self, start: float, end: float) -> list[Seen]:
        return [s for s in self.seen if start <= s.at <= end]

    async def wait_for(self, answer: str, count: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for s in self.seen if s.answer == answer) < count:
            assert time.monotonic() < deadline, f"fewer than {count} requests {answer}"
            await asyncio.sleep(0.05)

    # -- the handler -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        is_send = request.method == "PUT" and SEND_PATH.search(path) is not None
        is_sync = request.method == "GET" and path.endswith("/sync")

        def note(answer: str, status: int = 0) -> None:
            self.seen.append(Seen(time.monotonic(), request.method, path, answer, status))

        if self._is_down:
            note("502")
            return _bad_gateway()
        if is_send and self.rate_limit_sends > 0:
            self.rate_limit_sends -= 1
            note("429")
            return web.json_response({"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests",
                                      "retry_after_ms": self.retry_after_ms}, status=429)
        held_read = (request.method == "GET" and self.hold_reads_of is not None
                     and re.search(self.hold_reads_of, path) is not None)
        if held_read or (is_send and self.sends == "hold"):
            note("held")
            await self._release.wait()
            return _bad_gateway()  # never forwarded
        if is_sync and self._replay is not None:
            body, self._replay = self._replay, None
            note("replayed")
            return web.Response(body=body, content_type="application/json")

        answer = await self._forward_unless_down(request)
        if answer is None:
            note("502")
            return _bad_gateway()
        status, content_type, body = answer
        if is_send and self.sends == "hold_answer":
            note("held_answer", status)
            await self._release.wait()
            return _bad_gateway()
        if is_send and self.drop_send_answers > 0:
            self.drop_send_answers -= 1
            note("dropped", status)
            _cut(request)
            return web.Response(status=200)  # never reaches the client: the connection is gone
        if is_sync and status == 200:
            body = self._after_sync(request.query.get("since", ""), body)
        note("forwarded", status)
        return web.Response(status=status, body=body, content_type=content_type)

    async def _forward_unless_down(self, request: web.Request) -> tuple[int, str, bytes] | None:
        """Synapse's answer, or None if the proxy went down while waiting for it."""
        task = asyncio.ensure_future(self._forward(request))
        self._in_flight.add(task)
        try:
            await asyncio.wait({task})
        finally:
            self._in_flight.discard(task)
            if not task.done():  # the handler itself was cancelled
                task.cancel()
        if task.cancelled():
            return None
        return task.result()

    async def _forward(self, request: web.Request) -> tuple[int, str, bytes]:
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        data = await request.read()
        async with self._client.request(request.method, self.upstream + request.path_qs,
                                        headers=headers, data=data or None) as response:
            body = await response.read()
            return response.status, response.content_type, body

    def _after_sync(self, since: str, body: bytes) -> bytes:
        if self._injected:
            self._delivered[since], self._injected = self._injected, {}
        if since in self._delivered:
            parsed = json.loads(body)
            rooms = parsed.setdefault("rooms", {}).setdefault("join", {})
            for room_id, events in self._delivered[since].items():
                timeline = rooms.setdefault(room_id, {}).setdefault("timeline", {})
                timeline.setdefault("events", []).extend(events)
            body = json.dumps(parsed).encode()
        if b'"timeline"' in body:
            self._sync_answers.append(body)
        return body


def _bad_gateway() -> web.Response:
    return web.Response(status=502, text=BAD_GATEWAY_PAGE, content_type="text/html")


def _cut(request: web.Request) -> None:
    """Close the client's connection without an answer."""
    transport = request.transport
    if transport is not None:
        transport.close()
