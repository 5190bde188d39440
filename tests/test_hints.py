"""Every flag a message names is a real flag: on the command it names (`logoid CMD ... --flag`), or on at least one
command when it names none. Read with ``ast`` from every string literal of the package (f-strings with their
formatted values as ``{}``, ``+`` concatenations joined, docstrings included), so errors and hints, ``warn()`` texts,
hints kept in module constants and hints built by helper functions are all read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click

from logoid.catalog.imagecheck import ALLOW_HINT
from logoid.cli import cli

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("logoid", "catalog", "augment", "engine", "index", "finetune")  # the installed package (pyproject.toml)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Where a `logoid CMD ...` example ends: a closing backtick or quote, a semicolon, a bracket.
SPAN_END = re.compile(r"[`'\";)\]]|$")


def command_flags() -> dict[str, set[str]]:
    """Every command path ("" for the root, "catalog import", ...) → the flags it accepts (the root's included)."""
    root = {o for p in cli.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")} | {"--help", "-h"}
    out: dict[str, set[str]] = {}

    ctx = click.Context(cli)

    def walk(cmd: click.Command, path: str) -> None:
        out[path] = root | {o for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        if isinstance(cmd, click.Group):  # list_commands/get_command: the root group loads its commands lazily
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), f"{path} {name}".strip())

    walk(cli, "")
    return out


def texts(node: ast.expr) -> list[str]:
    """The text(s) an expression can evaluate to, formatted values as ``{}`` (an if-else gives both branches)."""
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else []
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = texts(node.left) or ["{}"], texts(node.right) or ["{}"]
        return [a + b for a in left for b in right]
    if isinstance(node, ast.IfExp):
        return texts(node.body) + texts(node.orelse)
    return []


def _is_text(node: ast.expr) -> bool:
    """A string literal, an f-string, or a ``+`` of which one side is text."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_text(node.left) or _is_text(node.right)
    return isinstance(node, ast.JoinedStr)


def literal_texts(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, text) of every string the source spells out, each read whole: an f-string or a ``+`` of strings as one
    text (its formatted values as ``{}``), and whatever its formatted values hold read on their own."""
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.expr) and _is_text(node):
            out.extend((node.lineno, t) for t in texts(node))
            holes(node)
        else:
            for child in ast.iter_child_nodes(node):
                visit(child)

    def holes(node: ast.expr) -> None:  # the non-text parts of a text: expressions that may hold strings
        if isinstance(node, ast.JoinedStr):
            for v in node.values:
                if isinstance(v, ast.FormattedValue):
                    visit(v.value)
        elif isinstance(node, ast.BinOp):
            for side in (node.left, node.right):
                holes(side) if _is_text(side) else visit(side)

    visit(tree)
    return sorted(set(out))


def problems_in(text: str, commands: dict[str, set[str]]) -> list[str]:
    """What in ``text`` names a flag or command that does not exist."""
    problems, spans = [], []
    for m in re.finditer(r"\blogoid\b", text):
        rest = text[m.end():]
        seg = rest[:SPAN_END.search(rest).start()]
        path = ""
        for word in seg.split():
            if f"{path} {word}".strip() not in commands:
                break
            path = f"{path} {word}".strip()
        words = seg.split()
        if not path and words and not words[0].startswith("-"):
            if m.start() > 0 and text[m.start() - 1] == "`" and re.fullmatch(r"[a-z][a-z-]*", words[0]):
                problems.append(f"`logoid {words[0]}`: no such command")
            continue  # prose ("logoid's", "logoid-index.json"), not a command line
        spans.append((m.end(), m.end() + len(seg), path))
    for f in FLAG.finditer(text):
        owner = [p for s, e, p in spans if s <= f.start() < e]
        if owner and f.group() not in commands[owner[-1]]:
            problems.append(f"{f.group()} is not an option of `logoid {owner[-1]}`")
        elif not owner and not any(f.group() in flags for flags in commands.values()):
            problems.append(f"{f.group()} is an option of no logoid command")
    return problems


def check_sources(sources: dict[str, str], commands: dict[str, set[str]]) -> list[str]:
    """Problems in ``sources`` (file name → Python source)."""
    return [f"{name}:{line}: {p} (in {text!r})" for name, src in sources.items()
            for line, text in literal_texts(ast.parse(src)) for p in problems_in(text, commands)]


def package_sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for folder in FOLDERS
            for p in sorted((ROOT / folder).rglob("*.py"))}


def test_every_flag_a_string_of_the_package_names_exists():
    sources = package_sources()
    assert len(sources) > 50  # the walk found the package
    found = {t for src in sources.values() for _, t in literal_texts(ast.parse(src))}
    assert sum(1 for t in found if FLAG.search(t)) >= 50  # it reads the texts that name flags
    for where in (ALLOW_HINT, "--encoding cp1252", "`logoid build-index`"):  # a constant, a helper's f-string, warn()
        assert any(where in t for t in found), where
    assert check_sources(sources, command_flags()) == []


def test_the_check_catches_a_bad_flag_wherever_the_text_is():
    flags = command_flags()
    fake = '''"""Module docstring: the server token comes from --api-key."""
ALLOW_HINT = "use another image, or keep it anyway with --allow-tiny"


def _utf8_hint(data, start):
    snippet = data[start:start + 20]
    return (f"pass the file's encoding with --charset, e.g. --charset cp1252 "
            f"reads it as {snippet!r}")


def f(p):
    if p:
        raise ImageError(p, "too big", "raise it with --max-megapixels if the file is trusted")
    if not p:
        raise QuotaError(p, "full", f"run `logoid query {p} --map a=b`")
    hint = "map one with --column-map 'YourHeader=Name'"
    warn(f"{p}: or `logoid rebuild-index` then `logoid build-index --variants 3`")
    warn("skipped " + str(p) + "; keep it with --keep-all")
    echo(f"{'--bad-choice' if p else ''}")
    raise LogoidError("ok", "pass --encoding cp1252, or `logoid catalog import x.csv --map 'a=b' --allow-small`")
'''
    assert check_sources({"fake.py": fake}, flags) == [
        "fake.py:1: --api-key is an option of no logoid command (in 'Module docstring: the server token comes from "
        "--api-key.')",
        "fake.py:2: --allow-tiny is an option of no logoid command (in 'use another image, or keep it anyway with "
        "--allow-tiny')",
        "fake.py:7: --charset is an option of no logoid command (in \"pass the file's encoding with --charset, e.g. "
        "--charset cp1252 reads it as {}\")",
        "fake.py:7: --charset is an option of no logoid command (in \"pass the file's encoding with --charset, e.g. "
        "--charset cp1252 reads it as {}\")",
        "fake.py:13: --max-megapixels is an option of no logoid command (in 'raise it with --max-megapixels if the file is "
        "trusted')",
        "fake.py:15: --map is not an option of `logoid query` (in 'run `logoid query {} --map a=b`')",
        "fake.py:16: --column-map is an option of no logoid command (in \"map one with --column-map "
        "'YourHeader=Name'\")",
        "fake.py:17: `logoid rebuild-index`: no such command (in '{}: or `logoid rebuild-index` then `logoid "
        "build-index --variants 3`')",
        "fake.py:18: --keep-all is an option of no logoid command (in 'skipped {}; keep it with --keep-all')",
        "fake.py:19: --bad-choice is an option of no logoid command (in '--bad-choice')",
    ]
