"""RQ queues and job ids. Jobs get ids and paths, never images; ids are fixed so a job is never queued twice."""

from __future__ import annotations

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from scanner_service.settings import Settings

QUEUE_NAME = "scanstation"
ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def connect(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.effective_redis_url, socket_timeout=30, socket_connect_timeout=10)


def get_queue(connection: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def page_job_id(page_id: int) -> str:
    return f"page-{page_id}"


def assembly_job_id(batch_id: int) -> str:
    return f"assemble-{batch_id}"


def job_is_active(connection: redis.Redis, job_id: str) -> bool:
    """True if the job is waiting, running or scheduled for a retry."""
    try:
        status = Job.fetch(job_id, connection=connection).get_status()
    except NoSuchJobError:
        return False
    return status in ACTIVE


def enqueue_page(queue: Queue, settings: Settings, page_id: int) -> None:
    """Queue one page unless its job is already active."""
    job_id = page_job_id(page_id)
    if job_is_active(queue.connection, job_id):
        return
    backoff = [int(settings.retry_backoff * f) for f in (1, 6, 24)][: max(settings.page_retries, 1)]
    queue.enqueue(
        "scanner_service.station.jobs.process_page",
        page_id,
        job_id=job_id,
        job_timeout=settings.page_timeout,
        retry=Retry(max=settings.page_retries, interval=backoff) if settings.page_retries else None,
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        on_failure=Callback("scanner_service.station.jobs.page_failed_for_good"),
        description=f"page {page_id}",
    )


def enqueue_assembly(queue: Queue, settings: Settings, batch_id: int) -> None:
    """Queue the one assembly job of a batch unless it is already active."""
    job_id = assembly_job_id(batch_id)
    if job_is_active(queue.connection, job_id):
        return
    queue.enqueue(
        "scanner_service.station.jobs.assemble_batch",
        batch_id,
        job_id=job_id,
        job_timeout=max(settings.page_timeout, 1800),
        retry=Retry(max=2, interval=[10, 60]),
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        on_failure=Callback("scanner_service.station.jobs.assembly_failed_for_good"),
        description=f"assemble batch {batch_id}",
    )


def requeue_abandoned(connection: redis.Redis, *, everything: bool = False) -> None:
    """Give jobs of dead workers back to the queue (RQ retries them, or fails them when out of retries).

    A worker that dies stops heart-beating; its job's entry expires about a minute later. ``everything``
    treats every running job as abandoned: only right for a station's own Redis at start, when no
    worker can be alive yet.
    """
    registry = StartedJobRegistry(QUEUE_NAME, connection=connection)
    registry.cleanup(timestamp=float("inf") if everything else None)
