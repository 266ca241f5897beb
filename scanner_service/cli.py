"""The ``scanstation`` command."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from scanner_service.archive.layout import Layout
from scanner_service.exceptions import ScanstationError, UnusableInput
from scanner_service.settings import Settings, build_settings
from scanner_service.station import lifeline

API_GRACE = 3  # seconds the API gives requests still open (a stalled upload or download) when it stops


def _settings(args: argparse.Namespace) -> Settings:
    return build_settings(
        data=getattr(args, "data", None),
        inbox=getattr(args, "inbox", None),
        port=getattr(args, "port", None),
        host=getattr(args, "host", None),
        workers=getattr(args, "workers", None),
    )


def cmd_up(args: argparse.Namespace) -> int:
    from scanner_service.station.supervisor import Station

    return Station(_settings(args)).run()


def _give_back_free_memory() -> None:
    """Return the warm-up page's freed memory to the system (glibc keeps it otherwise): the worker
    stays small, and every work horse forked from it starts small."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cmd_worker(args: argparse.Namespace) -> int:
    from rq import Worker

    from ocr_models import registry
    from scanner_service.station import queue as q
    from workers.exec import tesseract

    settings = _settings(args)
    registry.check(settings.ocr_engine, settings.ocr_languages, settings.ocr_runtime)
    tesseract.single_thread_env()
    import cv2

    cv2.setNumThreads(1)  # one worker per core: a page's image work stays on its own core
    import tempfile

    import scanner_service.station.jobs  # noqa: F401  (the jobs' imports: half a second paid once, not per page)
    from ocr_models.registry import build_engine
    from workers.pipeline import warm_up

    # Load and run the models and stages once before RQ forks a work horse per page: every horse
    # starts with them ready in memory (shared, copy-on-write) instead of paying ~1.5 s per page.
    with tempfile.TemporaryDirectory() as tmp:
        engine = build_engine(
            settings.ocr_engine, languages=settings.ocr_languages, timeout=60, runtime=settings.ocr_runtime
        )
        warm_up(engine, Path(tmp))
    _give_back_free_memory()
    connection = q.connect(settings)
    # The work horse RQ forks for each page dies with this worker: a horse left behind would finish its
    # page while the page runs again elsewhere.
    lifeline.children_die_with_me()
    worker = Worker(
        [q.get_queue(connection)],
        connection=connection,
        name=q.worker_name(os.getpid()),
        job_monitoring_interval=settings.job_monitoring_interval,
        worker_ttl=45,
        maintenance_interval=30,
    )
    # No scheduler here: it runs as a process of its own (cmd_scheduler). Forked from this worker, it
    # held 260 MB of the worker's memory (the models, the warm-up) to queue retries once a second.
    worker.work(with_scheduler=False, burst=args.burst, logging_level="WARNING")
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    """Queue the retries whose back-off is over (RQ's scheduler), in a small process of its own.

    The supervisor restarts it when it dies; a new one frees the lock a dead one left (else retries
    would wait for it to expire)."""
    from rq.scheduler import RQScheduler

    from scanner_service.station import queue as q

    settings = _settings(args)
    connection = q.connect(settings)
    q.release_dead_scheduler_lock(connection)
    scheduler = RQScheduler([q.QUEUE_NAME], connection=connection, logging_level="WARNING")
    scheduler.acquire_locks()
    scheduler.work()  # until SIGTERM or SIGINT; it then gives its lock back
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from scanner_service.archive.db import migrate
    from scanner_service.station import queue as q
    from scanner_service.station.watcher import Watcher

    settings = _settings(args)
    migrate(settings.effective_database_url)
    stop = threading.Event()
    # Not stop.set() in a signal handler: it takes a lock the interrupted main thread may hold.
    lifeline.SignalInbox([signal.SIGTERM, signal.SIGINT]).set_on(stop, [signal.SIGTERM, signal.SIGINT])
    Watcher(settings, q.connect(settings)).run(stop)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from scanner_service.api.app import create_app
    from scanner_service.archive.db import migrate
    from scanner_service.archive.export.run import mark_cut_off

    settings = _settings(args)
    migrate(settings.effective_database_url)
    if cut := mark_cut_off(settings):  # exports this API was writing when it stopped
        logging.getLogger(__name__).warning("%d export(s) cut off by the last stop marked failed", cut)
    # Without a limit uvicorn waits, when stopped, for every request still open: a client that stalls
    # (an upload it does not finish, a download it does not read) would hold the stop forever.
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=API_GRACE
        )
    )
    app.state.stopping = lambda: server.should_exit  # an open event stream (GET /api/stream) ends at once
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: uvicorn raises a Ctrl-C again once stopped
        server.run()
    return 0 if server.started else STARTUP_FAILURE


def cmd_ingest(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from sqlalchemy import select

    from scanner_service.archive.db import migrate, session_scope
    from scanner_service.archive.models import Batch, BatchState, Page, PageState
    from scanner_service.station import intake
    from scanner_service.station import queue as q

    settings = _settings(args)
    url = settings.effective_database_url
    migrate(url)
    queue = q.get_queue(q.connect(settings))
    batch_ids = []
    for raw in args.paths:
        path = Path(raw)
        if not (path.exists() or path.is_symlink()):
            print(f"{raw}: no such file or folder", file=sys.stderr)
            continue
        batch_ids.append(intake.receive(settings, queue, path.resolve(), copy=True))
    if not batch_ids:
        return 4
    final = {BatchState.done, BatchState.needs_review, BatchState.failed}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("pages", total=None)
        while True:
            with session_scope(url) as session:
                batches = session.scalars(select(Batch).where(Batch.id.in_(batch_ids))).all()
                states = [b.state for b in batches]
                pages = session.scalars(select(Page.state).where(Page.batch_id.in_(batch_ids))).all()
            done = sum(s in (PageState.done, PageState.failed) for s in pages)
            bar.update(task, total=len(pages), completed=done)
            if all(s in final for s in states) or args.no_wait:
                break
            time.sleep(0.5)
    with session_scope(url) as session:
        for batch in session.scalars(select(Batch).where(Batch.id.in_(batch_ids))):
            line = f"batch {batch.id} {batch.name}: {batch.state.value}"
            if batch.error:
                line += f" — {batch.error}"
            print(line)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from scanner_service.archive.db import migrate, session_scope
    from scanner_service.archive.tokens import create_token

    settings = _settings(args)
    migrate(settings.effective_database_url)
    with session_scope(settings.effective_database_url) as session:
        secret = create_token(session, role=args.role, fonds=args.fonds, name=args.name)
    # The token alone on stdout, so `TOKEN=$(scanstation token create ...)` works; the note to stderr.
    note = f"Token for role {args.role}" + (f", fonds {args.fonds}" if args.fonds else "") + " (shown once)."
    print(note, file=sys.stderr)
    print(secret)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from scanner_service.archive.db import migrate, session_scope
    from scanner_service.archive.tokens import list_tokens

    settings = _settings(args)
    migrate(settings.effective_database_url)
    with session_scope(settings.effective_database_url) as session:
        for t in list_tokens(session):
            state = " (revoked)" if t.revoked else ""
            print(f"{t.id}\t{t.role.value}\t{t.fonds or '*'}\t{t.name}{state}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from scanner_service.archive.db import migrate, session_scope
    from scanner_service.archive.tokens import revoke_token

    settings = _settings(args)
    migrate(settings.effective_database_url)
    with session_scope(settings.effective_database_url) as session:
        record = revoke_token(session, args.id)
        print(f"{record.id}\t{record.role.value}\t{record.name}: revoked.")
    return 0


def _new_password(args: argparse.Namespace) -> str:
    """The new password: stdin's first line with --password-stdin, otherwise asked twice (not echoed)."""
    from scanner_service.archive.people import check_password_rules

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"New password for {args.name}: ")
        check_password_rules(password)
        if getpass.getpass("The same password again: ") != password:
            raise UnusableInput("The two passwords differ; nothing was changed.", reason_code="password_mismatch")
    return password  # create_user and change_password check it (asked: before it is asked again)


def cmd_user_create(args: argparse.Namespace) -> int:
    from scanner_service.archive import people
    from scanner_service.archive.db import migrate, session_scope

    settings = _settings(args)
    migrate(settings.effective_database_url)
    with session_scope(settings.effective_database_url) as session:
        people.check_new_name(session, args.name)  # before asking for a password
    password = _new_password(args)
    with session_scope(settings.effective_database_url) as session:
        user = people.create_user(
            session, name=args.name, role=args.role, fonds=args.fonds, password=password, settings=settings
        )
        print(f"{user.name}: {user.role.value}, fonds {user.fonds or 'all'}; logs in with POST /api/session.")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    from scanner_service.archive import people
    from scanner_service.archive.db import migrate, session_scope

    settings = _settings(args)
    migrate(settings.effective_database_url)
    with session_scope(settings.effective_database_url) as session:
        people.find_user(session, args.name)  # before asking: no password typed for a name that does not exist
    password = _new_password(args)
    with session_scope(settings.effective_database_url) as session:
        people.change_password(session, args.name, password, settings=settings)
    print(f"{args.name}: password changed; their logins have ended.")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    from scanner_service.archive import people
    from scanner_service.archive.db import migrate, session_scope

    settings = _settings(args)
    migrate(settings.effective_database_url)
    disable = args.user_command == "disable"
    with session_scope(settings.effective_database_url) as session:
        people.set_disabled(session, args.name, disable)
    print(f"{args.name}: " + ("disabled; their logins have ended." if disable else "enabled (and unlocked)."))
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    from scanner_service.archive import people
    from scanner_service.archive.db import migrate, session_scope

    settings = _settings(args)
    migrate(settings.effective_database_url)
    with session_scope(settings.effective_database_url) as session:
        print("name\trole\tfonds\tstate\tlocked until\tlast login")
        for u in people.list_users(session):
            until = people.locked_until(u)
            last = u.last_login_at
            print(
                f"{u.name}\t{u.role.value}\t{u.fonds or '*'}\t{'disabled' if u.disabled else 'enabled'}\t"
                f"{_utc_minute(until) if until else '-'}\t{_utc_minute(last) if last else 'never'}"
            )
    return 0


def _utc_minute(moment: datetime) -> str:
    from scanner_service.archive.models import as_utc

    return f"{as_utc(moment):%Y-%m-%d %H:%M} UTC"


def cmd_audit(args: argparse.Namespace) -> int:
    from scanner_service.archive.db import migrate, session_scope
    from scanner_service.archive.fixity import audit

    settings = _settings(args)
    migrate(settings.effective_database_url)
    with session_scope(settings.effective_database_url) as session:
        report = audit(session, Layout.of(settings).archive, fonds=args.fonds)
    for line in report.lines():
        print(line)
    mib = report.bytes_read / 2**20
    verdict = "OK" if report.ok else f"{len(report.changed)} changed, {len(report.missing)} missing"
    print(f"audit: {report.checked} files checked ({mib:.1f} MiB), {verdict}, {len(report.untracked)} untracked")
    return 0 if report.ok else 11


def cmd_catalogue_import(args: argparse.Namespace) -> int:
    from scanner_service.archive.catalogue_import import read_catalogue
    from scanner_service.archive.catalogue_store import import_catalogue
    from scanner_service.archive.db import migrate, session_scope

    settings = _settings(args)
    migrate(settings.effective_database_url)
    imported = read_catalogue(Path(args.file), sheet=args.sheet)
    with session_scope(settings.effective_database_url) as session:
        counts = import_catalogue(session, imported, actor="cli", settings=settings)
    print(f"{args.file}: {counts['rows']} rows, {counts['created']} new items, {counts['updated']} updated")
    if imported.ignored_columns:
        print("columns not imported: " + ", ".join(imported.ignored_columns))
    return 0


def cmd_separators(args: argparse.Namespace) -> int:
    from scanner_service.archive.catalogue_store import items_for_sheets
    from scanner_service.archive.db import migrate, session_scope
    from scanner_service.archive.separator_sheets import SeparatorEntry, render_separator_sheets

    settings = _settings(args)
    migrate(settings.effective_database_url)
    with session_scope(settings.effective_database_url) as session:
        items = items_for_sheets(session, args.fonds, year=args.year, category=args.category, include_filed=args.all)
        entries = [
            SeparatorEntry(archival_code=i.archival_code, title=i.title or "", pages=i.expected_pages) for i in items
        ]
    if not entries:
        print("No items to print sheets for (imported the catalogue? --all includes items already scanned).")
        return 4
    render_separator_sheets(entries, Path(args.out))
    print(f"{args.out}: {len(entries)} separator sheets")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from scanner_service.archive.access import Caller
    from scanner_service.archive.db import migrate
    from scanner_service.archive.export import ExportSpec, export_archive
    from scanner_service.archive.export.choose import parse_volume_size, parse_years
    from scanner_service.archive.models import Role

    settings = _settings(args)
    migrate(settings.effective_database_url)
    spec = ExportSpec(
        fonds=args.fonds,
        category=args.category,
        years=parse_years(args.years),
        items=tuple(args.items or ()),
        include_restricted=args.include_restricted,
        recipient=args.recipient,
        purpose=args.purpose,
        volume_size=parse_volume_size(args.volume_size),
    )
    # Whoever runs the command holds the data folder: it exports as an admin, under the name given.
    caller = Caller(name=args.by or getpass.getuser(), role=Role.admin)
    columns = (TextColumn("PDFs"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=args.quiet) as bar:
        task = bar.add_task("copy", total=None)
        report = export_archive(
            settings,
            caller,
            spec,
            Path(args.to),
            iso=Path(args.iso) if args.iso else None,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    for volume in report.volumes:
        iso = f"; ISO {volume.iso}" if volume.iso else ""
        print(f"{volume.folder}: {volume.items} items, {volume.pages} pages, {volume.bytes / 1e6:.1f} MB{iso}")
    for left in report.left_out:
        print(f"left out  {left.archival_code}  ({left.reason_code}) {left.reason}")
    print(
        f"export #{report.export_id}: {report.items} items, {report.pages} pages in {len(report.volumes)} "
        f"volume(s), {len(report.left_out)} left out; open index.html in a browser to use it"
    )
    return 0  # an export with nothing in it is refused (nothing_to_export) before this


def cmd_verify_export(args: argparse.Namespace) -> int:
    from scanner_service.archive.export import verify_export

    reports = verify_export(Path(args.folder))
    for report in reports:
        for line in report.lines():
            print(f"{report.folder.name}/  {line}" if len(reports) > 1 else line)
        verdict = "OK" if report.ok else f"{len(report.changed)} changed, {len(report.missing)} missing"
        print(
            f"{report.folder}: {report.checked} files checked ({report.bytes_read / 2**20:.1f} MiB), {verdict}, "
            f"{len(report.extra)} not in the manifest"
        )
    return 0 if all(r.ok for r in reports) else 11


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def cmd_transfer(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from scanner_service.archive.access import Caller
    from scanner_service.archive.db import migrate
    from scanner_service.archive.export.choose import parse_years
    from scanner_service.archive.models import Role
    from scanner_service.archive.transfer import TransferSpec, transfer_fonds

    settings = _settings(args)
    migrate(settings.effective_database_url)
    spec = TransferSpec(fonds=args.fonds, years=parse_years(args.years), recipient=args.recipient)
    caller = Caller(name=args.by or getpass.getuser(), role=Role.admin)  # who holds the data folder
    columns = (TextColumn("items"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=args.quiet) as bar:
        task = bar.add_task("copy", total=None)
        report = transfer_fonds(
            settings,
            caller,
            spec,
            Path(args.to),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    for left in report.left_out:
        print(f"left out  {left.archival_code}  ({left.reason_code}) {left.reason}")
    print(
        f"{report.bag}: a valid BagIt bag of {_count(report.items, 'item')}, {report.pages} pages, "
        f"{report.files} files "
        f"({report.bytes / 1e6:.1f} MB), {len(report.left_out)} left out"
    )
    return 0


def cmd_receive(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from scanner_service.archive.access import Caller
    from scanner_service.archive.db import migrate
    from scanner_service.archive.filing import recover_journals
    from scanner_service.archive.models import Role
    from scanner_service.archive.transfer import receive_bag

    settings = _settings(args)
    migrate(settings.effective_database_url)
    recover_journals(settings)
    caller = Caller(name=args.by or getpass.getuser(), role=Role.admin)
    with Progress(TextColumn("items"), BarColumn(), MofNCompleteColumn(), disable=args.quiet) as bar:
        task = bar.add_task("file", total=None)
        report = receive_bag(
            settings, caller, Path(args.bag), progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    for code in report.already:
        print(f"already here  {code}")
    print(
        f"{report.bag}: bag valid; {_count(len(report.filed), 'item')} filed "
        f"({report.pages} pages, {report.files} files), "
        f"{len(report.already)} already here" + (f"; from {report.source}" if report.source else "")
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, help="data folder (default ./data or $SCANSTATION_DATA)")
    common.add_argument("--inbox", type=Path, help="scanner folder (default ./inbox or $SCANSTATION_INBOX)")
    common.add_argument("-v", "--verbose", action="store_true")
    parser = argparse.ArgumentParser(prog="scanstation", description="Scan station for village archives.")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", parents=[common], help="run everything: redis, workers, watcher, API")
    up.add_argument("--host")
    up.add_argument("--port", type=int)
    up.add_argument("--workers", type=int)
    up.set_defaults(func=cmd_up)

    worker = sub.add_parser("worker", parents=[common], help="run one RQ worker")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    worker.set_defaults(func=cmd_worker)

    sub.add_parser("watch", parents=[common], help="run the inbox watcher").set_defaults(func=cmd_watch)
    sub.add_parser("scheduler", parents=[common], help="run the scheduler of retries").set_defaults(func=cmd_scheduler)

    api = sub.add_parser("api", parents=[common], help="run the HTTP API")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(func=cmd_api)

    ingest = sub.add_parser("ingest", parents=[common], help="queue files or folders now and wait for them")
    ingest.add_argument("paths", nargs="+")
    ingest.add_argument("--no-wait", action="store_true")
    ingest.set_defaults(func=cmd_ingest)

    token = sub.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", parents=[common], help="create a token; stdout is the token alone")
    create.add_argument("--role", required=True, choices=["admin", "archivist", "operator", "reader"])
    create.add_argument("--fonds", help="fonds code(s) (全宗号) the token is limited to, comma-separated")
    create.add_argument("--name")
    create.set_defaults(func=cmd_token)
    token_sub.add_parser("list", parents=[common], help="list tokens (id, role, fonds, name)").set_defaults(
        func=cmd_token_list
    )
    revoke = token_sub.add_parser("revoke", parents=[common], help="revoke a token for good (its id from 'list')")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(func=cmd_token_revoke)

    user = sub.add_parser("user", help="people who log in with a name and password")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    ucreate = user_sub.add_parser("create", parents=[common], help="create a person (the password is asked twice)")
    ucreate.add_argument("name")
    ucreate.add_argument("--role", required=True, choices=["admin", "archivist", "operator", "reader"])
    ucreate.add_argument("--fonds", help="fonds code(s) (全宗号) the person is limited to, comma-separated")
    ucreate.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    ucreate.set_defaults(func=cmd_user_create)
    passwd = user_sub.add_parser("passwd", parents=[common], help="set a new password (their logins end)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    passwd.set_defaults(func=cmd_user_passwd)
    for verb, text in [
        ("disable", "disable a person (their logins end)"),
        ("enable", "enable again; clears a lockout"),
    ]:
        toggle = user_sub.add_parser(verb, parents=[common], help=text)
        toggle.add_argument("name")
        toggle.set_defaults(func=cmd_user_disable)
    user_sub.add_parser(
        "list", parents=[common], help="list people (name, role, fonds, state, locked until, last login)"
    ).set_defaults(func=cmd_user_list)

    audit = sub.add_parser("audit", parents=[common], help="re-read the archive; report files changed or missing")
    audit.add_argument("--fonds", help="only this fonds")
    audit.set_defaults(func=cmd_audit)

    catalogue = sub.add_parser("catalogue", help="归档文件目录")
    catalogue_sub = catalogue.add_subparsers(dest="catalogue_command", required=True)
    imp = catalogue_sub.add_parser("import", parents=[common], help="import a CSV or XLSX catalogue (all or nothing)")
    imp.add_argument("file")
    imp.add_argument("--sheet", help="XLSX sheet name (default: the first)")
    imp.set_defaults(func=cmd_catalogue_import)

    export = sub.add_parser(
        "export", parents=[common], help="送档下乡: the archive as a folder (and ISO) a browser opens offline"
    )
    export.add_argument("--to", required=True, help="folder to write (must not exist or be empty)")
    export.add_argument("--iso", help="also write an ISO 9660 image (with --volume-size: FILE-1.iso, FILE-2.iso …)")
    export.add_argument("--fonds", help="only this fonds (全宗号)")
    export.add_argument("--category", help="only this 门类 (WS, KJ …)")
    export.add_argument("--years", help="only these years: 2013 or 1998-2013")
    export.add_argument("--items", nargs="+", metavar="档号", help="only these items")
    export.add_argument(
        "--include-restricted", action="store_true", help="also the restricted items named with --items"
    )
    export.add_argument("--for", dest="recipient", help="for whom: the archive room it goes to (利用登记)")
    export.add_argument("--purpose", help="why (利用登记)")
    export.add_argument("--volume-size", help="split into volumes of CD (700 MB), DVD (4.7 GB), or a size: 650M")
    export.add_argument("--by", help="the exporter's name in the 利用登记 (default: your login name)")
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    export.set_defaults(func=cmd_export)

    transfer = sub.add_parser(
        "transfer", parents=[common], help="移交: a fonds as a BagIt bag for the county archive (scanstation receive)"
    )
    transfer.add_argument("--fonds", required=True, help="the fonds (全宗号) to hand over")
    transfer.add_argument("--years", help="only these years: 2013 or 1998-2013")
    transfer.add_argument("--to", required=True, help="the bag's folder to write (must not exist or be empty)")
    transfer.add_argument("--for", dest="recipient", help="接收单位: the archive it goes to (bag-info, 利用登记)")
    transfer.add_argument("--by", help="who hands it over (default: your login name)")
    transfer.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    transfer.set_defaults(func=cmd_transfer)

    receive = sub.add_parser(
        "receive", parents=[common], help="接收: check a transfer bag and file its items under their own 档号"
    )
    receive.add_argument("bag", help="the bag's folder")
    receive.add_argument("--by", help="who receives it (default: your login name)")
    receive.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    receive.set_defaults(func=cmd_receive)

    verify = sub.add_parser("verify-export", parents=[common], help="check an export's files against its manifest")
    verify.add_argument("folder")
    verify.set_defaults(func=cmd_verify_export)

    sheets = sub.add_parser("separators", parents=[common], help="print separator sheets (PDF) for catalogue items")
    sheets.add_argument("--fonds", required=True)
    sheets.add_argument("--year", type=int)
    sheets.add_argument("--category")
    sheets.add_argument("--all", action="store_true", help="also items that already have pages")
    sheets.add_argument("--out", required=True, help="PDF file to write")
    sheets.set_defaults(func=cmd_separators)
    return parser


# The station's own packages log at INFO (pages, batches, restarts: the station's log); other libraries
# only from WARNING up: alembic's migration steps and pikepdf's start-up notes are no news to an operator.
OWN_LOGGERS = ("scanner_service", "workers", "ocr_models")


def setup_logging(verbose: bool) -> None:
    """Log lines to stderr: the station's INFO and everyone's warnings, or everything with -v."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        for name in OWN_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except ScanstationError as err:
        print(f"scanstation: {err.message}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
