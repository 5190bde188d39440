"""Every flag an error or hint names is a real flag: on the command it names (`logoid CMD ... --flag`), or on at
least one command when it names none. Read with ``ast`` from every error the package constructs (LogoidError and
its subclasses), every ``hint=`` argument and every ``hint = ...`` assignment."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click

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

    def walk(cmd: click.Command, path: str) -> None:
        out[path] = root | {o for p in cmd.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

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


def _name(func: ast.expr) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def error_classes(trees: list[ast.Module]) -> set[str]:
    """LogoidError and every class of the package derived from it, however deep."""
    found = {"LogoidError"}
    classes = [n for t in trees for n in ast.walk(t) if isinstance(n, ast.ClassDef)]
    grew = True
    while grew:
        new = {c.name for c in classes if any(_name(b) in found for b in c.bases)} - found
        found |= new
        grew = bool(new)
    return found


def hint_texts(tree: ast.Module, errors: set[str]) -> list[tuple[int, str]]:
    """(line, text) of every string given to an error constructor, to a ``hint=`` argument or to a ``hint`` name."""
    out = []
    for node in ast.walk(tree):
        exprs: list[ast.expr] = []
        if isinstance(node, ast.Call):
            if _name(node.func) in errors:
                exprs += [*node.args, *(k.value for k in node.keywords)]
            else:
                exprs += [k.value for k in node.keywords if k.arg == "hint"]
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if node.value is not None and any(isinstance(t, ast.Name) and t.id == "hint" for t in targets):
                exprs.append(node.value)
        out += [(node.lineno, t) for e in exprs for t in texts(e)]
    return out


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


def check_sources(sources: dict[str, str], commands: dict[str, set[str]],
                  known: dict[str, str] | None = None) -> list[str]:
    """Problems in ``sources``, whose error classes may derive from those of ``known`` (the package)."""
    trees = {name: ast.parse(src) for name, src in sources.items()}
    errors = error_classes([*trees.values(), *(ast.parse(src) for src in (known or {}).values())])
    return [f"{name}:{line}: {p} (in {text!r})" for name, tree in trees.items()
            for line, text in sorted(hint_texts(tree, errors)) for p in problems_in(text, commands)]


def package_sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for folder in FOLDERS
            for p in sorted((ROOT / folder).rglob("*.py"))}


def test_every_flag_a_hint_names_exists():
    sources = package_sources()
    assert len(sources) > 50  # the walk found the package
    trees = [ast.parse(src) for src in sources.values()]
    errors = error_classes(trees)
    assert {"ImageError", "CatalogError", "ConfigError"} <= errors
    found = [t for tree in trees for _, t in hint_texts(tree, errors)]
    assert sum(1 for t in found if FLAG.search(t)) >= 10  # it reads hints that name flags
    assert check_sources(sources, command_flags()) == []


def test_the_check_catches_a_bad_hint():
    flags = command_flags()
    fake = '''
class QuotaError(ImageError):
    pass

def f(p):
    if p:
        raise ImageError(p, "too big", "raise it with --max-pixels if the file is trusted")
    if not p:
        raise QuotaError(p, "full", f"run `logoid query {p} --map a=b`")
    hint = "map one with --column-map 'YourHeader=Name'"
    warn(hint=f"or `logoid rebuild-index` then `logoid build-index --variants 3`")
    raise LogoidError("ok", "pass --encoding cp1252, or `logoid catalog import x.csv --map 'a=b' --allow-small`")
'''
    assert check_sources({"fake.py": fake}, flags, known=package_sources()) == [
        "fake.py:7: --max-pixels is an option of no logoid command (in 'raise it with --max-pixels if the file is "
        "trusted')",
        "fake.py:9: --map is not an option of `logoid query` (in 'run `logoid query {} --map a=b`')",
        "fake.py:10: --column-map is an option of no logoid command (in \"map one with --column-map "
        "'YourHeader=Name'\")",
        "fake.py:11: `logoid rebuild-index`: no such command (in 'or `logoid rebuild-index` then `logoid build-index "
        "--variants 3`')",
    ]
