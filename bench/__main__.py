"""``python -m bench NAME [args...]``: run one bench (``python -m bench list`` names them all)."""

from __future__ import annotations

import importlib
import shlex
import sys

from bench import COMMANDS, SUBJECTS


def _list() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["python -m bench NAME [args...]   (NAME --help for its options)",
             "Every bench records its run in bench/results/ and regenerates BENCHMARKS.md; --no-write only prints.", ""]
    for subject in ["", *SUBJECTS, *sorted({c.subject for c in COMMANDS.values()} - set(SUBJECTS) - {""})]:
        names = [n for n, c in COMMANDS.items() if c.subject == subject]
        if names:
            lines.append(SUBJECTS[subject].title if subject in SUBJECTS else (subject or "harness"))
            lines += [f"  {n:<{width}}  {COMMANDS[n].help}" for n in names]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("list", "-h", "--help"):
        print(_list())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: no bench named {name!r} (`python -m bench list` names them)", file=sys.stderr)
        return 2
    from bench import record

    record.COMMAND = shlex.join(["python", "-m", "bench", name, *rest])
    sys.argv = [f"python -m bench {name}", *rest]  # argparse's prog in --help and usage lines
    module = importlib.import_module(COMMANDS[name].module)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
