"""`nextbot run` and SIGTERM: the bot stops, and a second SIGTERM cannot cut its stop short."""

import asyncio
import os
import signal

import pytest

from bot import cli


async def test_sigterm_stops_the_bot_and_a_second_one_does_not_cut_the_stop_short():
    events = []

    async def run_bot(settings) -> None:
        try:
            events.append("running")
            await asyncio.sleep(30)
        finally:
            events.append("stopping")
            await asyncio.sleep(0.2)  # finishing what is in hand
            events.append("stopped")

    loop = asyncio.get_running_loop()
    serving = asyncio.ensure_future(cli._serve(run_bot, None))
    try:
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert events == ["running", "stopping"]
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(asyncio.CancelledError):
            await serving
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    assert events == ["running", "stopping", "stopped"]
