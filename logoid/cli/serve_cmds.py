"""logoid serve."""

from __future__ import annotations

import ipaddress
import os
import socket

import click

from logoid import LogoidError
from logoid.index.store import IndexStore

from ._common import pass_state, warn

ENV_TOKEN = "LOGOID_TOKEN"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; put a TLS proxy in front).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--token", envvar=ENV_TOKEN, default=None,
              help=f"Allow catalog changes to requests sending `Authorization: Bearer TOKEN` (or ${ENV_TOKEN}); "
                   "without one the server is read-only.")
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="Photos identified in parallel per process (default: the cores).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes, each with its own warm models (memory × N).")
@click.option("--max-upload-mb", type=click.FloatRange(0.01, 1024), default=20.0, show_default=True,
              help="Largest photo or logo file accepted (413 over it).")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Largest photo in pixels accepted (413 over it; default: LOGOID_MAX_PIXELS or 40 million).")
@click.option("--access-log", is_flag=True, help="Log every request.")
@pass_state
def serve_cmd(state, host, port, token, threads, workers, max_upload_mb, max_pixels, access_log):
    """Serve the HTTP API (/v1, documented at /docs) and the web page (/), models and indexes kept warm."""
    try:
        import uvicorn

        from logoid.serve.app import create_app
        from logoid.serve.service import Limits, Service
    except ImportError as e:
        raise LogoidError(f"logoid serve needs FastAPI and uvicorn ({e.name} is missing)",
                          "install the server extra: pip install -e '.[server]' (`make install` does)") from None
    home = state.home
    if not IndexStore.exists(home.index_dir):
        raise LogoidError(f"no index in {home.root}", "run `logoid build-index` first (or `make demo` for the demo)")
    _check_port(host, port)
    threads = threads or os.cpu_count() or 1
    limits = Limits(max_upload_bytes=int(max_upload_mb * 1024 * 1024), **({"max_pixels": max_pixels} if max_pixels else {}))
    url = f"http://{_url_host(host)}:{port}/"
    if not _loopback(host):
        warn(f"listening on {host}, not only this machine: anyone who can reach it can query"
             + (" (writes need the token)" if token else "") + "; put a TLS proxy in front beyond a trusted network")
    click.echo(f"logoid serve: {url}  (API {url}v1, docs {url}docs; home {home.root}; "
               f"{'writes need the token' if token else 'read-only: no --token'})")
    click.echo(f"loading models and indexes ({workers} process(es) × {threads} thread(s))…")
    if workers > 1:
        os.environ.update({"LOGOID_HOME": str(home.root), "LOGOID_SERVE_THREADS": str(threads),
                           "LOGOID_SERVE_MAX_UPLOAD": str(limits.max_upload_bytes),
                           "LOGOID_SERVE_MAX_PIXELS": str(limits.max_pixels)})
        if token:
            os.environ[ENV_TOKEN] = token
        uvicorn.run("logoid.serve.app:from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=access_log)
        return
    service = Service(home, threads=threads, limits=limits, token=token)

    def ready(s) -> None:
        click.echo(f"ready in {s.ready_after:.1f} s: {url}")

    app = create_app(service, on_ready=ready)
    uvicorn.run(app, host=host, port=port, log_level="info" if access_log else "warning", access_log=access_log)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _check_port(host: str, port: int) -> None:
    """Fail in one line when the port is taken, before loading anything."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise LogoidError(f"cannot listen on {host}:{port} ({e.strerror})",
                              "choose another with --port, or stop what is using it") from None


COMMANDS = [serve_cmd]
