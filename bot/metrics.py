"""What an operator can watch: Prometheus `/metrics` and `/healthz` on a loopback address.

`Metrics` holds the bot's numbers in a registry of its own. The running parts only count
(`command_done`, `synced`, `send_result`, …); what lives in the database (queue depths,
deliveries) is read when Prometheus asks, by the `refresh` function the bot passes in. No label
ever holds what a member wrote or who they are: commands are labelled by their registered name.

`/healthz` answers 200 while the sync loop runs and has synced recently, else 503, with a small
JSON body saying why.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder

from storage import Storage
from storage.deliveries import STATUSES

log = logging.getLogger(__name__)

# A sync long-polls 30 s; after this long without a successful one the bot counts as unhealthy.
HEALTHY_SYNC_AGE_S = 90.0


class Metrics:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.registry = registry = CollectorRegistry()
        self.last_sync_at: float | None = None
        self._commands = Counter(
            "nextbot_commands_handled", "Commands answered, by command name and outcome "
            "(ok, usage, refused, user_error, error, retry_later, unknown)", ["command", "outcome"],
            registry=registry)
        self._failed = Counter(
            "nextbot_commands_failed", "Commands that failed with an internal error, by name",
            ["command"], registry=registry)
        self._rate_limited = Counter(
            "nextbot_commands_rate_limited", "Commands over the per-member limit: answered with "
            "'slow down' once, then dropped", ["action"], registry=registry)
        self.limited_members = Gauge(
            "nextbot_rate_limited_members", "Members held back by the per-member limit now",
            registry=registry)
        self._syncs = Counter("nextbot_syncs", "Sync requests, by result (ok, failed)",
                              ["result"], registry=registry)
        self._last_sync = Gauge("nextbot_last_sync_timestamp_seconds",
                                "When the last sync succeeded (Unix time)", registry=registry)
        Gauge("nextbot_sync_lag_seconds", "Seconds since the last successful sync",
              registry=registry).set_function(self.sync_age)
        self._set_aside = Counter(
            "nextbot_events_set_aside", "Events from a sync that could not be read (malformed) "
            "or stored (unstorable: e.g. a lone surrogate in an id), left out so that the rest of "
            "their batch is committed", ["reason"], registry=registry)
        self._event_lag = Gauge(
            "nextbot_event_lag_seconds", "Age of the newest event when its sync arrived",
            registry=registry)
        self._sends = Counter("nextbot_sends", "Send attempts, by outcome (sent, rate_limited, "
                              "transient, refused)", ["outcome"], registry=registry)
        self.send_queue = Gauge("nextbot_send_queue_messages", "Messages waiting to be sent "
                                "(outbox rows)", registry=registry)
        self._sends_refused = Counter(
            "nextbot_sends_refused", "Messages the homeserver refused for good (not in the room, "
            "too large …), set aside so that their room's queue goes on, by Matrix error code",
            ["errcode"], registry=registry)
        self.refused_kept = Gauge("nextbot_sends_refused_kept_messages", "Messages set aside "
                                  "after a refusal, still kept in the outbox for the operator",
                                  registry=registry)
        self.command_queue = Gauge("nextbot_command_queue_messages", "Commands waiting to be "
                                   "handled (inbox rows)", registry=registry)
        self.scheduled_jobs = Gauge("nextbot_scheduled_jobs", "Jobs planned in the scheduler",
                                    registry=registry)
        self.deliveries = Gauge("nextbot_deliveries", "Scheduled posts recorded in the database, "
                                "by status (sent, late, skipped)", ["status"], registry=registry)

    # -- counted by the running parts ------------------------------------------------------------

    def command_done(self, command: str, outcome: str) -> None:
        self._commands.labels(command, outcome).inc()
        if outcome == "error":
            self._failed.labels(command).inc()

    def rate_limited(self, answered: bool) -> None:
        self._rate_limited.labels("answered" if answered else "dropped").inc()

    def synced(self, newest_event_ms: int | None = None) -> None:
        now = self._clock()
        self.last_sync_at = now
        self._syncs.labels("ok").inc()
        self._last_sync.set(now)
        if newest_event_ms is not None:
            self._event_lag.set(max(0.0, now - newest_event_ms / 1000))

    def event_set_aside(self, reason: str) -> None:
        self._set_aside.labels(reason).inc()

    def sync_failed(self) -> None:
        self._syncs.labels("failed").inc()

    def send_result(self, outcome: str) -> None:
        self._sends.labels(outcome).inc()

    def send_refused(self, errcode: str) -> None:
        """A message set aside; the label is a Matrix error code (or `HTTP 403`) or `other`."""
        known = re.fullmatch(r"M_[A-Z_]{1,40}|HTTP \d{3}", errcode or "")
        self._sends_refused.labels(errcode if known else "other").inc()

    async def refresh(self, storage: Storage, scheduled_jobs: int, limited_members: int) -> None:
        """Read what lives in the database, just before Prometheus gets the numbers."""
        self.send_queue.set(await storage.outbox.count())
        self.refused_kept.set(await storage.outbox.count_failed())
        self.command_queue.set(await storage.inbox.count())
        for status in STATUSES:
            self.deliveries.labels(status).set(await storage.deliveries.count(status))
        self.scheduled_jobs.set(scheduled_jobs)
        self.limited_members.set(limited_members)

    # -- read ------------------------------------------------------------------------------------

    def sync_age(self) -> float:
        """Seconds since the last successful sync (NaN before the first)."""
        if self.last_sync_at is None:
            return float("nan")
        return max(0.0, self._clock() - self.last_sync_at)

    def health(self, sync_running: bool) -> tuple[bool, dict[str, object]]:
        if not sync_running:
            return False, {"status": "sync stopped"}
        if self.last_sync_at is None:
            return False, {"status": "starting"}
        age = round(self.sync_age(), 1)
        if age > HEALTHY_SYNC_AGE_S:
            return False, {"status": "sync stale", "last_sync_seconds_ago": age}
        return True, {"status": "ok", "last_sync_seconds_ago": age}


class MetricsAddressError(Exception):
    """The configured address cannot be listened on (in use, not local, no permission)."""


class MetricsServer:
    """The HTTP side: serves `/metrics` and `/healthz` from the bot's own event loop."""

    def __init__(self, metrics: Metrics, address: tuple[str, int], *,
                 refresh: Callable[[], Awaitable[None]],
                 sync_running: Callable[[], bool]) -> None:
        self._metrics = metrics
        self._host, self._port = address
        self._refresh = refresh
        self._sync_running = sync_running
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (useful with port 0, which picks a free one)."""
        assert self._runner is not None, "not started"
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_health)
        runner = web.AppRunner(app, access_log=None)  # a scrape every 15 s needs no log line
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            raise MetricsAddressError(f"metrics.listen: cannot listen on {self._host}:"
                                      f"{self._port} ({exc.strerror or exc})") from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("metrics and health on http://%s:%d/metrics and /healthz",
                 self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        try:
            await self._refresh()
        except Exception as exc:  # the counters are still worth serving
            log.warning("metrics: could not read the queues (%s)", type(exc).__name__)
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self._metrics.registry),
                            headers={"Content-Type": content_type})

    async def _serve_health(self, request: web.Request) -> web.Response:
        healthy, body = self._metrics.health(self._sync_running())
        return web.Response(status=200 if healthy else 503, text=json.dumps(body),
                            content_type="application/json")
