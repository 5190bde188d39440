"""One-off: turn the dated log BENCHMARKS.md was before the harness into run records (legacy records).

    git show 95180d2:BENCHMARKS.md > /tmp/old.md && python -m bench import-legacy /tmp/old.md

Every ``## <title> — <YYYY-MM-DD HH:MM> UTC`` section becomes one record: subject and name by its title, its date,
its machine and command lines parsed (the machine's text kept as written), the rest of the section verbatim as the
record's markdown, so no number is lost (checked: each section is rebuilt from its record and compared). The commit
is the one that added the section to BENCHMARKS.md (the code measured is at or before it). The latest record of each
bench and machine carries a short hand-written summary (``SUMMARIES``, numbers quoted as the section writes them) for
the current-numbers page. Records that already exist are left alone; then BENCHMARKS.md is regenerated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shlex
import subprocess
import sys
from pathlib import Path

from bench._common import ROOT

SECTION = re.compile(r"^## (?P<title>.+) — (?P<date>\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC$", re.M)
MACHINE = re.compile(r"^(?P<cpu>.+?), (?P<cores>\d+) cores, (?P<ram>\d+) GiB RAM, (?P<accel>[^;]+); "
                     r"Python (?P<python>\S+), torch (?P<torch>\S+)$")

#: Title of a section (its start) -> (subject, record name).
SUBJECT_OF = [
    ("Speed (demo catalog)", ("speed", "demo")),
    ("Accuracy on threadless-dev", ("accuracy", "designs")),
    ("Fusion: regularisation by grouped cross-validation", ("accuracy", "fusion-cv")),
    ("Fusion: ROC points at the low end", ("accuracy", "roc-points")),
    ("Fine-tuning the global channel", ("accuracy", "finetune")),
    ("Local channel end to end at 1k and 10k references", ("local", "e2e")),
    ("Local channel: recall methods", ("local", "sweep")),
    ("Local channel with distractor references", ("local", "distractors")),
    ("Descriptor index at scale", ("local", "index")),
    ("Multi-logo mosaics", ("mosaic", "designs")),
    ("Text channel on band-logos", ("text", "band-logos")),
    ("Albums (albums-dev)", ("albums", "protocols")),
    ("Scale: FAISS structures", ("scale", "faiss")),
    ("Global vectors: FAISS vs Milvus Lite", ("scale", "milvus")),
]

#: (subject, name, section date) -> the key numbers of the latest run of a bench on a machine, as the section has them.
SUMMARIES = {
    ("speed", "demo", "2026-11-23 11:39"):
        "model load 4.43 s; embedding 28.0 img/s end to end (raw forward pass 29.1); build-index of the demo catalog "
        "(24 images → 480 vectors) 16.1 s cold, 0.1 s cached; query warm **0.377 s** (global / local / text 0.089 / "
        "0.066 / 0.222 s), cold `logoid query` 11.56 s; peak RSS 1571 MB",
    ("accuracy", "designs", "2026-12-04 21:34"):
        "global+local+text, calibrated (max_score), test: top-1 **0.957**, AUROC **0.970**, FPR@95TPR 0.073, "
        "open-set **0.951**; local alone calibrated 0.957 / 0.968 / 0.937; global alone top-1 0.028; median per photo "
        "global 0.137 s, local 1.584 s, text 0.709 s",
    ("accuracy", "designs", "2026-12-05 08:25"):
        "global+local+text, calibrated (max_score), test: top-1 **0.957**, AUROC **0.970**, FPR@95TPR 0.073, "
        "open-set **0.946**; local alone calibrated 0.957 / 0.970 / 0.937; global alone top-1 0.028; median per photo "
        "global 0.061 s, local 0.596 s, text 0.183 s",
    ("accuracy", "fusion-cv", "2026-12-04 17:50"):
        "global+local, test top-1 / AUROC / open-set: default rule 0.957 / 0.974 / 0.951; LR with C by grouped CV "
        "(0.003) **0.957 / 0.978 / 0.951**; fixed C=1.0 0.957 / 0.978 / 0.928",
    ("accuracy", "roc-points", "2026-12-05 08:26"):
        "global+local, test (141 known, 82 unknown): default rule AUROC 0.966, FPR@95TPR 0.000, FPR@96TPR 0.610; "
        "calibrated fusion (max_score, C=0.003) AUROC 0.970, FPR@95TPR 0.073, FPR@96TPR 0.415",
    ("accuracy", "finetune", "2026-11-23 11:51"):
        "global channel alone; designs trained on: top-1 0.027 → 0.035, AUROC 0.543 → 0.563, text R@5 0.023 → 0.783; "
        "designs held out of training: top-1 0.036 → 0.036, AUROC 0.422 → 0.449",
    ("local", "e2e", "2026-12-04 18:37"):
        "10k references (IVF16384_HNSW32,PQ64x4fs,Refine(SQ8), nprobe 16): **0.538 s** median per photo end to end "
        "on 2 threads (extract 0.244, search 0.198, verify 0.084), 0.914 s on 1 thread; test top-1 0.943, AUROC "
        "0.967, open-set 0.942; index 1668 MB",
    ("local", "e2e", "2026-12-05 07:41"):
        "10k references (IVF16384_HNSW32,PQ64x4fs,Refine(SQ8), nprobe 16): **0.370 s** median per photo end to end "
        "on 2 threads (extract 0.157, search 0.175, verify 0.027; p90 0.495), 0.891 s on 1 thread; test top-1 0.936, "
        "AUROC 0.967, open-set 0.928; index 1668 MB",
    ("local", "sweep", "2026-12-04 18:53"):
        "RANSAC iteration cap, test top-1 / AUROC: ransac_max_iters=2000 0.950 / 0.970, 1000 0.957 / 0.967, "
        "500 0.950 / 0.966; similarity_fallback=False 0.915 / 0.969",
    ("local", "sweep", "2026-12-05 07:41"):
        "query working size, calib top-1 / AUROC and test top-1 / AUROC: query_long_side=800 0.956 / 0.979 and "
        "0.957 / 0.968; 700 0.956 / 0.982 and 0.943 / 0.968; 600 0.956 / 0.982 and 0.936 / 0.966 (800 kept)",
    ("local", "distractors", "2026-11-23 14:16"):
        "test top-1 / AUROC / open-set with 1000 icons beside the 276 designs 0.901 / 0.948 / 0.915, with 3000 "
        "0.887 / 0.945 / 0.901; a distractor on top for 4 / 3 photos",
    ("local", "index", "2026-11-23 14:34"):
        "10k references (4566910 descriptors), median search per photo: IVF16384_HNSW32,PQ64x4fs 0.064 s (nprobe 8, "
        "recall@1 0.460) / 0.146 s (nprobe 16, 0.510); IVF8192,Flat nprobe 16 0.559 s (0.833, 2265 MB); exact at 1k "
        "3.239 s",
    ("mosaic", "designs", "2026-12-04 18:22"):
        "seed 1: 2×2 recall **0.811**, 0.050 wrong ids / mosaic; 3×3 recall 0.780, 0.150 wrong ids / mosaic (the "
        "section's notes, seed 0 / 1: 2×2 0.807 / 0.811, 3×3 0.824 / 0.780)",
    ("mosaic", "designs", "2026-12-05 05:42"):
        "seed 0: 2×2 recall **0.807**, 0.050 wrong ids / mosaic; 3×3 recall 0.824, 0.100 wrong ids / mosaic; median "
        "14.530 / 29.390 s per mosaic",
    ("text", "band-logos", "2026-11-23 14:45"):
        "text-only top-1 among 1,206 names: clean logos **0.828**, simulated prints 0.734; with the 229,920-name "
        "roster 0.716 / 0.600; prints, known vs unknown AUROC 0.778; name match p50 / p99 1.0 / 13.0 ms; OCR + match "
        "per photo median 0.17 s",
    ("albums", "protocols", "2026-11-23 14:15"):
        "product defaults: genre weighted F1 **0.688** (5-fold, artist-disjoint); artist of an unseen album (80 "
        "artists) top-1 **0.613**, AUROC **0.844**; without photos (`artist fit`, leave-one-album-out) 0.616 / 0.853; "
        "text search by genre mAP 0.183 → 0.406 after fine-tuning",
    ("scale", "faiss", "2026-11-23 14:45"):
        "defaults: 3.6m `IVF4096_HNSW32,PQ64` recall@1 0.998, single p50 2.33 ms, RAM 2101 MB (299 MB its own); 1m "
        "`IVF2048_HNSW32,PQ64` 0.997, 1.00 ms, 939 MB; 100k `Flat` 1.000, 91.97 ms, 202 MB",
    ("scale", "milvus", "2026-11-23 13:12"):
        "20,000 vectors, k=10 p50: FAISS 1.539 ms, Milvus Lite 32.239 ms; build 0.164 s vs 13.858 s; top-10 "
        "agreement 1.000",
}


#: An old script of the log's commands -> today's ``python -m bench`` name (None: recording is part of every run now).
RENAMED = {
    "bench/run.py": "run", "bench/speed.py": "speed", "bench/accuracy.py": "accuracy", "bench/fusion_cv.py": "fusion-cv",
    "bench/roc_points.py": "roc-points", "bench/bench_finetune.py": "finetune", "bench/bench_local.py": "local",
    "bench/local_sweep.py": "local-sweep", "bench/local_scale.py": "local-scale", "bench/mosaic.py": "mosaic",
    "bench/bench_text.py": "text", "bench/text_cache.py": "text-cache", "bench/albums.py": "albums",
    "bench/albums_ocr.py": "albums-ocr", "bench/albums_product.py": "albums-product", "bench/scale.py": "scale",
    "bench/milvus_compare.py": "milvus", "bench/publish.py": None,
}
#: Options today's benches no longer take: recording is their default, and files the old ones named are gone.
GONE_FLAGS = {"--write", "--publish", "--publish-only", "--no-append"}
GONE_OPTIONS = {"--json", "--home", "--notes"}
#: (subject, name, section date) -> today's commands, where the log's command only merged saved result files (or
#: says "the same with" in words): the runs that made those files, as the section's tables and notes describe them.
RERUN = {
    ("local", "e2e", "2026-12-04 18:37"): "python -m bench local-scale e2e --refs 10000 --index default --also 16:2 "
                                          "--also 16:1 --also 16:1:32 --also 8:2",
    ("local", "e2e", "2026-12-05 07:41"): "python -m bench local-scale e2e --refs 10000 --index default --also 16:2",
    ("local", "sweep", "2026-12-04 18:53"): "python -m bench local-sweep --sweep ransac_max_iters=2000,1000,500 && "
                                            "python -m bench local-sweep --set similarity_fallback=false",
    ("local", "sweep", "2026-12-05 07:41"): "python -m bench local-sweep --set query_long_side=800 --score 'inl*sqrt_ratio' "
                                            "&& python -m bench local-sweep --set query_long_side=700 --sweep "
                                            "ransac_threshold=6,5.25 --score 'inl*sqrt_ratio' && python -m bench "
                                            "local-sweep --set query_long_side=600 --sweep ransac_threshold=6,4.5 "
                                            "--score 'inl*sqrt_ratio'",
    ("local", "index", "2026-11-23 14:34"): "python -m bench local-scale index --refs 1000 --refs 10000 --nlist 4096 "
                                            "--nlist 16384 --index PQ32 --index PQ64x4fs --index HNSW:PQ64x4fs --index "
                                            "Flat --nprobe 8 --nprobe 16 --queries 8 && python -m bench local-scale "
                                            "index --refs 1000 --refs 10000 --nlist 8192 --index PQ32 --index "
                                            "HNSW:PQ64x4fs --index Flat --nprobe 8 --nprobe 16 --queries 8",
}


def rerun_command(rec: dict) -> str | None:
    """Today's command for a legacy record's run: hand-written (:data:`RERUN`) where the log merged saved files, else
    its command with every ``python bench/<script>.py`` made ``python -m bench NAME`` and the options that are gone
    dropped. None when there is no faithful equivalent."""
    return RERUN.get((rec["subject"], rec["name"], rec["date"][:16].replace("T", " "))) or translate(rec["command"])


def translate(command: str) -> str | None:
    """An old log command as today's ``python -m bench`` commands (None when it cannot be said)."""
    out = []
    for part in re.split(r"\s*&&\s*", command):
        try:
            words = shlex.split(part)
        except ValueError:
            return None
        env = []
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            env.append(words.pop(0))
        if len(words) < 2 or words[0] != "python" or words[1] not in RENAMED or ";" in part:
            return None
        name, args = RENAMED[words[1]], _kept_args(words[2:])
        if name is None:
            continue
        if args is None:
            return None
        if name == "run" and len(args) == 2 and args[0] == "--only":  # the log's `run.py --only X`: one bench today
            name, args = {"speed": "speed", "threadless": "accuracy"}[args[1]], []
        if not all(accepts(name, a) for a in args if a.startswith("--")):
            return None  # an option the bench no longer has
        out.append(shlex.join([*env, "python", "-m", "bench", name, *args]))
    return " && ".join(out) or None


def accepts(bench: str, option: str) -> bool:
    """Whether today's bench ``bench`` declares ``option`` (read from its module's source: no bench is imported)."""
    from bench import COMMANDS

    path = ROOT / Path(*COMMANDS[bench].module.split(".")).with_suffix(".py")
    return f'"{option}"' in path.read_text()


def _kept_args(args: list[str]) -> list[str] | None:
    kept, i = [], 0
    while i < len(args):
        a, nxt = args[i], args[i + 1] if i + 1 < len(args) else None
        has_value = a.startswith("--") and nxt is not None and not nxt.startswith("--")
        if a == "--publish" and has_value:
            return None  # merged saved result files: only RERUN can say which runs made them
        if a in GONE_FLAGS:
            i += 1
        elif a in GONE_OPTIONS or (has_value and (Path(nxt).is_absolute() or nxt.startswith(("bench/results/",
                                                                                              "results/")))):
            i += 2  # a file of the old layout (bench/results/<run>/, /tmp) or data where it is by default
        elif has_value:
            kept += [a, nxt]
            i += 2
        else:
            kept.append(a)
            i += 1
    return kept


def subject_of(title: str) -> tuple[str, str]:
    for prefix, key in SUBJECT_OF:
        if title.startswith(prefix):
            return key
    raise ValueError(f"no subject for the section title {title!r}: add it to SUBJECT_OF")


def parse_machine(text: str) -> dict:
    m = MACHINE.match(text)
    if m is None:
        return {"cpu": text.split(",")[0].strip(), "cores": None, "text": text}
    return {"cpu": m["cpu"], "cores": int(m["cores"]), "ram_gib": int(m["ram"]), "accelerator": m["accel"],
            "python": m["python"], "torch": m["torch"], "text": text}


def sections(text: str) -> list[dict]:
    """Every dated section: title, date, machine text, command, body (verbatim) and the section's own text."""
    heads = list(SECTION.finditer(text))
    out = []
    for h, nxt in zip(heads, [*heads[1:], None], strict=True):
        chunk = text[h.start():nxt.start() if nxt else len(text)]
        lines = chunk.split("\n")
        if lines[1] != "" or not lines[2].startswith("- machine: ") or not lines[3].startswith("- command: `") \
                or not lines[3].endswith("`") or lines[4] != "":
            raise ValueError(f"section {lines[0]!r} does not start with a machine and a command line")
        out.append({"title": h["title"], "date": h["date"], "machine": lines[2].removeprefix("- machine: "),
                    "command": lines[3].removeprefix("- command: `").removesuffix("`"),
                    "body": "\n".join(lines[5:]).strip("\n"), "text": chunk})
    return out


def rebuild(sec: dict) -> str:
    """The section's text from its parts (the round-trip check)."""
    return (f"## {sec['title']} — {sec['date']} UTC\n\n- machine: {sec['machine']}\n- command: `{sec['command']}`\n\n"
            f"{sec['body']}")


def published_in(heading: str, path: str = "BENCHMARKS.md") -> str | None:
    """The first commit whose BENCHMARKS.md has this heading line."""
    out = subprocess.run(["git", "log", "--reverse", "--format=%H", "-S", heading, "--", path], cwd=ROOT,
                         capture_output=True, text=True).stdout.split()
    return out[0] if out else None


def import_legacy(path: Path, results_dir: Path | None = None, find_commits: bool = True) -> list[Path]:
    """Write a legacy record for every section of ``path`` not yet recorded; returns the new records' paths."""
    from bench.record import RESULTS, machine_id, save_record

    results_dir = results_dir or RESULTS
    written = []
    for sec in sections(path.read_text()):
        if rebuild(sec).rstrip() != sec["text"].rstrip():
            raise ValueError(f"section {sec['title']} — {sec['date']} would not be kept verbatim")
        subject, name = subject_of(sec["title"])
        when = dt.datetime.strptime(sec["date"], "%Y-%m-%d %H:%M").replace(tzinfo=dt.timezone.utc)
        machine = parse_machine(sec["machine"])
        stem = f"{when:%Y-%m-%dT%H%M%SZ}-{name}-{machine_id(machine)}"
        if (results_dir / subject / f"{stem}.json").exists():
            continue
        heading = f"## {sec['title']} — {sec['date']} UTC"
        extra = {"legacy": True, "commit": published_in(heading) if find_commits else None, "dirty": False}
        written.append(save_record(subject, name, {}, sec["body"], title=sec["title"], command=sec["command"],
                                   machine=machine, when=when, summary=SUMMARIES.get((subject, name, sec["date"]), ""),
                                   results_dir=results_dir, publish=False, extra=extra))
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path, help="the old BENCHMARKS.md (e.g. `git show 95180d2:BENCHMARKS.md`)")
    ap.add_argument("--no-publish", action="store_true", help="do not regenerate BENCHMARKS.md afterwards")
    args = ap.parse_args(argv)
    written = import_legacy(args.path)
    print(f"{len(written)} legacy records written", file=sys.stderr)
    if not args.no_publish:
        from bench.publish import publish

        publish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
