"""`make demo` end to end: its own Synapse, the bot, a member typing commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.synapse


def test_demo_script_talks_to_the_bot_and_cleans_up() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.devtools.demo", "--script",
         "!ping", "!hilfe", "!experten KI", "!werkstätten"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Pong! Ich bin da." in result.stdout
    assert "das kann ich für dich tun" in result.stdout
    assert "Jonas Weber" in result.stdout  # seeded demo experts are found
    assert "OZG-Sprechstunde" in result.stdout  # and seeded workshops listed
    assert "Passwort: demo-passwort" in result.stdout
    assert "Demo beendet" in result.stdout
