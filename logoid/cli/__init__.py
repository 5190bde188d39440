"""The logoid command line: a thin layer over the library. Only this package prints or exits."""

from __future__ import annotations

import importlib

import click

from logoid import Home, __version__

from ._common import LogoidGroup, State, home_option

#: Each command's module: a command's module is imported only when that command runs (``logoid --help`` imports
#: them all), so ``logoid query --server`` starts without the pipeline, torch or FAISS.
_COMMANDS = {
    "build-index": "index_cmds", "query": "query_cmds", "batch": "query_cmds", "serve": "serve_cmds",
    "add-band": "catalog_cmds", "add-album": "catalog_cmds", "remove-band": "catalog_cmds",
    "remove-album": "catalog_cmds", "catalog": "catalog_cmds", "eval": "eval_cmds", "calibrate": "eval_cmds",
    "finetune": "finetune_cmds", "models": "misc_cmds", "augment": "misc_cmds", "demo": "misc_cmds",
    "search": "album_cmds", "artist": "album_cmds", "artist-check": "album_cmds", "genre": "album_cmds",
}


class _LazyGroup(LogoidGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = _COMMANDS.get(name)
        if module is None:
            return None
        mod = importlib.import_module(f"{__name__}.{module}")
        return next(c for c in mod.COMMANDS if c.name == name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="logoid")
@home_option
@click.pass_context
def cli(ctx: click.Context, home) -> None:
    """Recognise band logos and album covers in photos.

    \b
    Typical use:
      logoid catalog import roster.csv --images logos/
      logoid build-index
      logoid query photo.jpg
      logoid batch merch-photos/ -o results.csv
      logoid serve                    # HTTP API + web page, models kept warm
    """
    ctx.obj = State(home=Home.resolve(home))


def main() -> None:
    cli(prog_name="logoid")
