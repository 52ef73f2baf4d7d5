"""SQL lives here: one repository per entity, typed models out, the schema in parts.

The core's repositories are `Storage`'s fields; each feature's are handed in with its part of
the database (`storage/schema.py`) and reached the same way, `storage.<name>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.core_schema import CORE
from storage.database import Database
from storage.deliveries import DeliveryRepository
from storage.inbox import InboxRepository
from storage.joins import JoinRepository
from storage.member_data import MemberData
from storage.outbox import OutboxRepository
from storage.rooms import RoomRepository
from storage.schema import Schema, migrate
from storage.session import SessionRepository
from storage.undecrypted import UndecryptedRepository
from storage.upgrades import UpgradeRepository


@dataclass
class Storage:
    """The database, the core's repositories, and the features' (`features`, by name)."""

    db: Database
    session: SessionRepository
    inbox: InboxRepository
    outbox: OutboxRepository
    rooms: RoomRepository
    joins: JoinRepository
    deliveries: DeliveryRepository
    undecrypted: UndecryptedRepository
    upgrades: UpgradeRepository  # upgraded rooms, and the carry-over to their successors
    member_data: MemberData  # everything about one member: export, deletion
    features: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Each feature's repository is an attribute like the core's: `storage.workshops`.
        for name, repository in self.features.items():
            if hasattr(self, name):
                raise ValueError(f"a feature's repository cannot be called {name!r}: taken")
            setattr(self, name, repository)

    @classmethod
    async def open(cls, path: str | Path, schemas: Sequence[Schema] = ()) -> Storage:
        """Open and migrate the database: the core's part and each of `schemas` (the features',
        `commands.features.open_storage`)."""
        db = await Database.open(path)
        try:
            await migrate(db, (CORE, *schemas))
            outbox = OutboxRepository(db, {kind: record for schema in schemas
                                           for kind, record in schema.when_sent.items()})
            features = {name: make(db) for schema in schemas
                        for name, make in schema.repositories.items()}
            return cls(
                db=db,
                session=SessionRepository(db),
                inbox=InboxRepository(db),
                outbox=outbox,
                rooms=RoomRepository(db),
                joins=JoinRepository(db),
                deliveries=DeliveryRepository(db),
                undecrypted=UndecryptedRepository(db),
                upgrades=UpgradeRepository(db, schemas),
                member_data=MemberData(db, [c for s in (*schemas, CORE) for c in s.member_data],
                                       {**features, "outbox": outbox}),
                features=features,
            )
        except BaseException:
            await db.close()
            raise

    def __getattr__(self, name: str) -> Any:
        """Only for a name that is no repository: say what is missing."""
        raise AttributeError(f"storage has no repository {name!r} (is its feature in the list?)")

    async def close(self) -> None:
        await self.db.close()
