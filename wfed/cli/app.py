"""wfectl: the control tool of wfed (README, "Operating wfed").

Every command parses its arguments, calls the Engine and renders the result: a rich table
for people, `--json` (stable keys) for scripts. Exit codes: 0 done; 1 refused or failed,
with one line `wfectl: <message>` on stderr (every WfedError, database errors included);
2 usage error (click's own). Nothing is ever printed as a traceback.

This module holds the one Typer app, its global options, the options the commands share,
`db upgrade` and the entry point; the commands live in `create`, `reading`, `control` and
`ops` (imported by the package, in the order `wfectl --help` lists them).
"""

import gc
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from wfed.errors import WfedError

from . import render
from .run import Settings, fail, run_engine

if TYPE_CHECKING:
    from wfed.engine import Engine

# Help and usage errors in click's plain format: rich's would import rich and a markdown
# parser into every `--help` (half its time).
app = typer.Typer(
    name="wfectl",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="The database: its schema and its accounts.",
)
app.add_typer(db_app, name="db")


def settings_of(cli: typer.Context) -> Settings:
    """The settings the global options made (`--config`)."""
    return cli.ensure_object(Settings)


def _complete_name(cli: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of workflow names (nothing, quietly, if the database is away)."""
    try:
        import asyncio

        settings = Settings(config_path=cli.find_root().params.get("config"))

        async def names(engine: "Engine") -> list[str]:
            async with asyncio.timeout(2):
                return [workflow.name for workflow in await engine.list(limit=500)]

        found = run_engine(settings, names, connect=False)
    except Exception:  # completion must never print an error into the user's shell
        return []
    return [name for name in found if name.startswith(incomplete)]


Name = Annotated[
    str,
    typer.Argument(metavar="NAME", help="The workflow's name.", autocompletion=_complete_name),
]
Reason = Annotated[
    str | None,
    typer.Option("--reason", "-r", metavar="TEXT", help="Why; recorded in the history."),
]
AsJson = Annotated[bool, typer.Option("--json", help="JSON on stdout, with stable keys.")]


def _show_version(value: bool) -> None:
    if value:
        from wfed import __version__

        render.say(f"wfectl {__version__}")
        raise typer.Exit


@app.callback()
def _global_options(
    cli: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help="Config file. Default: $WFED_CONFIG, else the built-in defaults (SQLite "
            "wfed.db here). $WFED_DATABASE_URL overrides the database URL.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Control wfed workflows: create, inspect, pause, resume, retry, skip, delete.

    Example: wfectl --config /etc/wfed/config.toml list --state error
    """
    cli.obj = Settings(config_path=config)


@db_app.command("upgrade")
def db_upgrade(cli: typer.Context) -> None:
    """Create the schema, or migrate it to this wfed's version (idempotent).

    Example: wfectl db upgrade
    """

    async def work(engine: "Engine") -> tuple[str | None, str]:
        return await engine.upgrade_schema()

    from wfed.engine import Engine

    settings = settings_of(cli)
    before, after = run_engine(settings, work, schema=False)
    where = Engine.display_url(settings.config().database.url)
    if before == after:
        render.say(f"schema of {where} is up to date (revision {after})")
    else:
        render.say(f"schema of {where} upgraded: {before or 'none'} -> {after}")


@db_app.command("grants")
def db_grants(
    cli: typer.Context,
    database: Annotated[
        str, typer.Option("--database", metavar="NAME", help="The database the accounts use.")
    ],
    daemon_user: Annotated[
        str, typer.Option("--daemon-user", metavar="U", help="The daemons' account.")
    ] = "wfed_daemon",
    operator_user: Annotated[
        str, typer.Option("--operator-user", metavar="U", help="wfectl's account.")
    ] = "wfed_operator",
    migrate_user: Annotated[
        str,
        typer.Option("--migrate-user", metavar="U", help="The account of `db upgrade`."),
    ] = "wfed_migrate",
) -> None:
    """Print the SQL that creates wfed's accounts, for the configured backend.

    The migrate, daemon and operator accounts, each with the least privileges its role
    needs, on MariaDB/MySQL or PostgreSQL, in the order to run them (said in comments):
    the migrate account, then `wfectl db upgrade` as that account, then the daemon and
    operator accounts, whose grants name the tables. Nothing is run.

    Example: wfectl db grants --database wfed_prod --daemon-user wfed_d > grants.sql
    """
    from wfed.engine import Engine

    url = settings_of(cli).config().database.url
    sys.stdout.write(
        Engine.grant_statements(
            url,
            database,
            migrate_user=migrate_user,
            daemon_user=daemon_user,
            operator_user=operator_user,
        )
    )


def _escape_unencodable_output() -> None:
    """Text a row holds that UTF-8 cannot encode (a lone surrogate, which a JSON "\\ud800"
    in a hand-written context decodes to) is printed escaped, as `\\ud800`, instead of
    failing the command that shows it. In `--json` output that is the JSON escape the
    row was written with."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main() -> None:
    """The `wfectl` entry point: every failure is one line and exit code 1."""
    # pydantic looks for plugins among the installed distributions' entry points the
    # first time it builds a model (the config's): scanning them costs every call about
    # 10 ms, and wfectl has no use for a pydantic plugin.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # A command imports some 400 modules before its work starts (typer's converters, the
    # configuration's validation, SQLAlchemy), and the cyclic garbage collector would walk
    # the growing heap again and again meanwhile: about a tenth of a `show`, for nothing,
    # as imports leave no garbage worth the walk. `run_engine` switches it on again
    # before the work, which may go on for hours (`watch`, `logs --follow`).
    gc.disable()
    _escape_unencodable_output()
    try:
        app(prog_name="wfectl")
    except WfedError as exc:
        fail(str(exc))
    except Exception as exc:
        if os.environ.get("WFECTL_DEBUG"):
            raise
        fail(
            f"unexpected error: {type(exc).__name__}: {exc} "
            "(set WFECTL_DEBUG=1 to see the traceback)"
        )
