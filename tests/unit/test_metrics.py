"""Metrics, /healthz and /metrics over real HTTP on loopback, the hooks that count, the settings,
and the example systemd unit."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import aiohttp
import pytest

from bot.matrix.connection import SendOutcome, SendResult, TransientError
from bot.metrics import HEALTHY_SYNC_AGE_S, Metrics, MetricsAddressError, MetricsServer
from bot.pipeline.backoff import Backoff
from bot.pipeline.sender import Sender
from bot.pipeline.syncer import Syncer, SyncListener
from bot.settings import ConfigError, load_settings, parse_listen
from storage.deliveries import Delivery
from storage.outbox import OutgoingMessage
from tests.unit.fakes import ROOM, FakeSyncSource, FakeTransport, batch, config

UNIT_FILE = Path(__file__).resolve().parents[2] / "deploy" / "nextbot.service"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# -- counting ------------------------------------------------------------------------------------


def test_commands_are_counted_by_name_and_failures_separately():
    metrics = Metrics()
    metrics.command_done("ping", "ok")
    metrics.command_done("ping", "ok")
    metrics.command_done("experts", "error")
    assert value(metrics, "nextbot_commands_handled_total", command="ping", outcome="ok") == 2
    assert value(metrics, "nextbot_commands_failed_total", command="experts") == 1
    assert value(metrics, "nextbot_commands_failed_total", command="ping") is None


def test_sync_lag_and_health_follow_the_last_successful_sync():
    clock = Clock()
    metrics = Metrics(clock)
    assert metrics.health(sync_running=True) == (False, {"status": "starting"})
    assert math.isnan(value(metrics, "nextbot_sync_lag_seconds"))
    metrics.synced(newest_event_ms=int((clock.now - 2) * 1000))
    assert value(metrics, "nextbot_event_lag_seconds") == pytest.approx(2)
    clock.now += 5
    assert value(metrics, "nextbot_sync_lag_seconds") == pytest.approx(5)
    assert metrics.health(sync_running=True) == (True, {"status": "ok",
                                                        "last_sync_seconds_ago": 5.0})
    assert metrics.health(sync_running=False)[0] is False
    clock.now += HEALTHY_SYNC_AGE_S
    healthy, body = metrics.health(sync_running=True)
    assert not healthy and body["status"] == "sync stale"


async def test_the_syncer_counts_successes_and_failures(storage):
    metrics = Metrics()
    source = FakeSyncSource([batch("s1"), TransientError("502"), batch("s2")])

    async def no_sleep(seconds: float) -> None:
        pass

    syncer = Syncer(source, storage, SyncListener(), prefix="!",
                    now_ms=lambda: 1_700_000_000_000, backoff=Backoff(sleep=no_sleep),
                    metrics=metrics)
    with pytest.raises(asyncio.CancelledError):  # how the fake's script ends
        await syncer.run()
    assert value(metrics, "nextbot_syncs_total", result="ok") == 2
    assert value(metrics, "nextbot_syncs_total", result="failed") == 1
    assert metrics.last_sync_at is not None


async def test_the_sender_counts_each_attempt_by_outcome(storage):
    metrics = Metrics()
    transport = FakeTransport([SendResult(SendOutcome.RATE_LIMITED, retry_after_ms=1)])

    async def no_sleep(seconds: float) -> None:
        pass

    sender = Sender(transport, storage.outbox, sleep=no_sleep, metrics=metrics)
    await storage.outbox.add([OutgoingMessage("t1", ROOM, {"body": "x"})], created_at=1)
    await sender.drain_room(ROOM)
    assert value(metrics, "nextbot_sends_total", outcome="rate_limited") == 1
    assert value(metrics, "nextbot_sends_total", outcome="sent") == 1


async def test_refresh_reads_queues_and_deliveries_from_the_database(storage):
    metrics = Metrics()
    await storage.outbox.add([OutgoingMessage(f"t{i}", ROOM, {"body": "x"}) for i in range(3)],
                             created_at=1)
    await storage.deliveries.record(Delivery("k1", "workshops", ROOM, 1, 2, "sent"))
    await storage.deliveries.record(Delivery("k2", "workshops", ROOM, 1, 2, "late"))
    await storage.deliveries.record(Delivery("k3", "workshops", ROOM, 1, 2, "sent"))
    await metrics.refresh(storage, scheduled_jobs=4, limited_members=1)
    assert value(metrics, "nextbot_send_queue_messages") == 3
    assert value(metrics, "nextbot_command_queue_messages") == 0
    assert value(metrics, "nextbot_deliveries", status="sent") == 2
    assert value(metrics, "nextbot_deliveries", status="late") == 1
    assert value(metrics, "nextbot_deliveries", status="skipped") == 0
    assert value(metrics, "nextbot_scheduled_jobs") == 4
    assert value(metrics, "nextbot_rate_limited_members") == 1


# -- over HTTP -----------------------------------------------------------------------------------


@pytest.fixture
async def served():
    """A server on a free loopback port; `state` steers what it reports."""
    clock = Clock()
    metrics = Metrics(clock)
    state = {"running": True, "refreshes": 0, "fail": False}

    async def refresh() -> None:
        state["refreshes"] += 1
        if state["fail"]:
            raise RuntimeError("database closed")
        metrics.send_queue.set(7)

    server = MetricsServer(metrics, ("127.0.0.1", 0), refresh=refresh,
                           sync_running=lambda: state["running"])
    await server.start()
    async with aiohttp.ClientSession(f"http://127.0.0.1:{server.port}") as http:
        yield metrics, clock, state, http, server.port
    await server.stop()


async def test_metrics_endpoint_serves_the_prometheus_text_format(served):
    metrics, _, state, http, _ = served
    metrics.command_done("ping", "ok")
    async with http.get("/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    assert state["refreshes"] == 1
    assert 'nextbot_commands_handled_total{command="ping",outcome="ok"} 1.0' in text
    assert "nextbot_send_queue_messages 7.0" in text
    assert "# TYPE nextbot_sync_lag_seconds gauge" in text


async def test_metrics_are_served_even_when_the_database_cannot_be_read(served):
    metrics, _, state, http, _ = served
    state["fail"] = True
    metrics.command_done("ping", "ok")
    async with http.get("/metrics") as response:
        assert response.status == 200
        assert "nextbot_commands_handled_total" in await response.text()


async def test_healthz_is_503_until_the_first_sync_then_200_then_503_when_stale(served):
    metrics, clock, state, http, _ = served
    async with http.get("/healthz") as response:
        assert response.status == 503
        assert await response.json() == {"status": "starting"}
    metrics.synced()
    async with http.get("/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"
    clock.now += HEALTHY_SYNC_AGE_S + 1
    async with http.get("/healthz") as response:
        assert response.status == 503
        assert (await response.json())["status"] == "sync stale"
    metrics.synced()
    state["running"] = False
    async with http.get("/healthz") as response:
        assert response.status == 503
        assert (await response.json()) == {"status": "sync stopped"}
    async with http.get("/other") as response:
        assert response.status == 404


async def test_a_port_in_use_is_an_error_at_start(served):
    server = MetricsServer(Metrics(), ("127.0.0.1", served[4]),
                           refresh=lambda: None, sync_running=lambda: True)
    with pytest.raises(MetricsAddressError, match=r"^metrics\.listen: cannot listen on "):
        await server.start()


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("listen", "address"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    (" localhost:1 ", ("localhost", 1)),
    ("[::1]:9464", ("::1", 9464)),
])
def test_listen_addresses(listen, address):
    assert parse_listen(listen) == address


@pytest.mark.parametrize("listen", ["9464", "127.0.0.1", ":9464", "::1:9464", "127.0.0.1:x",
                                    "127.0.0.1:70000", "a b:1"])
def test_bad_listen_addresses(listen):
    with pytest.raises(ValueError):
        parse_listen(listen)


def test_metrics_are_off_by_default_and_a_bad_address_is_reported(tmp_path):
    assert load_settings(config(tmp_path)).metrics.address is None
    settings = load_settings(config(tmp_path, '[metrics]\nlisten = "127.0.0.1:9464"\n'))
    assert settings.metrics.address == ("127.0.0.1", 9464)
    with pytest.raises(ConfigError) as error:
        load_settings(config(tmp_path, '[metrics]\nlisten = "9464"\n'))
    assert error.value.problems[0].startswith("metrics.listen: expected host:port")


def test_rate_limit_settings_have_defaults_and_bounds(tmp_path):
    settings = load_settings(config(tmp_path))
    assert (settings.bot.member_rate_limit, settings.bot.member_rate_window_seconds) == (20, 10)
    with pytest.raises(ConfigError) as error:
        load_settings(config(tmp_path, "[bot]\nmember_rate_window_seconds = 0\n"))
    assert error.value.problems == ["bot.member_rate_window_seconds: must be at least 1"]


# -- the systemd unit ----------------------------------------------------------------------------


def unit_options() -> dict[str, dict[str, list[str]]]:
    """The unit file as {section: {key: [values]}} (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in UNIT_FILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"not a unit file line: {raw!r}"
        key, _, setting = line.partition("=")
        current.setdefault(key.strip(), []).append(setting.strip())
    return sections


def test_the_systemd_unit_runs_the_bot_hardened():
    unit = unit_options()
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]

    def one(key: str) -> str:
        assert key in service, f"{key} missing"
        return service[key][-1]

    assert one("ExecStart").endswith("nextbot run --config /etc/nextbot/config.toml")
    assert one("DynamicUser") == "yes" or "User" in service
    assert one("StateDirectory") == "nextbot"
    assert one("ProtectSystem") == "strict"
    assert one("NoNewPrivileges") == "yes"
    assert one("PrivateTmp") == "yes"
    assert one("ProtectHome") == "yes"
    assert set(one("RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in service["SystemCallFilter"]
    assert one("CapabilityBoundingSet") == ""
    assert one("Restart") == "on-failure"
    assert one("KillSignal") == "SIGTERM"
    assert int(one("TimeoutStopSec")) > 10  # the bot exits within 10 s of SIGTERM
    assert "Environment" not in service or not any(
        "PASSWORD" in e for e in service["Environment"])  # the secret belongs in a root file
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
