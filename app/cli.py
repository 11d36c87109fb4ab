"""The `distillery` command: serve, worker, db upgrade, keys, teacher check.

The one module that may compose `app` and `workers` (workers are imported inside commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import sys
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from app import auth, migrate
from app.config import Settings, get_settings
from app.state import Database

if TYPE_CHECKING:
    from app.main import Background

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
db_cli = typer.Typer(no_args_is_help=True, help="Database schema.")
keys_cli = typer.Typer(no_args_is_help=True, help="API keys (bearer tokens) of tenants.")
teacher_cli = typer.Typer(no_args_is_help=True, help="The teacher this machine serves.")
cli.add_typer(db_cli, name="db")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(teacher_cli, name="teacher")
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # soft_wrap: one error stays one line

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
) -> None:
    """Run the API, with an in-process worker (embedded default: SQLite file, 127.0.0.1:8000)."""
    import uvicorn

    from app.main import create_app

    settings = _settings(database_url, host=host, port=port)
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
    config = uvicorn.Config(
        create_app(settings, background=background),
        log_level="info",
        access_log=False,  # a log line per request costs more than the request (bench/service.py)
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
) -> None:
    """Claim and run tasks until SIGTERM/SIGINT, then finish or release what is held."""
    from workers import runner
    from workers.teachers import TeacherError, make_teacher

    settings = _settings(database_url, worker_concurrency=concurrency)
    if model is not None:
        teacher_settings = settings.teacher.model_copy(update={"model": model})
        settings = settings.model_copy(update={"teacher": teacher_settings})
    with _database_errors(settings.database_url):  # before the teacher: loading one takes long
        asyncio.run(_ping(settings.database_url))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        teacher = make_teacher(settings.teacher)
    except (ValueError, TeacherError) as exc:
        console.print(f"[red]no teacher[/red]: {exc}")
        raise typer.Exit(2) from None
    asyncio.run(runner.run_worker(settings, teacher))


@db_cli.command("upgrade")
def db_upgrade(
    database_url: DatabaseOpt = None,
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
) -> None:
    """Apply the migrations (Postgres or SQLite)."""
    settings = _settings(database_url)
    with _database_errors(settings.database_url):
        migrate.upgrade(settings.database_url, revision)
    console.print(f"database at [bold]{revision}[/bold]")


async def _with_db(settings: Settings, work):  # type: ignore[no-untyped-def]
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

    async def work(session):  # type: ignore[no-untyped-def]
        return await auth.add_key(session=session, tenant_name=tenant, name=name)

    key, plain = asyncio.run(_with_db(_settings(database_url), work))
    console.print(f"key id {key.id} for tenant {tenant!r}; store it now, it is not shown again:")
    print(plain)


@keys_cli.command("list")
def keys_list(database_url: DatabaseOpt = None) -> None:
    """List keys (prefix, tenant, revoked or not)."""

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
