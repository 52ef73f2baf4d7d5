"""What every settings section is made of: the core's (`bot/settings.py`) and each feature's,
declared in the feature's module and named in its `FEATURE` (`commands/feature.py`).

A problem is reported as one line `<dotted.key>: <reason>` (`bot/settings.py` collects them);
`problem(reason)` raises one with its final reason, never with a secret value in it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

from commands.dates import offset_label, parse_offset

# Custom errors carry their final one-line reason in ctx["reason"]; ctx["field"], if
# present, names the key the problem is reported under (for model-level checks).
CUSTOM_ERROR = "nextbot"

# A Matrix server name: DNS name or IP literal, optional port.
SERVER_NAME = r"(?:[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?"
_ROOM_ID_RE = re.compile(rf"^![^\s:]+(?::{SERVER_NAME})?$")


class Section(BaseModel):
    """One `[section]` of the configuration: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


def problem(reason: str, **ctx: Any) -> PydanticCustomError:
    return PydanticCustomError(CUSTOM_ERROR, "{reason}", {"reason": reason, **ctx})


def stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def check_http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise problem("must be an http(s) URL")
    return value


def _check_room_id(value: str) -> str:
    if not _ROOM_ID_RE.match(value):
        raise problem(f"bad room id {value!r} (expected !id:server, not an alias #name:server)")
    return value


RoomId = Annotated[str, BeforeValidator(stripped), AfterValidator(_check_room_id)]


def reminder_offsets(value: list[str]) -> list[str]:
    """Reminder offsets as written (`1d`, `2h`, `30m`), checked, latest first, no repeats."""
    offsets = []
    for text in value:
        try:
            offsets.append(parse_offset(text))
        except ValueError:
            raise problem(f"bad reminder offset {text!r} (expected e.g. 1d, 2h or 30m, "
                          "at most 60d)") from None
    return [offset_label(o) for o in sorted(set(offsets), reverse=True)]
