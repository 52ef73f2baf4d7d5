"""The throwaway Synapse homeserver used by the integration tests."""

from __future__ import annotations

import json
import urllib.request
import uuid

import nio
import pytest

from bot.devtools.testserver import Homeserver, RegistrationError

pytestmark = pytest.mark.synapse


def unique(prefix: str) -> str:
    """A localpart no other test in the session uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_versions_answers(homeserver: Homeserver) -> None:
    assert homeserver.url == f"http://127.0.0.1:{homeserver.port}"
    assert homeserver.running
    url = f"{homeserver.url}/_matrix/client/versions"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        assert json.load(response)["versions"]


async def test_registered_user_can_log_in(homeserver: Homeserver) -> None:
    localpart = unique("alice")
    user_id = await homeserver.register(localpart, "secret-alice")
    assert user_id == f"@{localpart}:{homeserver.server_name}"

    client = nio.AsyncClient(homeserver.url, user_id)
    try:
        response = await client.login("secret-alice")
        assert isinstance(response, nio.LoginResponse), response
        assert response.user_id == user_id
    finally:
        await client.close()


async def test_registering_twice_raises(homeserver: Homeserver) -> None:
    localpart = unique("bob")
    await homeserver.register(localpart, "secret-bob")
    with pytest.raises(RegistrationError, match=localpart) as caught:
        await homeserver.register(localpart, "secret-bob")
    assert caught.value.errcode == "M_USER_IN_USE"
    assert caught.value.status == 400


async def test_register_sync(homeserver: Homeserver) -> None:
    localpart = unique("carol")
    user_id = homeserver.register_sync(localpart, "secret-carol", admin=True)
    assert user_id == f"@{localpart}:{homeserver.server_name}"
    with pytest.raises(RegistrationError) as caught:
        homeserver.register_sync(localpart, "secret-carol")
    assert caught.value.errcode == "M_USER_IN_USE"

    client = nio.AsyncClient(homeserver.url, user_id)
    try:
        assert isinstance(await client.login("secret-carol"), nio.LoginResponse)
    finally:
        await client.close()
