"""The measuring side: a lean Matrix client per member, on plain aiohttp.

A member logs in, creates rooms, sends commands and keeps one long-polling `/sync` running. Each
sync response is stamped with `time.perf_counter()` when it has arrived and been parsed; every
`m.room.message` from a watched bot that replies to an event (`m.relates_to.m.in_reply_to`) is
recorded under that event's id with that stamp. A command's latency is the stamp of its first
reply minus the moment its send began.

nio is deliberately not used here: it validates every response against JSON schemas, which under
a burst would put the measuring client's own CPU time into the figures of both bots.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from typing import Any
from urllib.parse import quote

import aiohttp

CLIENT_API = "/_matrix/client/v3"
SYNC_TIMEOUT_MS = 30_000
SEND_ATTEMPTS = 3

# Only room messages, up to 1000 per room and sync: a member's sync is never cut short
# (`limited`) by the at most 200 events a benchmark room gets between two of its syncs.
MEMBER_FILTER: dict[str, Any] = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {
        "timeline": {"limit": 1000, "types": ["m.room.message"]},
        "state": {"lazy_load_members": True, "types": []},
        "ephemeral": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    },
}

_txn = itertools.count()


class MatrixHTTPError(RuntimeError):
    def __init__(self, what: str, status: int, body: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:300]}")
        self.status = status


def reply_target(event: dict[str, Any]) -> str | None:
    relates = (event.get("content") or {}).get("m.relates_to") or {}
    target = (relates.get("m.in_reply_to") or {}).get("event_id")
    return target if isinstance(target, str) else None


class Member:
    """One account's client. `start_sync()` before sending; `close()` when done."""

    def __init__(self, homeserver: str, user_id: str, max_connections: int = 20) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._token = ""
        self._filter_id = ""
        self._since: str | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self.bots: set[str] = set()  # whose replies are recorded
        # reply target event id -> perf_counter stamps of every reply seen to it
        self.replies: dict[str, list[float]] = {}
        self.limited_syncs = 0  # a room's timeline cut short in our own sync: counts are unsafe
        self.sync_errors = 0
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._new_reply = asyncio.Event()

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def _request(self, method: str, path: str, what: str, *, body: Any = None,
                       params: dict[str, str] | None = None, timeout: float = 60.0,
                       auth: bool = True) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token}"} if auth else {}
        async with self.session.request(
            method, f"{self.homeserver}{CLIENT_API}{path}", json=body, params=params,
            headers=headers, timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            if response.status != 200:
                raise MatrixHTTPError(what, response.status, text)
            return json.loads(text)

    async def close(self) -> None:
        await self.stop_sync()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- account and rooms ------------------------------------------------------------------

    async def login(self, password: str) -> None:
        localpart = self.user_id[1:].split(":", 1)[0]
        answer = await self._request("POST", "/login", "login", auth=False, body={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
            "initial_device_display_name": "bench member",
        })
        self._token = answer["access_token"]
        created = await self._request("POST", f"/user/{quote(self.user_id)}/filter", "filter",
                                      body=MEMBER_FILTER)
        self._filter_id = created["filter_id"]

    async def create_room(self, invite: list[str], name: str) -> str:
        answer = await self._request("POST", "/createRoom", "createRoom", body={
            "preset": "private_chat", "name": name, "invite": invite,
        })
        return answer["room_id"]

    async def joined_members(self, room_id: str) -> set[str]:
        answer = await self._request("GET", f"/rooms/{quote(room_id)}/joined_members",
                                     "joined_members")
        return set(answer.get("joined", {}))

    async def wait_joined(self, room_id: str, user_id: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while user_id not in await self.joined_members(room_id):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{user_id} did not join {room_id} within {timeout:.0f} s")
            await asyncio.sleep(0.1)

    async def send(self, room_id: str, body: str) -> str:
        """Send an `m.text`; retried with the same transaction id, so never sent twice."""
        txn = f"bench-{time.time_ns()}-{next(_txn)}"
        path = f"/rooms/{quote(room_id)}/send/m.room.message/{txn}"
        for attempt in range(SEND_ATTEMPTS):
            try:
                answer = await self._request("PUT", path, "send",
                                             body={"msgtype": "m.text", "body": body})
                return answer["event_id"]
            except (aiohttp.ClientError, TimeoutError, MatrixHTTPError) as exc:
                if attempt == SEND_ATTEMPTS - 1 or (
                    isinstance(exc, MatrixHTTPError) and exc.status not in (429, 502, 503)
                ):
                    raise
                await asyncio.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    # -- reading ----------------------------------------------------------------------------

    async def start_sync(self) -> None:
        """One immediate sync to start from now, then long-polling in the background."""
        await self._sync_once(timeout_ms=0)
        self._sync_task = asyncio.create_task(self._sync_loop(), name=f"sync {self.user_id}")

    async def stop_sync(self) -> None:
        task, self._sync_task = self._sync_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self._sync_once(SYNC_TIMEOUT_MS)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.sync_errors += 1
                await asyncio.sleep(0.5)

    async def _sync_once(self, timeout_ms: int) -> None:
        params = {"timeout": str(timeout_ms), "filter": self._filter_id}
        if self._since:
            params["since"] = self._since
        answer = await self._request("GET", "/sync", "sync", params=params,
                                     timeout=timeout_ms / 1000 + 30)
        seen = time.perf_counter()
        self._since = answer["next_batch"]
        found = False
        for room in ((answer.get("rooms") or {}).get("join") or {}).values():
            timeline = room.get("timeline") or {}
            if timeline.get("limited") and self._sync_task is not None:
                self.limited_syncs += 1
            for event in timeline.get("events") or []:
                if event.get("sender") not in self.bots or event.get("type") != "m.room.message":
                    continue
                target = reply_target(event)
                if target is None:
                    continue
                self.replies.setdefault(target, []).append(seen)
                found = True
                waiter = self._waiters.pop(target, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(seen)
        if found:
            self._new_reply.set()

    async def reply_to(self, event_id: str, timeout: float) -> float:
        """The stamp of the first reply to `event_id` (TimeoutError if none comes in time)."""
        if event_id in self.replies:
            return self.replies[event_id][0]
        waiter = self._waiters.setdefault(event_id, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        finally:
            self._waiters.pop(event_id, None)

    def reply_count(self) -> int:
        return sum(len(stamps) for stamps in self.replies.values())
