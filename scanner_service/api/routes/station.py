"""The station at a glance: queue, workers, disk space, batches per state (the board's panel)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from scanner_service.api.deps import CurrentToken, SessionDep, SettingsDep
from scanner_service.api.schemas import StationPublic, error_responses
from scanner_service.archive import access
from scanner_service.archive.batches import state_counts
from scanner_service.station.status import station_status

router = APIRouter(prefix="/api/station", tags=["station"])


@router.get(
    "",
    response_model=StationPublic,
    summary="Queue length, workers alive and busy, the archive's free disk space with a warning (staff)",
    responses=error_responses(401, 403),
)
def get_station(settings: SettingsDep, session: SessionDep, token: CurrentToken) -> dict[str, Any]:
    """Cheap enough to ask every few seconds: a few Redis reads, one statvfs, one grouped count. The
    disk warns when fewer than 2,000 pages (3 MiB each) fit or less than 5 % is free."""
    access.require_role(token, *access.STAFF)
    return {**station_status(settings), "batches": state_counts(session, access.batch_filter(token))}
