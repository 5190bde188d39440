"""Shared CLI plumbing: the home, lazy catalog, output helpers, error → one line + exit code."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import click

from logoid import Home, LogoidError
from logoid.core.paths import ENV_HOME

EXIT_OK, EXIT_USER, EXIT_USAGE = 0, 1, 2


@dataclass
class State:
    home: Home
    _catalog: object = field(default=None, repr=False)

    @property
    def catalog(self):
        if self._catalog is None:
            from logoid import Catalog

            self.home.ensure()
            self._catalog = Catalog.open(self.home)
        return self._catalog

    @contextlib.contextmanager
    def writing(self):
        """Hold the home's write lock for a whole change, catalog and index (``logoid.core.locks``): writers
        queue, and one that waits too long says so in one line. Readers take no lock."""
        from logoid.build.edit import writing

        with writing(self.home, self.catalog):
            yield


pass_state = click.make_pass_decorator(State)


def writes(f):
    """A command that changes the home: it runs under the home's write lock (below ``@pass_state``)."""

    @functools.wraps(f)
    def command(state: State, *args, **kwargs):
        with state.writing():
            return f(state, *args, **kwargs)

    return command


def reads(f):
    """A command that reads the catalog: every read sees one committed state (below ``@pass_state``), whatever
    a writer commits meanwhile, and no lock is taken."""

    @functools.wraps(f)
    def command(state: State, *args, **kwargs):
        with state.catalog.snapshot():
            return f(state, *args, **kwargs)

    return command


class LogoidGroup(click.Group):
    """Turns library errors into one-line messages and exit code 1; usage errors stay exit 2."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                # library warnings (OCR unavailable, few keypoints...) read as one CLI line, not a source dump
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except LogoidError as e:
            click.echo(f"error: {shown(e)}", err=True)
            ctx.exit(EXIT_USER)
        except KeyboardInterrupt:
            click.echo("interrupted; nothing stored was changed by the unfinished step", err=True)
            ctx.exit(130)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    click.echo(f"warning: {shown(message)}", err=True)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON to stdout.")(f)


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def progress(iterable, desc: str, total: int | None = None, unit: str = "img"):
    """A tqdm bar on stderr (quiet when stderr is not a terminal and LOGOID_PROGRESS is unset)."""
    from tqdm import tqdm

    disable = not (sys.stderr.isatty() or os.environ.get("LOGOID_PROGRESS"))
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, leave=False, dynamic_ncols=True)


def key_value_pairs(items, flag: str, example: str) -> dict[str, str]:
    """``("A=b", ...)`` from a repeatable option into a dict; a malformed item is a one-line user error."""
    pairs = {}
    for m in items:
        if "=" not in m:
            raise LogoidError(f"{flag} {m!r} is not KEY=VALUE", f"write it like {flag} {example}")
        k, v = m.split("=", 1)
        pairs[k.strip()] = v.strip()
    return pairs


def warn(msg: str) -> None:
    click.echo(f"warning: {shown(msg)}", err=True)


# C0/C1 controls (newline, ESC...), the line and paragraph separators, and the bidi marks, embeddings, overrides
# and isolates, which reorder the text after them on screen. Other format characters (ZWJ in emoji and scripts)
# print as they should.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(value) -> str:
    """``value`` as text for people: control characters escaped (``\\n``, ``\\x1b``, ``\\u202e``), so a name can
    neither split a line of output nor send the terminal an escape sequence. JSON output stays exact."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group()) or m.group().encode("unicode_escape").decode("ascii"),
                        str(value))


def home_option(f):
    return click.option(
        "--home", type=click.Path(file_okay=False, path_type=Path), envvar=ENV_HOME, default=None,
        help=f"logoid home folder (catalog, images, index). Default: ${ENV_HOME} or the user data dir.",
    )(f)
