"""SQL lives here: one repository per entity, typed models out, migrations in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage.communities import CommunityRepository
from storage.database import Database
from storage.deliveries import DeliveryRepository
from storage.experts import ExpertRepository
from storage.inbox import InboxRepository
from storage.meet import MeetRepository
from storage.migrations import MIGRATIONS
from storage.municipalities import MunicipalityRepository
from storage.outbox import OutboxRepository
from storage.rooms import RoomRepository
from storage.session import SessionRepository
from storage.undecrypted import UndecryptedRepository
from storage.workshops import WorkshopRepository


@dataclass
class Storage:
    """The database and every repository on it."""

    db: Database
    session: SessionRepository
    inbox: InboxRepository
    outbox: OutboxRepository
    rooms: RoomRepository
    experts: ExpertRepository
    workshops: WorkshopRepository
    deliveries: DeliveryRepository
    undecrypted: UndecryptedRepository
    municipalities: MunicipalityRepository
    communities: CommunityRepository
    meet: MeetRepository

    @classmethod
    async def open(cls, path: str | Path) -> Storage:
        db = await Database.open(path, MIGRATIONS)
        return cls(
            db=db,
            session=SessionRepository(db),
            inbox=InboxRepository(db),
            outbox=OutboxRepository(db),
            rooms=RoomRepository(db),
            experts=ExpertRepository(db),
            workshops=WorkshopRepository(db),
            deliveries=DeliveryRepository(db),
            undecrypted=UndecryptedRepository(db),
            municipalities=MunicipalityRepository(db),
            communities=CommunityRepository(db),
            meet=MeetRepository(db),
        )

    async def close(self) -> None:
        await self.db.close()
