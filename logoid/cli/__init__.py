"""The logoid command line: a thin layer over the library. Only this package prints or exits."""

from __future__ import annotations

import click

from logoid import Home, __version__

from ._common import LogoidGroup, State, home_option


@click.group(cls=LogoidGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
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
    """
    ctx.obj = State(home=Home.resolve(home))


def _register() -> None:
    from . import album_cmds, catalog_cmds, eval_cmds, finetune_cmds, index_cmds, misc_cmds

    for mod in (index_cmds, catalog_cmds, eval_cmds, finetune_cmds, misc_cmds, album_cmds):
        for cmd in mod.COMMANDS:
            cli.add_command(cmd)


_register()


def main() -> None:
    cli(prog_name="logoid")
