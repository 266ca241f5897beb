"""RQ queues and job ids. Jobs get ids and paths, never images; ids are fixed so a job is never queued twice."""

from __future__ import annotations

import socket
from collections.abc import Collection

import redis
from rq import Callback, Queue, Retry, Worker
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler

from scanner_service.settings import Settings
from scanner_service.station import lifeline

QUEUE_NAME = "scanstation"
WATCHER_LOCK = "scanstation:watcher-lock"  # held by the one watcher that polls the inbox
ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def connect(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.effective_redis_url, socket_timeout=30, socket_connect_timeout=10)


def get_queue(connection: redis.Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def worker_name(pid: int) -> str:
    """The RQ name of the station's worker process ``pid`` (the supervisor finds its jobs by it)."""
    return f"{socket.gethostname()}.{pid}"


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


def enqueue_page(queue: Queue, settings: Settings, page_id: int, *, at_front: bool = False) -> None:
    """Queue one page unless its job is already active; ``at_front`` (a person's correction, someone
    waits for it): before every page waiting, not behind a 500-page batch."""
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
        at_front=at_front,
    )


def enqueue_assembly(queue: Queue, settings: Settings, batch_id: int, *, at_front: bool = False) -> None:
    """Queue the one assembly job of a batch unless it is already active (``at_front``: a person waits)."""
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
        at_front=at_front,
    )


def item_job_ids(item_id: int) -> tuple[str, str]:
    """The two fixed ids of an item's derivation job: one may run while the other waits."""
    return f"item-pages-{item_id}", f"item-pages-{item_id}-next"


WAITING = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def _status(connection: redis.Redis, job_id: str) -> JobStatus | None:
    try:
        return Job.fetch(job_id, connection=connection).get_status()
    except NoSuchJobError:
        return None


def item_job_active(connection: redis.Redis, item_id: int) -> bool:
    """True if a derivation job of the item is waiting, running or scheduled for a retry."""
    return any(_status(connection, job_id) in ACTIVE for job_id in item_job_ids(item_id))


def enqueue_item_pages(queue: Queue, settings: Settings, item_id: int) -> None:
    """Queue, at the FRONT of the queue (a person is waiting), the job that derives a filed item's
    queued pages again. Idempotent: a job that waits (or waits for a retry) takes every queued page when
    it starts, so nothing is queued then; while one runs, the other id is queued, for the pages
    corrected after the running one read them. With both running, nothing is queued: the running ones
    read again after a conflict, and the watcher's sweep queues the job once none is active."""
    ids = item_job_ids(item_id)
    statuses = [_status(queue.connection, job_id) for job_id in ids]
    if any(status in WAITING for status in statuses):
        return
    free = [job_id for job_id, status in zip(ids, statuses, strict=True) if status not in ACTIVE]
    if not free:
        return
    queue.enqueue(
        "scanner_service.station.jobs.derive_item_pages",
        item_id,
        job_id=free[0],
        at_front=True,
        job_timeout=max(settings.page_timeout, 1800),
        retry=Retry(max=2, interval=[10, 60]),
        result_ttl=3600,
        failure_ttl=7 * 24 * 3600,
        on_failure=Callback("scanner_service.station.jobs.item_pages_failed_for_good"),
        description=f"derive corrected pages of item {item_id}",
    )


def requeue_abandoned(connection: redis.Redis, *, everything: bool = False) -> None:
    """Give jobs of dead workers back to the queue (RQ retries them, or fails them when out of retries).

    A worker that dies stops heart-beating; its job's entry expires about a minute later. ``everything``
    treats every running job as abandoned: only right for a station's own Redis at start, when no
    worker can be alive yet.
    """
    registry = StartedJobRegistry(QUEUE_NAME, connection=connection)
    registry.cleanup(timestamp=float("inf") if everything else None)


def requeue_jobs_of(connection: redis.Redis, worker_names: Collection[str]) -> list[str]:
    """Give back at once the jobs that these (dead) workers were running; returns their ids.

    RQ would find them only when their heartbeat runs out, a minute or more later. Each is retried
    (or failed when out of retries) by RQ's own handling of abandoned jobs.
    """
    registry = StartedJobRegistry(QUEUE_NAME, connection=connection)
    abandoned: dict[str, str] = {}
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        try:
            execution = Execution.fetch(execution_id, job_id, connection)
        except ValueError:  # the execution's record is gone: its worker stopped heart-beating long ago
            continue
        if execution.worker_name in worker_names:
            abandoned[execution.composite_key] = job_id
    if abandoned:
        # Expire those entries now, then let RQ handle them as it handles any expired one.
        connection.zadd(registry.key, dict.fromkeys(abandoned, 0), xx=True)
        registry.cleanup(timestamp=1)
    return sorted(set(abandoned.values()))


def release_dead_scheduler_lock(connection: redis.Redis) -> bool:
    """Free the queue's scheduler lock if the scheduler holding it is a process of this machine that died.

    RQ's scheduler (it queues retries at their time; ``scanstation scheduler``) holds it while alive; a
    dead one would hold the lock until it expires, and retries would wait as long.
    """
    key = RQScheduler.get_locking_key(QUEUE_NAME)
    holder: bytes | None = connection.get(key)  # type: ignore[assignment]  # a client without decode_responses
    if holder is None:
        return False
    name = holder.decode()
    raw: dict[bytes, bytes] = connection.hgetall(SCHEDULER_KEY_TEMPLATE % name)  # type: ignore[assignment]
    info = {k.decode(): v.decode() for k, v in raw.items()}
    pid = int(info.get("pid") or 0)
    if info.get("hostname") == socket.gethostname() and pid and lifeline.start_time(pid) is not None:
        return False
    # Delete the lock only if that scheduler still holds it (one script: no race with a new holder).
    script = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
    return bool(connection.eval(script, 1, key, name))


def clear_after_stop(connection: redis.Redis) -> None:
    """At the start of a station with its own Redis, no worker or watcher can be alive: give back every
    running job, and free the locks and worker entries that a station stopped without cleaning left."""
    requeue_abandoned(connection, everything=True)
    connection.delete(WATCHER_LOCK, RQScheduler.get_locking_key(QUEUE_NAME))
    for worker in Worker.all(connection=connection):
        worker.register_death()
