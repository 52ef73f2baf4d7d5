"""SQL lives here: one repository per entity, typed models out, migrations in order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage.communities import CommunityRepository
from storage.database import Database
from storage.deliveries import DeliveryRepository
from storage.expert_search import ExpertSearch
from storage.experts import ExpertRepository
from storage.inbox import InboxRepository
from storage.meet import MeetRepository
from storage.member_data import MemberData
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
    expert_search: ExpertSearch
    workshops: WorkshopRepository
    deliveries: DeliveryRepository
    undecrypted: UndecryptedRepository
    municipalities: MunicipalityRepository
    communities: CommunityRepository
    meet: MeetRepository
    member_data: MemberData  # everything about one member: export, deletion

    @classmethod
    async def open(cls, path: str | Path) -> Storage:
        db = await Database.open(path, MIGRATIONS)
        experts, workshops = ExpertRepository(db), WorkshopRepository(db)
        outbox = OutboxRepository(db)
        return cls(
            db=db,
            session=SessionRepository(db),
            inbox=InboxRepository(db),
            outbox=outbox,
            rooms=RoomRepository(db),
            experts=experts,
            expert_search=ExpertSearch(db),
            workshops=workshops,
            deliveries=DeliveryRepository(db),
            undecrypted=UndecryptedRepository(db),
            municipalities=MunicipalityRepository(db),
            communities=CommunityRepository(db),
            meet=MeetRepository(db),
            member_data=MemberData(db, experts, workshops, outbox),
        )

    async def close(self) -> None:
        await self.db.close()
