"""The ``stagecast`` command: serve, migrate, users, tokens, channels.

Bad arguments and failed operations print one line on stderr and exit non-zero.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from stagecast import logs
from stagecast.auth import service as accounts
from stagecast.channels import service as channels
from stagecast.config import Settings, ensure_secret_key
from stagecast.db import Database, open_database
from stagecast.db.migrate import upgrade
from stagecast.errors import StagecastError, Unprocessable

T = TypeVar("T")

app = typer.Typer(
    name="stagecast",
    help="Stagecast: a self-hosted live-streaming studio.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
user_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API tokens.", no_args_is_help=True)
channel_app = typer.Typer(help="Manage channels and stream keys.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(channel_app, name="channel")


def _settings() -> Settings:
    settings = ensure_secret_key(Settings())
    logs.configure(settings.log_level, settings.log_format)
    return settings


def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        db = open_database(settings)
        try:
            await upgrade(db)
            return await work(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (STAGECAST_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (STAGECAST_PORT).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="HTTP worker processes on the one port (needs PostgreSQL and Redis).",
        ),
    ] = 1,
    worker_index: Annotated[int | None, typer.Option(hidden=True)] = None,
    worker_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Migrate the database, create the first admin if needed, and serve the studio."""
    from stagecast.web import workers as pool

    settings = _settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    if worker_index is not None and worker_fd is not None:
        _serve_worker(settings, worker_index, worker_fd)
        return
    refused = pool.refuse_reason(settings, workers)
    if refused is not None:
        raise typer.BadParameter(refused, param_hint="--workers")
    _announce(settings)
    if workers > 1:
        typer.echo(f"{workers} workers (worker 0 runs ingest and the live edge)")
        raise typer.Exit(pool.run_workers(settings, workers))
    import uvicorn

    from stagecast.app import create_app
    from stagecast.web.server import server_options

    uvicorn.run(create_app(settings, freeze_startup=True), **server_options(settings))


def _announce(settings: Settings) -> None:
    """Migrate, create the first admin if there is none (and say so), print the URL."""
    created = _with_db(
        settings,
        lambda db: accounts.ensure_admin(db, settings.admin_username, settings.admin_password),
    )
    if created is not None:
        name, password = created
        shown = password if not settings.admin_password else "(from STAGECAST_ADMIN_PASSWORD)"
        typer.echo(f"created admin account: username {name}  password {shown}")
    typer.echo(f"Stagecast studio on http://{settings.host}:{settings.port}/studio")


def _serve_worker(settings: Settings, index: int, fd: int) -> None:
    """Run worker ``index`` of ``serve --workers`` on the parent's listening socket ``fd``."""
    import uvicorn

    from stagecast.app import create_app
    from stagecast.web import workers as pool
    from stagecast.web.server import server_options

    settings.worker_index = index
    settings.primary_socket = pool.primary_socket(settings)
    sockets = pool.worker_sockets(settings, fd)
    # Migrated by the parent already; the primary also runs ingest (see web.workers).
    app = create_app(settings, migrate=False, freeze_startup=True)
    uvicorn.Server(uvicorn.Config(app, **server_options(settings))).run(sockets=sockets)


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    settings = _settings()
    _with_db(settings, lambda db: asyncio.sleep(0))
    typer.echo("database is up to date")


@user_app.command("create")
def user_create(
    username: str,
    password: Annotated[str, typer.Option("--password", help="At least 8 characters.")],
    role: Annotated[str, typer.Option(help="admin, broadcaster or viewer.")] = "broadcaster",
) -> None:
    """Create an account."""
    created = _with_db(
        _settings(), lambda db: accounts.create_account(db, username, password, role)
    )
    typer.echo(f"created {created.role} {created.username} (id {created.id})")


@user_app.command("list")
def user_list() -> None:
    """List accounts."""
    for found in _with_db(_settings(), lambda db: accounts.list_accounts(db, limit=10_000)):
        typer.echo(f"{found.id}\t{found.username}\t{found.role}\t{found.created_at:%Y-%m-%d}")


@user_app.command("set-role")
def user_set_role(username: str, role: str) -> None:
    """Change an account's role (admin, broadcaster, viewer)."""
    changed = _with_db(_settings(), lambda db: accounts.set_role(db, username, role))
    typer.echo(f"{changed.username} is now {changed.role}")


@user_app.command("set-password")
def user_set_password(
    username: str,
    password: Annotated[
        str | None,
        typer.Option(
            "--password",
            help="The new password. Without it: asked twice at a terminal, else one line of stdin.",
        ),
    ] = None,
) -> None:
    """Set USERNAME's password (an admin's reset) and sign out all of its sessions."""
    chosen = password if password is not None else _read_new_password()
    ended = _with_db(_settings(), lambda db: accounts.reset_password(db, username, chosen))
    typer.echo(f"password of {username} changed; {ended} session(s) signed out")


def _read_new_password() -> str:
    """Ask for a password twice at a terminal (not echoed); else read one line of stdin."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise Unprocessable("no password on standard input (or pass --password)")
        return line
    first = typer.prompt("New password", hide_input=True)
    if typer.prompt("Repeat it", hide_input=True) != first:
        raise Unprocessable("the two passwords differ; nothing was changed")
    return str(first)


@token_app.command("create")
def token_create(
    username: str, name: Annotated[str, typer.Option(help="A label for the token.")] = "cli"
) -> None:
    """Create an API token for USERNAME; the token is printed alone on the last line."""

    async def work(db: Database) -> str:
        found = await accounts.get_account(db, username)
        return await accounts.create_api_token(db, found.id, name)

    typer.echo(_with_db(_settings(), work))


@channel_app.command("create")
def channel_create(
    slug: str,
    owner: Annotated[str, typer.Option(help="Username of the owner.")],
    title: Annotated[str | None, typer.Option(help="Defaults to the slug.")] = None,
    visibility: Annotated[str, typer.Option(help="public, unlisted or private.")] = "public",
    profile: Annotated[str, typer.Option(help="passthrough or abr.")] = "passthrough",
    latency: Annotated[str, typer.Option(help="low (LL-HLS) or standard.")] = "low",
) -> None:
    """Create a channel; prints its stream key on the last line."""

    async def work(db: Database) -> tuple[channels.Channel, str]:
        found = await accounts.get_account(db, owner)
        return await channels.create_channel(
            db, found, slug, title=title, visibility=visibility, profile=profile, latency=latency
        )

    created, key = _with_db(_settings(), work)
    typer.echo(f"created channel {created.slug} owned by {created.owner}")
    typer.echo(f"stream key: {key}")


@channel_app.command("list")
def channel_list() -> None:
    """List every channel."""

    async def work(db: Database) -> list[channels.Channel]:
        admin = accounts.Account(0, "cli", "admin", created_at=None)  # type: ignore[arg-type]
        return await channels.list_channels(db, admin, all_channels=True, limit=10_000)

    for found in _with_db(_settings(), work):
        typer.echo(f"{found.id}\t{found.slug}\t{found.owner}\t{found.visibility}\t{found.title}")


@channel_app.command("rotate-key")
def channel_rotate_key(slug: str) -> None:
    """Give SLUG a new stream key (the old one stops working); prints it on the last line."""
    rotated, key = _with_db(_settings(), lambda db: channels.rotate_key(db, slug))
    typer.echo(f"rotated the stream key of {rotated.slug}")
    typer.echo(f"stream key: {key}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every failure is one line on stderr and a non-zero exit."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="stagecast", standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # typer's click usage errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"stagecast: {message}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except StagecastError as exc:
        typer.echo(f"stagecast: {exc.message}", err=True)
        sys.exit(1)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        typer.echo(f"stagecast: invalid setting {where}: {first['msg']}", err=True)
        sys.exit(2)
    if isinstance(result, int) and result:
        sys.exit(result)
