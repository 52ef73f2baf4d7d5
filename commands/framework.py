"""Declaring commands once, and dispatching a message to them.

A feature module makes a `Router`, declares its commands with `@router.command(...)`, and the
`Registry` collects every router. From that one declaration come parsing, level checks, usage
lines, `!help` and the "did you mean" suggestions. Handlers get a `Context` and return `Text`
(or raise `UserError`); they never talk to Matrix.
"""

from __future__ import annotations

import difflib
import enum
import logging
import time
import traceback
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from commands.i18n import Catalog, Text
from storage import Storage
from storage.text import fold

log = logging.getLogger(__name__)

T = TypeVar("T")


class Level(enum.IntEnum):
    """Who may run a command (the trust model; README, "Who may do what").

    Compared with `>=`: a network moderator may do what a room moderator may, an admin all.
    - MEMBER: anyone in the room.
    - ROOM_MODERATOR: power in the room the command is written in; acts on that room only and
      what belongs to it (its settings, its own workshops). Never in the bot's direct chats.
    - NETWORK_MODERATOR: configured (`[bot] moderators`) or with power in one of the network's
      rooms (`[bot] network_rooms`, the network's space); acts for the whole network.
    - ADMIN: the operator's `[bot] admins`.
    """

    MEMBER = 0
    ROOM_MODERATOR = 1
    NETWORK_MODERATOR = 2
    ADMIN = 3

    @property
    def key(self) -> str:
        return f"levels.{self.name.lower()}"


class UserError(Exception):
    """A problem the member can fix; answered with the catalog message `key`."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


class RetryLater(Exception):
    """Something the command needs is unreachable right now: keep it queued and try again."""


class ArgumentError(Exception):
    """The arguments do not fit the command; answered with its usage line."""


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(frozen=True)
class Arg:
    """A command argument. `convert` turns the word into a value or raises ValueError."""

    name: str
    convert: Callable[[str], Any] = str
    optional: bool = False
    rest: bool = False  # takes the rest of the line, spaces included
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attachment:
    filename: str
    mimetype: str
    data: bytes

    def __repr__(self) -> str:  # the data is a member's, never for a log
        return f"Attachment(filename={self.filename!r}, bytes={len(self.data)})"


@dataclass(frozen=True)
class Reply:
    """One message to send: text, optionally a file (sent as `m.file` with the text as its
    caption), to the room of the command or as a direct message (to the asker, or to
    `recipient`). `mentions` are the people it notifies; nobody else is ever pinged."""

    text: Text
    attachment: Attachment | None = None
    direct: bool = False
    recipient: str | None = None
    mentions: tuple[str, ...] = ()
    # Once sent, recorded under its event id by the feature that declared this kind
    # (`Schema.when_sent`): (kind, key), e.g. ("workshop_post", "12"): ✅ on it signs up.
    record_as: tuple[str, str] | None = None
    # A scheduled post into the thread of this event (in the post's room)
    in_thread_of: str | None = None
    # (event id, version): the text replaces that message of the bot's in `recipient` (a room)
    edit_of: tuple[str, int] | None = None


HandlerResult = Text | Reply | list[Reply] | None
Handler = Callable[..., Awaitable[HandlerResult]]


@dataclass(eq=False)
class Command:
    """A command, or a subcommand of one (`parent`): everything about it comes from this one
    declaration: parsing, the level check, usage, !help and the "did you mean" suggestions."""

    name: str  # English name; the catalog keys are `commands.<key>.*`
    german: str
    aliases: tuple[str, ...]
    handler: Handler
    args: tuple[Arg, ...]
    level: Level
    group: str

    parent: Command | None = None
    subcommands: list[Command] = field(default_factory=list)
    # Each subcommand by every name of it, folded (`keyword`): one look-up per command.
    subcommand_words: dict[str, Command] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """`workshop`, or `workshop.add` for a subcommand: its catalog keys' middle part."""
        return self.name if self.parent is None else f"{self.parent.key}.{self.name}"

    @property
    def required_level(self) -> Level:
        return self.level if self.parent is None else max(self.level,
                                                          self.parent.required_level)

    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.name, self.german, *self.aliases)))

    def subcommand(self, word: str) -> Command | None:
        """The subcommand a typed word names (folded: `Ändern` = `aendern`), if any."""
        if not self.subcommand_words:
            return None
        return self.subcommand_words.get(keyword(word))

    def closest_subcommands(self, word: str, limit: int = 3) -> list[Command]:
        words = self.subcommand_words
        found: list[Command] = []
        for match in difflib.get_close_matches(keyword(word), words, n=8, cutoff=0.6):
            if words[match] not in found:
                found.append(words[match])
        return found[:limit]

    def display_name(self, language: str) -> str:
        """How it is written in `language`: `werkstatt`, `werkstatt neu`."""
        own = self.german if language == "de" else self.name
        return own if self.parent is None else f"{self.parent.display_name(language)} {own}"


# Answers a member's reaction with a key on the event `target`: (request, services, target,
# key) → the replies, like a command's (see `commands/reactions.py`).
ReactionHandler = Callable[["Request", "Services", str, str], Awaitable[list["Reply"]]]
# Looks at a member's redaction of the event `redacted`: (request, services, redacted).
RedactionHandler = Callable[["Request", "Services", str], Awaitable[list["Reply"]]]


@dataclass(frozen=True)
class Reaction:
    keys: tuple[str, ...]  # the reaction keys it answers (✅ …)
    handler: ReactionHandler
    answered: bool  # False: nothing is ever said to it, so it counts against no rate limit


class Router:
    """The commands of one feature module, their subcommands, and the reactions it answers."""

    def __init__(self, group: str) -> None:
        self.group = group  # the catalog key `groups.<group>` titles it in !help
        self.commands: list[Command] = []
        self.reactions: list[Reaction] = []
        self.redactions: list[RedactionHandler] = []
        self.room_settings: list[Any] = []  # `commands.room_settings.Setting`s, in `!config`
        self.erasure_follow_ups: list[Callable[..., Awaitable[list[Reply]]]] = []

    def after_erasure(self, follow_up: Callable[..., Awaitable[list[Reply]]]
                      ) -> Callable[..., Awaitable[list[Reply]]]:
        """Declare what this feature tells others after a member's data was deleted
        (`follow_up(ctx, erasure)`, see `commands/erasure.py`)."""
        self.erasure_follow_ups.append(follow_up)
        return follow_up

    def room_setting(self, *settings: Any) -> None:
        """Declare settings the moderators of a room change with `!config` (a switch for this
        feature's reminders …): see `commands/room_settings.py`."""
        self.room_settings.extend(settings)

    def reaction(self, *keys: str, answered: bool = True
                 ) -> Callable[[ReactionHandler], ReactionHandler]:
        """Declare what answers a member's reaction with one of `keys` (on any event: the
        handler looks whether it is one of its own)."""
        def register(handler: ReactionHandler) -> ReactionHandler:
            self.reactions.append(Reaction(tuple(keys), handler, answered))
            return handler

        return register

    def redaction(self, handler: RedactionHandler) -> RedactionHandler:
        """Declare what looks at every member's redaction (a reaction taken back)."""
        self.redactions.append(handler)
        return handler

    def subcommand(
        self,
        parent: str,
        name: str,
        german: str,
        *,
        aliases: Sequence[str] = (),
        args: Sequence[Arg] = (),
        level: Level = Level.MEMBER,
    ) -> Callable[[Handler], Handler]:
        """Declare a subcommand of this router's command `parent` (its English name): `!parent
        name args…`; also written `german` or any alias (compared folded). Its catalog keys are
        `commands.<parent>.<name>.*`; it needs at least its parent's level."""
        def register(handler: Handler) -> Handler:
            found = next((c for c in self.commands if c.name == parent), None)
            if found is None:
                raise ValueError(f"subcommand {name!r}: no command {parent!r} declared before")
            sub = Command(name, german, tuple(aliases), handler, tuple(args), level, self.group,
                          parent=found)
            words = {keyword(n) for n in sub.names()}
            clash = words & found.subcommand_words.keys()
            if clash:
                raise ValueError(f"subcommand word(s) {sorted(clash)} of {parent!r} declared twice")
            found.subcommands.append(sub)
            found.subcommand_words.update(dict.fromkeys(words, sub))
            return handler

        return register

    def command(
        self,
        name: str,
        german: str,
        *,
        aliases: Sequence[str] = (),
        args: Sequence[Arg] = (),
        level: Level = Level.MEMBER,
    ) -> Callable[[Handler], Handler]:
        """Declare a command; its subcommands are declared with `subcommand`."""
        def register(handler: Handler) -> Handler:
            self.commands.append(
                Command(name, german, tuple(aliases), handler, tuple(args), level, self.group))
            return handler

        return register


def _by_key(pairs: Iterable[tuple[str, T]], twice: str) -> dict[str, T]:
    """The values by their keys, in order; a key that comes twice is a ValueError (`twice`
    with the key)."""
    found: dict[str, T] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(twice.format(key))
        found[key] = value
    return found


class Registry:
    def __init__(self, routers: Sequence[Router]) -> None:
        self.routers = list(routers)
        self._by_name: dict[str, Command] = {}
        self._reactions: dict[str, Reaction] = _by_key(
            ((key, reaction) for router in self.routers for reaction in router.reactions
             for key in reaction.keys), "reaction {!r} is answered twice")
        self.redactions = [handler for router in self.routers for handler in router.redactions]
        self.erasure_follow_ups = [follow_up for router in self.routers
                                   for follow_up in router.erasure_follow_ups]
        self._room_settings: dict[str, Any] = _by_key(
            ((setting.key, setting) for router in self.routers
             for setting in router.room_settings), "room setting {!r} is declared twice")
        for router in self.routers:
            for command in router.commands:
                for name in command.names():
                    key = name.casefold()
                    if key in self._by_name:
                        raise ValueError(f"command name {name!r} is declared twice")
                    self._by_name[key] = command

    def find(self, name: str) -> Command | None:
        return self._by_name.get(name.casefold())

    def find_key(self, key: str) -> Command | None:
        """A command by a typed name, or a subcommand by its key (`workshop.add`)."""
        name, _, sub = key.partition(".")
        found = self.find(name)
        if found is None or not sub:
            return found
        return next((s for s in found.subcommands if s.name == sub), None)

    def all(self) -> list[Command]:
        return [c for r in self.routers for c in r.commands]

    def reaction(self, key: str) -> Reaction | None:
        return self._reactions.get(key)

    def room_settings(self) -> list[Any]:
        """Every feature's room settings, in the features' order."""
        return list(self._room_settings.values())

    def room_setting(self, key: str) -> Any:
        return self._room_settings.get(key)

    def reaction_keys(self) -> frozenset[str]:
        """The reaction keys some feature answers: the sync loop puts only these into the inbox."""
        return frozenset(self._reactions)

    def closest(self, name: str, limit: int = 3) -> list[Command]:
        matches = difflib.get_close_matches(name.casefold(), self._by_name, n=8, cutoff=0.6)
        found: list[Command] = []
        for match in matches:
            command = self._by_name[match]
            if command not in found:
                found.append(command)
        return found[:limit]


class ActionRefused(Exception):
    """The homeserver refused a `RoomAdmin` action for good (no permission, unknown room): the
    message is its error code, never content."""


class RoomAdmin(Protocol):
    """Acting on Matrix rooms for a command (communities create rooms and invite), behind a
    protocol so that handlers stay testable with fakes (`bot/matrix/room_admin.py` implements it).
    Transient failures raise `RetryLater`, refusals `ActionRefused`."""

    async def create_room(self, *, name: str, topic: str, moderators: Sequence[str],
                          space: bool = False) -> str: ...
    async def add_to_space(self, space_id: str, room_id: str) -> None: ...
    async def remove_from_space(self, space_id: str, room_id: str) -> None: ...
    async def find_room(self, text: str) -> str | None: ...
    async def join(self, room_id: str) -> bool: ...
    async def is_member(self, room_id: str, user_id: str) -> bool: ...
    async def invite(self, room_id: str, user_id: str) -> None: ...
    async def set_topic(self, room_id: str, topic: str) -> None: ...
    async def member_count(self, room_id: str) -> int: ...


@dataclass
class Services:
    """What handlers may use: the core's services, and each feature's configuration by the
    feature's name (`configs["workshops"]`, from its settings section; the feature's defaults
    where absent). Never holds anything from nio."""

    storage: Storage
    catalog: Catalog
    registry: Registry
    clock: Clock
    prefix: str = "!"
    started_at: float = field(default_factory=time.monotonic)
    configs: dict[str, Any] = field(default_factory=dict)
    room_admin: RoomAdmin | None = None  # creating rooms, inviting: Matrix, behind a protocol
    # Tells the scheduler that a feature's schedule changed (a workshop added or moved).
    schedule_changed: Callable[[str], Awaitable[None]] | None = None
    # Told each command's registered name and outcome, for the operator's metrics.
    on_command: Callable[[str, str], None] | None = None


@dataclass(frozen=True)
class Request:
    """A command as received: who, where, what. `level` is looked up only when needed."""

    event_id: str
    room_id: str
    sender: str
    body: str
    language: str
    level: Callable[[], Awaitable[Level]]


@dataclass
class Context:
    request: Request
    services: Services
    command: Command

    @property
    def sender(self) -> str:
        return self.request.sender

    @property
    def room_id(self) -> str:
        return self.request.room_id

    @property
    def language(self) -> str:
        return self.request.language

    async def level(self) -> Level:
        return await self.request.level()

    def t(self, key: str, /, **values: Any) -> Text:
        return self.services.catalog.text(self.language, key, **values)

    def call(self, command: str | Command | None = None, *words: str) -> Text:
        """A command line as code, in the room's language: `!profil setzen <feld> <wert>`.
        Without a command name: this command."""
        if command is None:
            return command_line(self.services, self.language, self.command, *words)
        return command_line(self.services, self.language, command, *words)

    def usage_error(self) -> UserError:
        """This command's usage line and where its help is, as the answer."""
        return UserError("errors.usage",
                         usage=usage(self.command, self.services.catalog, self.language,
                                     self.services.prefix),
                         help=self.call("help", self.command.display_name(self.language)))

    async def run_subcommand(self, word: str, rest: str = "") -> HandlerResult:
        """Run the subcommand `word` names (of this command, or of this subcommand's command)
        on `rest`, as if written `!command word rest`: for a command whose subcommand word may
        stand later in the line, e.g. `!werkstatt 12 ändern …`."""
        parent = self.command.parent or self.command
        sub = parent.subcommand(word)
        if sub is None:
            raise self.unknown_subcommand(word)
        typed = Text.code(f"{self.services.prefix}{sub.display_name(self.language)}")
        return await _invoke(sub, rest, typed, self.request, self.services)

    def unknown_subcommand(self, word: str, of: Command | None = None) -> UserError:
        """The answer to a word that is none of the subcommands of `of` (default: this
        command's): the closest ones, and where the command's help is."""
        parent = of or self.command.parent or self.command
        close = parent.closest_subcommands(word)
        help_line = self.call("help", parent.display_name(self.language))
        if not close:
            return UserError("errors.unknown_subcommand", word=Text.code(word),
                             command=self.call(parent.name), help=help_line)
        return UserError("errors.unknown_subcommand_suggest", word=Text.code(word),
                         suggestions=Text.join((command_line(self.services, self.language, c)
                                                for c in close), ", "),
                         help=help_line)



def command_line(services: Services, language: str, command: str | Command,
                 *words: str) -> Text:
    """A command line as code in `language`, under its name there: `!anmelden 12`; a
    subcommand by its key: `workshop.add` → `!werkstatt neu`."""
    found = services.registry.find_key(command) if isinstance(command, str) else command
    name = found.display_name(language) if found else str(command)
    return Text.code(" ".join((f"{services.prefix}{name}", *words)))


def keyword(text: str) -> str:
    """A typed word as a lookup key: case, umlauts, accents and punctuation folded away."""
    return "".join(c for c in fold(text) if c.isalnum())


def one_line(value: str) -> str:
    """One line of visible text: control and format characters dropped, spaces collapsed."""
    value = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
                    for c in value if unicodedata.category(c) != "Cf")
    return " ".join(value.split())


def visible_lines(text: str) -> str:
    """Text of several lines: line breaks kept, other control and format characters dropped."""
    kept = "".join(c for c in text if c == "\n" or unicodedata.category(c) not in ("Cc", "Cf"))
    return "\n".join(line.rstrip() for line in kept.strip().splitlines())


def lookup(table: dict[str, tuple[str, ...]], text: str) -> str | None:
    """The key whose words (already `keyword`s) contain the typed word, e.g. `setzen` → `set`."""
    word = keyword(text)
    return next((key for key, words in table.items() if word in words), None)


def split_command(body: str, prefix: str) -> tuple[str, str] | None:
    """`!name rest of line` → (name, rest); None when the text is no command."""
    text = body.strip()
    if not text.startswith(prefix):
        return None
    after = text[len(prefix):]
    if not after or after[0].isspace():  # the name follows the prefix directly
        return None
    parts = after.split(maxsplit=1)  # any whitespace, line breaks too
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def parse_args(command: Command, rest: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    remaining = rest
    for arg in command.args:
        if arg.rest:
            word, remaining = remaining.strip(), ""
        else:
            first, *others = remaining.split(maxsplit=1) or [""]
            word, remaining = first, others[0] if others else ""
        if not word:
            if arg.optional:
                continue
            raise ArgumentError(arg.name)
        if arg.choices and word.casefold() not in arg.choices:
            raise ArgumentError(arg.name)
        try:
            values[arg.name] = arg.convert(word.casefold() if arg.choices else word)
        except ValueError as exc:
            raise ArgumentError(arg.name) from exc
    if remaining.strip():
        raise ArgumentError("")
    return values


def usage(command: Command, catalog: Catalog, language: str, prefix: str) -> Text:
    parts = [f"{prefix}{command.display_name(language)}"]
    for arg in command.args:
        if arg.choices:
            label = "|".join(arg.choices)
        else:
            label = catalog.template(language, f"args.{arg.name}")
        parts.append(f"[{label}]" if arg.optional else f"<{label}>")
    return Text.code(" ".join(parts))


async def dispatch(request: Request, services: Services) -> list[Reply]:
    """Answer one message: the replies to send (none when it is no command)."""
    return as_replies(await _answer(request, services))


def as_replies(result: HandlerResult) -> list[Reply]:
    if result is None:
        return []
    if isinstance(result, Text):
        return [Reply(result)]
    if isinstance(result, Reply):
        return [result]
    return list(result)


async def _answer(request: Request, services: Services) -> HandlerResult:
    split = split_command(request.body, services.prefix)
    if split is None:
        return None
    name, rest = split
    catalog, lang = services.catalog, request.language
    command = services.registry.find(name)
    if command is None:
        log.info("command=? room=%s outcome=unknown", request.room_id)
        if services.on_command is not None:
            services.on_command("unknown", "unknown")
        return _unknown_command(name, services, lang)
    typed = f"{services.prefix}{name}"
    first, after = _first_word(rest)
    sub = command.subcommand(first) if first else None
    if sub is not None:
        command, rest, typed = sub, after, f"{typed} {first}"

    started = time.perf_counter()
    outcome = "ok"
    try:
        return await _invoke(command, rest, Text.code(typed), request, services)
    except _Refused as exc:
        outcome = "refused"
        return catalog.text(lang, exc.key, **exc.values)
    except _UsageError as exc:
        outcome = "usage"
        return catalog.text(lang, exc.key, **exc.values)
    except RetryLater:
        outcome = "retry_later"
        raise
    except UserError as exc:
        outcome = "user_error"
        return catalog.text(lang, exc.key, **exc.values)
    except Exception as exc:
        outcome = "error"
        # The traceback shows where it failed; the exception's message may quote the member.
        log.error(
            "command %s failed in %s: %s\n%s", command.key, request.room_id,
            type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
        )
        return catalog.text(lang, "errors.internal")
    finally:
        log.info("command=%s room=%s outcome=%s ms=%.1f", command.key, request.room_id,
                 outcome, (time.perf_counter() - started) * 1000)
        if services.on_command is not None:
            services.on_command(command.key, outcome)


class _Refused(UserError):
    """Below the command's level: answered naming the role it needs."""


class _UsageError(UserError):
    """The arguments do not fit: answered with the usage line."""


def _first_word(text: str) -> tuple[str, str]:
    first, *after = text.split(maxsplit=1) or [""]
    return first, after[0].strip() if after else ""


async def _invoke(command: Command, rest: str, typed: Text, request: Request,
                  services: Services) -> HandlerResult:
    """Check the level, parse the arguments, run the handler: the same for every command and
    subcommand, from its declaration."""
    catalog, lang = services.catalog, request.language
    needed = command.required_level
    if needed > Level.MEMBER and await request.level() < needed:
        raise _Refused("errors.level", command=typed, level=catalog.text(lang, needed.key))
    context = Context(request, services, command)
    try:
        values = parse_args(command, rest)
    except ArgumentError:
        if command.subcommands and not command.args:  # a word that is none of them
            raise context.unknown_subcommand(_first_word(rest)[0]) from None
        raise _UsageError("errors.usage", usage=usage(command, catalog, lang, services.prefix),
                          help=Text.code(f"{services.prefix}{_help_name(services, lang)} "
                                         f"{command.display_name(lang)}")) from None
    return await command.handler(context, **values)


def _help_name(services: Services, language: str) -> str:
    help_command = services.registry.find("help")
    return help_command.display_name(language) if help_command else "help"


def _unknown_command(name: str, services: Services, lang: str) -> Text:
    catalog, prefix = services.catalog, services.prefix
    suggestions = services.registry.closest(name)
    help_command = Text.code(f"{prefix}{_help_name(services, lang)}")
    command = Text.code(f"{prefix}{name}")
    if not suggestions:
        return catalog.text(lang, "errors.unknown", command=command, help=help_command)
    names = Text.join((Text.code(f"{prefix}{c.display_name(lang)}") for c in suggestions), ", ")
    return catalog.text(lang, "errors.unknown_suggest", command=command,
                        suggestions=names, help=help_command)
