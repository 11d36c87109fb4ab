"""The `distillery` command: serve, worker, db upgrade, keys, teacher check; and the client
(datasets, skills, seeds, jobs, export) for a running service.

The one module that may compose `app` and `workers` (workers are imported inside commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from app.client import commands as client
from app.config import Settings, get_settings

if TYPE_CHECKING:
    from app.main import Background

# The server's modules (SQLAlchemy models, the migrations, the app) are imported inside the
# commands that need them: the client's commands start without them.

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
keys_cli = typer.Typer(no_args_is_help=True, help="API keys (bearer tokens) of tenants.")
teacher_cli = typer.Typer(no_args_is_help=True, help="The teacher this machine serves.")
cli.add_typer(db_cli, name="db")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(teacher_cli, name="teacher")
# the client: talks to a running service over HTTP (app/client)
cli.add_typer(client.datasets_cli, name="datasets")
cli.add_typer(client.skills_cli, name="skills")
cli.add_typer(client.seeds_cli, name="seeds")
cli.add_typer(client.jobs_cli, name="jobs")
cli.command("export", help=client.reflow(client.export_command.__doc__))(client.export_command)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # soft_wrap: one error stays one line

# at shutdown, requests still open this long after SIGTERM are cut: an event stream
# (GET /v1/jobs/{id}/events) lasts as long as its job, and would hold the shutdown that long
SHUTDOWN_GRACE_S = 5

DatabaseOpt = Annotated[
    str | None, typer.Option("--database-url", help="overrides DISTILLERY_DATABASE_URL")
]


def _settings(database_url: str | None = None, **overrides: object) -> Settings:
    """The environment's settings with the command's options over them, validated together."""
    from pydantic import ValidationError

    try:
        settings = get_settings()
        update = {"database_url": database_url, **overrides}
        update = {k: v for k, v in update.items() if v is not None}
        if not update:
            return settings
        return Settings.model_validate(settings.model_dump() | update)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        _fail(f"bad setting {where}: {first['msg'].removeprefix('Value error, ')}", code=2)


def _fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and exit `code` (startup errors are not tracebacks)."""
    errors.print(f"[red]error[/red]: {message}", markup=True, highlight=False)
    raise typer.Exit(code)


@contextlib.contextmanager
def _database_errors(url: str) -> Iterator[None]:
    """Turn a database that is missing, unreachable or refusing into one line on stderr."""
    from sqlalchemy.engine import make_url

    from app.db import DATABASE_ERRORS, causes

    try:
        yield
    except DATABASE_ERRORS as exc:  # SQLAlchemy's errors (a bad URL too), OSError, the driver's
        *_, cause = causes(exc)  # the driver's own error: its text names the problem
        reason = " ".join(str(cause).split()) or type(cause).__name__
        where = make_url(url).render_as_string(hide_password=True)
        _fail(f"database {where}: {reason}")


async def _ping(url: str) -> None:
    """Connect once and run SELECT 1 (raises what the driver raises)."""
    from sqlalchemy import text

    from app.state import Database

    db = Database.from_url(url)
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    finally:
        await db.engine.dispose()


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything else starts (uvicorn serves on it)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="port [default: 8000]")] = None,
    database_url: DatabaseOpt = None,
    migrate_schema: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="upgrade the schema first")
    ] = True,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker",
            help="run a worker in-process (default: DISTILLERY_EMBEDDED_WORKER, true)",
        ),
    ] = None,
    api_processes: Annotated[
        int | None,
        typer.Option(
            "--api-processes",
            min=1,
            max=64,
            help="processes answering the API (default: DISTILLERY_API_PROCESSES, else the "
            "usable cores on Postgres without the embedded worker, 1 otherwise)",
        ),
    ] = None,
) -> None:
    """Run the API, with an in-process worker (embedded default: SQLite file, 127.0.0.1:8000)."""
    import uvicorn

    from app import migrate
    from app.main import create_app

    settings = _settings(database_url, host=host, port=port, api_processes=api_processes)
    if not settings.auth and not is_loopback(settings.host):
        console.print(
            f"[red]refusing to serve without API keys on {settings.host}[/red]: "
            "set DISTILLERY_AUTH=true (and create keys) or bind a loopback address"
        )
        raise typer.Exit(2)
    sock = _listen(settings.host, settings.port)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if migrate_schema and settings.auto_migrate:
        with _database_errors(settings.database_url):
            migrate.upgrade(settings.database_url)
    with_worker = settings.embedded_worker if worker is None else worker
    background = embedded_workers(settings) if with_worker else []
    processes = api_process_count(settings, with_worker=with_worker)
    if processes > 1:
        _serve_processes(settings, sock, processes, background)
        return
    config = uvicorn.Config(
        create_app(settings, background=background),
        log_level="info",
        access_log=False,  # a log line per request costs more than the request (bench/service.py)
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    server = uvicorn.Server(config)
    logging.getLogger(__name__).info(
        "serving on http://%s:%d",
        f"[{settings.host}]" if ":" in settings.host else settings.host,
        sock.getsockname()[1],
        extra={"action": "serve"},
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn re-raises it after shutdown
        server.run(sockets=[sock])
    if not server.started:
        sys.exit(3)  # what uvicorn.run exits with when the app failed to start


def api_process_count(settings: Settings, *, with_worker: bool) -> int:
    """How many processes answer the API: DISTILLERY_API_PROCESSES / --api-processes, else the
    usable cores on Postgres (a status poll costs CPU; one event loop is one core), but 1 on
    SQLite (one file, one writer: more processes only add lock waits) and when the embedded
    worker runs (it shares the API's process and engine, as on a laptop)."""
    if settings.api_processes is not None:
        return settings.api_processes
    if with_worker or settings.database_url.startswith("sqlite"):
        return 1
    return max(1, len(os.sched_getaffinity(0)))


def _serve_processes(
    settings: Settings, sock: socket.socket, processes: int, background: list[Background]
) -> None:
    """`processes` uvicorn processes on `sock` (each builds the app from the environment:
    app.main.app_from_env); the embedded worker, if any, runs once, here in the parent, on its
    own thread and event loop. SIGTERM/SIGINT stop the children, then the worker."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    # the children read their settings from the environment: the command's options go there
    os.environ.update(
        DISTILLERY_DATABASE_URL=settings.database_url,
        DISTILLERY_HOST=settings.host,
        DISTILLERY_PORT=str(settings.port),
        DISTILLERY_EMBEDDED_WORKER="false",
    )
    config = uvicorn.Config(
        "app.main:app_from_env",
        factory=True,
        workers=processes,
        log_level="info",
        access_log=False,
        timeout_worker_healthcheck=60,  # a process starting on a busy machine is not hung
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    logging.getLogger(__name__).info(
        "serving on http://%s:%d with %d API processes%s",
        f"[{settings.host}]" if ":" in settings.host else settings.host,
        sock.getsockname()[1],
        processes,
        " and the worker in the parent" if background else "",
        extra={"action": "serve"},
    )
    supervisor = Multiprocess(config, sockets=[sock])
    with _background_thread(settings, background):
        supervisor.run()
    if any(p.process.exitcode == 3 for p in supervisor.processes):
        sys.exit(3)  # a process failed to start (uvicorn stopped them all)


@contextlib.contextmanager
def _background_thread(settings: Settings, background: list[Background]) -> Iterator[None]:
    """Run `background` (the embedded worker) on an event loop of its own thread while the block
    runs; at its end, cancel them (their cue to stop gracefully) and wait for them."""
    import threading

    from app.state import Database

    if not background:
        yield
        return
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        db = Database.from_url(settings.database_url)
        tasks = [asyncio.create_task(job(db)) for job in background]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await db.engine.dispose()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="worker")
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        loop.close()


def embedded_workers(settings: Settings) -> list[Background]:
    """The in-process worker for `serve`, or none (with a warning) when no teacher is set up."""
    from workers import runner
    from workers.teachers import TeacherError, make_teacher

    try:
        teacher = make_teacher(settings.teacher)
    except (ValueError, TeacherError) as exc:
        logging.getLogger(__name__).warning(
            "%s; serving the API without a worker: no worker will run jobs until `distillery "
            "worker` runs with a teacher (their health says waiting_for_worker)",
            exc,
            extra={"action": "embedded_worker_off"},
        )
        return []
    return [runner.embedded_worker(settings, teacher)]


@cli.command("worker")
def worker_command(
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="tasks in flight (default: DISTILLERY_WORKER_CONCURRENCY, "
            f"{Settings.model_fields['worker_concurrency'].default})",
        ),
    ] = None,
    database_url: DatabaseOpt = None,
    model: Annotated[
        str | None, typer.Option(help="teacher model (overrides DISTILLERY_TEACHER__MODEL)")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="serve /metrics on this port (DISTILLERY_WORKER_METRICS_PORT)"
        ),
    ] = None,
    metrics_host: Annotated[
        str | None,
        typer.Option(help="address of /metrics (DISTILLERY_WORKER_METRICS_HOST, 127.0.0.1)"),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=256,
            help="worker processes on this machine (DISTILLERY_WORKER_PROCESSES; 0, the "
            "default: the usable cores for the openai backend, 1 for vllm and transformers)",
        ),
    ] = None,
) -> None:
    """Claim and run tasks until SIGTERM/SIGINT, then finish or release what is held."""
    settings = _settings(
        database_url,
        worker_concurrency=concurrency,
        worker_metrics_port=metrics_port,
        worker_metrics_host=metrics_host,
        worker_processes=processes,
    )
    if model is not None:
        teacher_settings = settings.teacher.model_copy(update={"model": model})
        settings = settings.model_copy(update={"teacher": teacher_settings})
    with _database_errors(settings.database_url):  # before the teacher: loading one takes long
        asyncio.run(_ping(settings.database_url))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    count = _worker_processes(settings)
    if count > 1:  # this process supervises; each child is the single-process worker below
        raise typer.Exit(_supervise_workers(settings, count))
    # imported here, not by a supervising parent: it runs no task (~35 MB less of it)
    from workers import runner
    from workers.teachers import TeacherError, make_teacher

    try:
        teacher = make_teacher(settings.teacher)
    except (ValueError, TeacherError) as exc:
        console.print(f"[red]no teacher[/red]: {exc}")
        raise typer.Exit(2) from None
    _serve_worker_metrics(settings)
    with _event_loop() as loop:
        loop.run(runner.run_worker(settings, teacher))


def _event_loop() -> asyncio.Runner:
    """The worker's event loop: uvloop's when installed (its socket and callback handling cost
    a worker less CPU per teacher request), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def _worker_processes(settings: Settings) -> int:
    """DISTILLERY_WORKER_PROCESSES, or for 0 what keeps the teacher full (workers.supervisor)."""
    from workers import supervisor
    from workers.teachers import resolve_backend

    if settings.worker_processes:
        return settings.worker_processes
    try:
        backend = resolve_backend(settings.teacher)
    except ValueError:
        return 1  # no teacher: the single process says so
    return supervisor.default_processes(backend)


def _supervise_workers(settings: Settings, count: int) -> int:
    """Run `count` worker processes (workers.supervisor) with their share of the teacher's
    requests each; with --metrics-port this process serves the sum of theirs."""
    import os
    import shutil
    import tempfile

    from workers import supervisor

    share = supervisor.share(settings.teacher.max_concurrency, count)
    overrides = {
        "DISTILLERY_DATABASE_URL": settings.database_url,
        "DISTILLERY_WORKER_CONCURRENCY": str(settings.worker_concurrency),
        "DISTILLERY_TEACHER__MAX_CONCURRENCY": str(share),
    }
    if settings.teacher.model is not None:
        overrides["DISTILLERY_TEACHER__MODEL"] = settings.teacher.model
    metrics_dir = None
    if settings.worker_metrics_port is not None:
        metrics_dir = tempfile.mkdtemp(prefix="distillery-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # the children write their values here
        _serve_worker_metrics(settings)
    envs = supervisor.child_environments(
        os.environ,
        count,
        overrides=overrides,
        worker_id=os.environ.get("DISTILLERY_WORKER_ID"),  # the default is unique per process
    )
    logging.getLogger(__name__).info(
        "%d worker processes, %d teacher requests in flight each at most",
        count,
        share,
        extra={"action": "worker_processes", "processes": count},
    )
    try:
        return supervisor.Supervisor([sys.executable, "-m", "app.cli", "worker"], envs).run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve_worker_metrics(settings: Settings) -> None:
    """Start the worker's /metrics server when a port is set (a thread of this process)."""
    if settings.worker_metrics_port is None:
        return
    from workers import metrics

    host = settings.worker_metrics_host
    try:
        port = metrics.serve_metrics(settings.worker_metrics_port, host)
    except OSError as exc:
        where = f"{host}:{settings.worker_metrics_port}"
        _fail(f"cannot serve metrics on {where}: {exc.strerror or exc}")
    logging.getLogger(__name__).info(
        "worker metrics on http://%s:%d/metrics", host, port, extra={"action": "metrics_serve"}
    )


@db_cli.command("upgrade")
def db_upgrade(
    database_url: DatabaseOpt = None,
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Apply the migrations (Postgres or SQLite)."""
    from app import migrate

    settings = _settings(database_url)
    with _database_errors(settings.database_url):
        migrate.upgrade(settings.database_url, revision)
    console.print(f"database at [bold]{revision}[/bold]")


async def _with_db(settings: Settings, work):  # type: ignore[no-untyped-def]
    from app.state import Database

    db = Database.from_url(settings.database_url)
    try:
        with _database_errors(settings.database_url):
            async with db.transaction() as session:
                return await work(session)
    finally:
        await db.engine.dispose()


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="tenant name (created if new)")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    database_url: DatabaseOpt = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from app import auth

    async def work(session):  # type: ignore[no-untyped-def]
        return await auth.add_key(session=session, tenant_name=tenant, name=name)

    key, plain = asyncio.run(_with_db(_settings(database_url), work))
    console.print(f"key id {key.id} for tenant {tenant!r}; store it now, it is not shown again:")
    print(plain)


@keys_cli.command("list")
def keys_list(database_url: DatabaseOpt = None) -> None:
    """List keys (prefix, tenant, revoked or not)."""
    from app import auth

    async def work(session):  # type: ignore[no-untyped-def]
        return await auth.list_keys(session=session)

    table = Table("id", "tenant", "name", "prefix", "created", "revoked")
    for key, tenant in asyncio.run(_with_db(_settings(database_url), work)):
        revoked = key.revoked_at.isoformat() if key.revoked_at else ""
        table.add_row(
            str(key.id), tenant, key.name, key.prefix, key.created_at.isoformat(), revoked
        )
    console.print(table)


@keys_cli.command("revoke")
def keys_revoke(key_id: uuid.UUID, database_url: DatabaseOpt = None) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from app import auth

    async def work(session):  # type: ignore[no-untyped-def]
        return await auth.revoke_key(session=session, key_id=key_id)

    from app.errors import NotFound

    try:
        asyncio.run(_with_db(_settings(database_url), work))
    except NotFound as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from None
    console.print(f"revoked {key_id}")


@teacher_cli.command("check")
def teacher_check(
    backend: Annotated[str | None, typer.Option(help="auto, openai, vllm or transformers")] = None,
    model: Annotated[str | None, typer.Option(help="model name or local path")] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="OpenAI-compatible URL, e.g. http://h:8000/v1")
    ] = None,
) -> None:
    """Send one small probe to the teacher; print latency and tokens/s (exit 1 if it fails)."""
    from pydantic import ValidationError

    from app.config import TeacherSettings
    from workers.teachers import check

    teacher = get_settings().teacher
    overrides = {"backend": backend, "model": model, "base_url": base_url}
    try:
        settings = TeacherSettings.model_validate(
            teacher.model_dump() | {k: v for k, v in overrides.items() if v is not None}
        )
    except ValidationError as exc:
        console.print(f"[red]bad teacher option[/red]: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from None
    raise typer.Exit(check.main(settings))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
