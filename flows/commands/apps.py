"""The commands that serve people and programs: `dashboard` (Streamlit) and `api` (HTTP)."""

from pathlib import Path
from typing import Annotated

import typer

from flows.commands.common import DbOption, command_settings, console, fail
from flows.commands.database import refuse_special_file


def dashboard(
    db: DbOption = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8501,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default: $NEWSWATCH_DASHBOARD_HOST, else 127.0.0.1; 0.0.0.0: every interface, no login)."),
    ] = None,
) -> None:
    """Serve the read-only stories dashboard (on 127.0.0.1 unless --host says otherwise).

    It has no login: on another address than 127.0.0.1, anyone who reaches the port reads the
    stories (put it behind a reverse proxy with authentication; see docs/operations.md).

    Example: newswatch dashboard --db newswatch.duckdb --port 8501
    """
    import subprocess
    import sys

    import dashboards
    from flows.service import connect_address

    settings = command_settings(db=db, dashboard_host=host)
    host = settings.dashboard_host
    app_path = Path(dashboards.__file__).parent / "app.py"
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
        "--server.fileWatcherType", "none", "--server.runOnSave", "false", "--", "--db", str(settings.db),
    ]
    where = f"http://{connect_address(host)}:{port}"
    if host in ("0.0.0.0", "::"):
        where += f" and on every interface ({host}; read-only, no login)"
    console.print(f"Dashboard on {where} (Ctrl+C stops it)")
    try:
        raise typer.Exit(subprocess.call(command))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def api(
    db: DbOption = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default: $NEWSWATCH_API_HOST, else 127.0.0.1); any address but loopback needs $NEWSWATCH_API_TOKEN."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port to listen on (default: $NEWSWATCH_API_PORT, else 8000).")
    ] = None,
) -> None:
    """Serve the read-only HTTP API and Atom feeds of stories, searches and watches (on 127.0.0.1 unless --host says otherwise).

    Each request reads the database briefly and read-only, beside running pipelines; documentation
    at /docs. With $NEWSWATCH_API_TOKEN set, every endpoint but /health asks for it
    (Authorization: Bearer TOKEN); any address but loopback needs it.

    Example: newswatch api --db newswatch.duckdb --port 8000
    """
    import socket

    from flows.api import create_app, is_loopback
    from flows.service import connect_address

    settings = command_settings(db=db, api_host=host, api_port=port)
    refuse_special_file(settings.db)
    host, port = settings.api_host, settings.api_port
    if not is_loopback(host) and settings.api_token is None:
        fail(f"listening on {host}, not a loopback address, needs a token: set NEWSWATCH_API_TOKEN "
             "(e.g. `export NEWSWATCH_API_TOKEN=$(openssl rand -hex 32)`), or use --host 127.0.0.1")
    # Bound here, so that a port in use or an address this machine lacks is one line, not uvicorn's log.
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, protocol)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as error:
        fail(f"cannot listen on {host} port {port}: {error.strerror or error}")
    import uvicorn

    if not settings.db.exists():
        typer.echo(f"newswatch: warning: no database at {settings.db} yet; the API answers 503 until a run creates it", err=True)
    where = f"http://{connect_address(host)}:{port}"
    if not is_loopback(host):
        where += f" and on {host} (every endpoint but /health asks for the token)"
    console.print(f"API on {where}, documentation at /docs (Ctrl+C stops it)")
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="info", server_header=False, proxy_headers=True))
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
