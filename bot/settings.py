"""Configuration: a TOML file, overridable by ``NEXTBOT_*`` environment variables.

``load_settings(path)`` reads the file, lets the environment win key by key
(``NEXTBOT_MATRIX__PASSWORD`` overrides ``[matrix] password``) and validates the
result. Every problem is reported as one line ``<dotted.key>: <reason>`` in
``ConfigError.problems``; secret values never appear in any message.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from commands.config_fields import (
    CUSTOM_ERROR,
    SERVER_NAME,
    Section,
    check_http_url,
    problem,
    stripped,
)
from commands.features import FEATURES

ENV_PREFIX = "NEXTBOT_"
ENV_NESTED_DELIMITER = "__"

# Field names whose values must never be echoed back, not even in error messages.
SECRET_FIELDS = frozenset({"password", "access_token", "store_pickle_key"})

_SERVER_RE = re.compile(rf"^{SERVER_NAME}$")
_USER_ID_RE = re.compile(rf"^@[^\s:]+:{SERVER_NAME}$")


def _check_user_id(value: str) -> str:
    if not _USER_ID_RE.match(value):
        raise problem(f"bad user id {value!r} (expected @name:server)")
    return value


def _check_server_name(value: str) -> str:
    if not _SERVER_RE.match(value):
        raise problem(f"bad server name {value!r} (expected e.g. example.org)")
    return value


UserId = Annotated[str, BeforeValidator(stripped), AfterValidator(_check_user_id)]
ServerName = Annotated[str, BeforeValidator(stripped), AfterValidator(_check_server_name)]


def server_of(user_id: str) -> str:
    """The server name part of a Matrix user id (``@a:example.org`` -> ``example.org``)."""
    return user_id.split(":", 1)[1]


class MatrixSettings(Section):
    homeserver: str
    user_id: UserId
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    device_name: str = "NExT-Bot"
    # Directory for the end-to-end encryption store (olm/megolm keys).
    store_path: Path = Path("./data/store")
    # Key the store's secrets are encrypted with; unset: a key file made in the store.
    store_pickle_key: SecretStr | None = None
    encryption: bool = True
    # Room keys only for devices their owner has cross-signed (people without cross-signing
    # keep getting them), as current Element does (MSC4153).
    exclude_unsigned_devices: bool = True

    @field_validator("homeserver")
    @classmethod
    def _homeserver_is_url(cls, value: str) -> str:
        value = value.strip()
        check_http_url(value)
        return value.rstrip("/")

    @field_validator("password", "access_token", "store_pickle_key")
    @classmethod
    def _empty_secret_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        return value

    @model_validator(mode="after")
    def _needs_credentials(self) -> MatrixSettings:
        if self.password is None and self.access_token is None:
            raise problem("missing (set matrix.password or matrix.access_token)", field="password")
        return self


class BotSettings(Section):
    command_prefix: str = "!"
    language: Literal["de", "en"] = "de"
    timezone: str = "Europe/Berlin"
    admins: list[UserId] = Field(default_factory=list)
    # Network moderators: these users, and whoever holds `moderator_level` in one of
    # `network_rooms` (ids or aliases) or in the network's space (`[communities] space`).
    moderators: list[UserId] = Field(default_factory=list)
    network_rooms: list[str] = Field(default_factory=list)
    # Server names whose users may invite the bot; see Settings.may_invite().
    allowed_servers: list[ServerName] = Field(default_factory=list)
    # Power level from which a room member counts as moderator.
    moderator_level: int = Field(default=50, ge=0, le=100)
    # Per-member limit: this many commands within the window; 0 turns it off. Admins are exempt.
    member_rate_limit: int = Field(default=20, ge=0, le=10_000)
    member_rate_window_seconds: int = Field(default=10, ge=1, le=3600)

    @field_validator("command_prefix")
    @classmethod
    def _prefix_valid(cls, value: str) -> str:
        if not value:
            raise problem("must not be empty")
        if any(ch.isspace() for ch in value):
            raise problem("must not contain whitespace")
        return value

    @field_validator("language", mode="before")
    @classmethod
    def _language_lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("timezone")
    @classmethod
    def _timezone_valid(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise problem(f"bad time zone {value!r}") from None
        return value


class StorageSettings(Section):
    database: Path = Path("./data/nextbot.db")


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _level_upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


class SchedulerSettings(Section):
    # A reminder or announcement missed while the bot was down is still posted (marked late)
    # within this many minutes after its time; older ones are logged as skipped.
    grace_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)


def parse_listen(listen: str) -> tuple[str, int]:
    """`127.0.0.1:9464` or `[::1]:9464` → (host, port); ValueError when malformed."""
    host, sep, port_text = listen.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError("expected host:port, e.g. 127.0.0.1:9464")
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1], int(port_text)
    if ":" in host or "[" in host or any(ch.isspace() for ch in host):
        raise ValueError("expected host:port; an IPv6 address in brackets: [::1]:9464")
    return host, int(port_text)


class MetricsSettings(Section):
    # Address for Prometheus /metrics and /healthz, e.g. "127.0.0.1:9464"; empty: off.
    listen: str = ""

    @field_validator("listen")
    @classmethod
    def _listen_valid(cls, value: str) -> str:
        value = value.strip()
        if value:
            try:
                parse_listen(value)
            except ValueError as exc:
                raise problem(str(exc)) from None
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen else None


class CoreSettings(BaseSettings):
    """The core's sections; `Settings` adds each feature's (`commands/features.py`)."""

    model_config = SettingsConfigDict(
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
    )

    matrix: MatrixSettings
    bot: BotSettings = Field(default_factory=BotSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First source wins; nested dicts are deep-merged, so the environment
        # overrides single keys of the file (passed in as init kwargs).
        return (env_settings, init_settings)

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.bot.timezone)

    def is_admin(self, user_id: str) -> bool:
        return user_id in self.bot.admins

    def may_invite(self, user_id: str) -> bool:
        """Whether an invite from ``user_id`` should be accepted.

        Admins always may. Otherwise the inviter's server must be listed in
        ``bot.allowed_servers``; an empty list means the bot's own server only.
        """
        if self.is_admin(user_id):
            return True
        if ":" not in user_id:
            return False
        allowed = self.bot.allowed_servers or [server_of(self.matrix.user_id)]
        return server_of(user_id) in allowed


# The configuration file: the core's sections and every feature's own (e.g. `[meet]`).
Settings = create_model(
    "Settings", __base__=CoreSettings,
    **{key: (model, Field(default_factory=model))
       for key, model in (feature.section for feature in FEATURES if feature.section)})


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --- error formatting -------------------------------------------------------------

_TYPE_REASONS = {
    "missing": "missing",
    "extra_forbidden": "unknown key",
    "string_type": "wrong type (expected a string)",
    "string_sub_type": "wrong type (expected a string)",
    "int_type": "wrong type (expected an integer)",
    "int_parsing": "wrong type (expected an integer)",
    "int_from_float": "wrong type (expected an integer)",
    "bool_type": "wrong type (expected true or false)",
    "bool_parsing": "wrong type (expected true or false)",
    "list_type": "wrong type (expected a list)",
    "path_type": "wrong type (expected a path string)",
    "model_type": "wrong type (expected a table)",
    "model_attributes_type": "wrong type (expected a table)",
    "dict_type": "wrong type (expected a table)",
}


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "config"


def _reason(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == CUSTOM_ERROR:
        return str(ctx["reason"])
    if kind in _TYPE_REASONS:
        return _TYPE_REASONS[kind]
    if kind == "literal_error":
        return f"must be {ctx.get('expected', 'one of the allowed values')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    # Pydantic's own messages never quote the input value.
    msg = str(err.get("msg") or kind)
    return msg[:1].lower() + msg[1:]


def _problems(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == CUSTOM_ERROR and "field" in ctx:
            loc = (*loc, ctx["field"])
        reason = _reason(err)
        safe = err["type"] in _TYPE_REASONS or err["type"] == CUSTOM_ERROR
        if loc and loc[-1] in SECRET_FIELDS and not safe:
            reason = "invalid value"  # belt and braces: never risk echoing a secret
        line = f"{_dotted(loc)}: {reason}"
        if line not in lines:
            lines.append(line)
    return lines


# --- loading ----------------------------------------------------------------------


def _build(data: dict[str, Any]) -> Settings:
    data = dict(data)
    # Validate an absent [matrix] as empty, so each required key is reported by name.
    data.setdefault("matrix", {})
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None
    except SettingsError as exc:
        # e.g. NEXTBOT_BOT__ADMINS is not valid JSON. Only the field name is reported.
        match = re.search(r'field "([^"]+)"', str(exc))
        key = match.group(1) if match else "environment"
        env = f"{ENV_PREFIX}{key.upper()}{ENV_NESTED_DELIMITER}*" if match else f"{ENV_PREFIX}*"
        raise ConfigError(
            [f"{key}: cannot parse environment variable {env} (lists must be JSON)"]
        ) from None


def _env_in_use() -> bool:
    return any(name.upper().startswith(ENV_PREFIX) for name in os.environ)


def load_settings(path: Path | str) -> Settings:
    """Load and validate the configuration; raises ``ConfigError``.

    A missing file is accepted only if the ``NEXTBOT_*`` environment alone yields a
    valid configuration.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        try:
            return _build({})
        except ConfigError as exc:
            problems = [f"config: file not found: {path}"]
            if _env_in_use():
                problems += exc.problems
            raise ConfigError(problems) from None
    except OSError as exc:
        raise ConfigError([f"config: cannot read {path}: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(["config: not valid TOML: file is not UTF-8 encoded"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config: not valid TOML: {exc}"]) from None
    return _build(data)


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as plain data for a log line; set secrets appear as ``"***"``."""

    def clean(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "***"
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return clean(settings.model_dump())
