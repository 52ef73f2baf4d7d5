"""Shared pytest fixtures.

Fixtures that need the throwaway Synapse homeserver are only set up when a test asks for them,
so a run of the unit tests alone never starts Synapse.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.devtools.testserver import Homeserver

# -- homeserver ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def homeserver() -> Iterator[Homeserver]:
    """One Synapse on 127.0.0.1 for the whole session, started on first use, stopped at the end."""
    # Fewer bcrypt rounds: registering and logging in test accounts is then fast.
    server = Homeserver(config_overrides={"bcrypt_rounds": 4})
    server.start()
    try:
        yield server
    finally:
        server.stop()
