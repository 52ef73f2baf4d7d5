"""The floor to compare against: a minimal, ordinary matrix-nio bot that answers `!ping`.

    python -m bench.reference_bot --homeserver URL --user @ref:localhost --password PW

It is written the way nio's examples and most small bots are: log in, register callbacks, and
`sync_forever(timeout=30000)`. Invites are accepted; a `!ping` (an `m.text` from someone else)
is answered with an `m.notice` "pong" that replies to it, awaited inside the callback. Nothing
else — no database, no queue, no gap filling — so whatever it does not see (a burst that the
sync cuts short) stays unanswered. It runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

import nio


async def run(homeserver: str, user_id: str, password: str) -> int:
    client = nio.AsyncClient(homeserver, user_id)
    response = await client.login(password, device_name="reference bot")
    if not isinstance(response, nio.LoginResponse):
        print(f"reference bot: login failed: {response}", file=sys.stderr)
        await client.close()
        return 1

    async def on_invite(room: nio.MatrixRoom, event: nio.InviteMemberEvent) -> None:
        if event.state_key == client.user_id and event.membership == "invite":
            await client.join(room.room_id)

    async def on_message(room: nio.MatrixRoom, event: nio.RoomMessageText) -> None:
        if event.sender == client.user_id or event.body.strip() != "!ping":
            return
        await client.room_send(
            room.room_id,
            "m.room.message",
            {
                "msgtype": "m.notice",
                "body": "pong",
                "m.relates_to": {"m.in_reply_to": {"event_id": event.event_id}},
            },
        )

    client.add_event_callback(on_invite, nio.InviteMemberEvent)
    client.add_event_callback(on_message, nio.RoomMessageText)

    loop = asyncio.get_running_loop()
    syncing = asyncio.ensure_future(client.sync_forever(timeout=30_000))
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, syncing.cancel)
    print("reference bot: syncing", flush=True)
    try:
        await syncing
    except asyncio.CancelledError:
        pass
    finally:
        await client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reference_bot",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--homeserver", required=True)
    parser.add_argument("--user", required=True, help="full user id, e.g. @ref:localhost")
    parser.add_argument("--password", required=True)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(run(args.homeserver, args.user, args.password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
