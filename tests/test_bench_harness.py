"""The bench harness: one record per run, the results pages generated from the records, stable anchors.

Only the harness's light modules are imported (record, publish, legacy, the mosaic bench's --set parser); no bench
runs and nothing needs ../shared/data.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench import COMMANDS, SUBJECTS, anchor
from bench.__main__ import main as bench_main
from bench.legacy import accepts, parse_machine, rebuild, sections, subject_of, translate
from bench.mosaic.settings import apply_local_set
from bench.publish import latest_per_machine, publish, render_history, render_main
from bench.record import load_records, machine_id, save_record
from logoid import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
AMD = {"cpu": "AMD EPYC", "cores": 2, "ram_gib": 24, "accelerator": "CPU only", "python": "3.11.7", "torch": "2"}
INTEL = {"cpu": "Intel(R) Xeon(R) Processor", "cores": 2, "ram_gib": 24, "accelerator": "CPU only"}


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, 0, tzinfo=dt.timezone.utc)


def record(tmp_path: Path, subject: str, name: str, machine: dict, when: dt.datetime, summary: str) -> Path:
    return save_record(subject, name, {"x": 1}, f"| what | value |\n|---|---|\n| {summary} | 1 |", summary=summary,
                       command=f"python -m bench {name}", machine=machine, when=when, results_dir=tmp_path)


def test_save_record_writes_one_json_file_per_run(tmp_path):
    path = save_record("speed", "demo", {"query_s": np.float32(0.25), "n": np.int64(3), "v": np.arange(2)},
                       "| a | b |", summary="query **0.25 s**", notes="a note", command="python -m bench speed",
                       machine=AMD, when=at(5, 8), results_dir=tmp_path)
    assert path == tmp_path / "speed" / "2026-12-05T080000Z-demo-amd-epyc-2c.json"
    rec = json.loads(path.read_text())
    assert rec["subject"] == "speed" and rec["name"] == "demo" and rec["title"] == SUBJECTS["speed"].records["demo"]
    assert rec["date"] == "2026-12-05T08:00:00Z" and rec["machine"] == AMD
    assert rec["command"] == "python -m bench speed" and rec["summary"] == "query **0.25 s**"
    assert rec["numbers"] == {"query_s": 0.25, "n": 3, "v": [0, 1]}
    assert rec["markdown"] == "| a | b |" and rec["notes"] == "a note"
    assert "commit" in rec and "dirty" in rec
    again = save_record("speed", "demo", {}, machine=AMD, when=at(5, 8), results_dir=tmp_path)
    assert again.name == "2026-12-05T080000Z-demo-amd-epyc-2c-2.json"  # same minute, same machine: kept apart


def test_save_record_refuses_names_that_make_bad_anchors(tmp_path):
    with pytest.raises(ValueError, match="slugs"):
        save_record("Speed", "demo", {}, machine=AMD, results_dir=tmp_path)
    with pytest.raises(ValueError, match="slugs"):
        save_record("speed", "demo run", {}, machine=AMD, results_dir=tmp_path)


def test_machine_id_is_cpu_model_and_cores():
    assert machine_id(AMD) == "amd-epyc-2c"
    assert machine_id(INTEL) == "intel-xeon-processor-2c"
    assert machine_id({**AMD, "accelerator": "CUDA NVIDIA H100 80GB HBM3"}) == "amd-epyc-2c-cuda-nvidia-h100-80gb-hbm3"


def test_latest_record_per_machine_wins(tmp_path):
    record(tmp_path, "local", "e2e", AMD, at(1), "amd old")
    record(tmp_path, "local", "e2e", INTEL, at(2), "intel old")
    record(tmp_path, "local", "e2e", AMD, at(3), "amd new")
    record(tmp_path, "local", "e2e", INTEL, at(4), "intel new")
    record(tmp_path, "local", "sweep", AMD, at(5), "sweep")
    records = load_records(tmp_path)
    assert [r["summary"] for r in records] == ["amd old", "intel old", "amd new", "intel new", "sweep"]
    latest = latest_per_machine(records, "local", "e2e")
    assert [r["summary"] for r in latest] == ["intel new", "amd new"]  # newest first, one per machine
    page = render_main(records)
    assert "intel new" in page and "amd new" in page and "sweep" in page
    assert "amd old" not in page and "intel old" not in page
    assert page.index("intel new") < page.index("amd new")


def test_page_has_stable_anchors_and_links_every_run_to_its_tables(tmp_path):
    record(tmp_path, "speed", "demo", AMD, at(1), "speed numbers")
    record(tmp_path, "local", "e2e", INTEL, at(2), "e2e numbers")
    record(tmp_path, "serve", "latency", AMD, at(3), "a subject the harness does not declare yet")
    records = load_records(tmp_path)
    page, history = render_main(records), render_history(records)
    for a in ("speed", "speed-demo", "local", "local-e2e", "serve", "serve-latency", "method-notes", "local-method"):
        assert f'<a id="{a}"></a>' in page
    for link in re.findall(r"docs/benchmarks-history\.md#([\w-]+)", page):
        assert f'<a id="{link}"></a>' in history
    assert page.index('id="speed"') < page.index('id="local"') < page.index('id="serve"')  # declared order first
    assert "`python -m bench e2e`" in page and "Intel(R) Xeon(R) Processor, 2 cores" in page and "2026-12-02 12:00 UTC" in page


def test_history_keeps_every_run_grouped_by_subject_newest_first(tmp_path):
    for day in (1, 3, 2):
        record(tmp_path, "mosaic", "designs", AMD, at(day), f"mosaic day {day}")
    record(tmp_path, "speed", "demo", AMD, at(4), "speed")
    history = render_history(load_records(tmp_path))
    assert history.count("| mosaic day") == 3
    assert history.index("| mosaic day 3") < history.index("| mosaic day 2") < history.index("| mosaic day 1")
    assert history.index('<a id="speed"></a>') < history.index('<a id="mosaic"></a>')
    assert history.count('<a id="mosaic"></a>') == 1  # one section per subject, no repeated titles


def test_page_stays_short_with_many_runs(tmp_path):
    machines = [AMD, INTEL, {**AMD, "cpu": "Apple M2", "cores": 8}]

    def page_after(days: int, folder):
        for s, subject in SUBJECTS.items():
            for name in subject.records:
                for day in range(1, days + 1):
                    for m in machines:
                        record(folder, s, name, m, at(day), f"{s} {name} {day}")
        return render_main(load_records(folder))

    one, five = page_after(1, tmp_path / "one"), page_after(5, tmp_path / "five")
    # older runs add no line: a heading per record, a line per machine, each subject's method note (every record
    # of every subject on 3 machines here; the real page, one or two machines: < 200 lines)
    assert len(five.splitlines()) == len(one.splitlines()) < 300
    assert "<br>local e2e 5" in five and "<br>local e2e 4" not in five  # only the latest run of each machine


def test_publish_writes_both_pages_once(tmp_path):
    record(tmp_path, "speed", "demo", AMD, at(1), "speed")
    main, history = tmp_path / "BENCHMARKS.md", tmp_path / "docs" / "benchmarks-history.md"
    assert publish(tmp_path, main, history) == [main, history]
    assert publish(tmp_path, main, history) == []  # unchanged pages are left alone
    assert main.read_text().startswith("# logoid benchmarks\n")


def test_the_repository_pages_are_generated_and_short():
    records = load_records()
    page = (ROOT / "BENCHMARKS.md").read_text()
    stale = "out of date with bench/results: run `python -m bench publish`"
    assert page == render_main(records), f"BENCHMARKS.md is {stale}"
    assert (ROOT / "docs" / "benchmarks-history.md").read_text() == render_history(records), f"the history is {stale}"
    assert len(page.splitlines()) < 215  # ~200, and issue 24's table of the roster at 1k-180k


def test_citations_of_benchmarks_name_anchors_that_exist():
    from bench.local.roster_table import ANCHOR  # a table the page assembles from several records

    anchors = {"method-notes", ANCHOR} | {a for s, sub in SUBJECTS.items()
                                  for a in (anchor(s), f"{anchor(s)}-method", *(anchor(s, n) for n in sub.records))}
    folders = ("logoid", "catalog", "augment", "engine", "index", "finetune", "bench")
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(p for d in folders for p in (ROOT / d).rglob("*.py"))]
    cited = {(f.name, a) for f in files for a in re.findall(r"BENCHMARKS\.md#([\w-]+)", f.read_text())}
    assert cited, "README cites BENCHMARKS.md by anchor"
    assert {(f, a) for f, a in cited if a not in anchors} == set()


def test_every_command_names_a_module_of_the_package():
    for name, cmd in COMMANDS.items():
        assert re.fullmatch(r"[a-z][a-z-]*", name)
        parts = cmd.module.split(".")
        assert parts[0] == "bench" and (ROOT / Path(*parts)).with_suffix(".py").exists(), name
        assert cmd.subject in ("", *SUBJECTS), name
    for s, sub in SUBJECTS.items():
        assert (ROOT / "bench" / s / "__init__.py").exists()  # its docstring is the subject's method notes
        assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", n) for n in sub.records)


def test_unknown_bench_is_a_usage_error(capsys):
    assert bench_main(["no-such-bench"]) == 2
    assert "python -m bench list" in capsys.readouterr().err
    assert bench_main(["list"]) == 0
    assert "local-scale" in capsys.readouterr().out


LOG = """# logoid benchmarks

Every section below is written by a bench script.

## Speed (demo catalog) — 2026-11-23 11:39 UTC

- machine: AMD EPYC, 2 cores, 24 GiB RAM, CPU only; Python 3.11.7, torch 2.14.1+cu130
- command: `python bench/run.py --only speed`

| what | median |
|---|---|
| query, warm | 0.377 s |

Notes typed under the table.

## Multi-logo mosaics (threadless-dev photos) — 2026-12-05 05:42 UTC

- machine: Intel(R) Xeon(R) Processor, 2 cores, 24 GiB RAM, CPU only; Python 3.11.7, torch 2.14.1+cu130
- command: `python bench/mosaic.py --n 2 --write`

| grid | recall |
|---|---|
| 2×2 | 0.807 |
"""


def test_legacy_sections_are_kept_verbatim(tmp_path):
    secs = sections(LOG)
    assert [(s["title"], s["date"]) for s in secs] == [("Speed (demo catalog)", "2026-11-23 11:39"),
                                                       ("Multi-logo mosaics (threadless-dev photos)", "2026-12-05 05:42")]
    assert all(rebuild(s).rstrip() == s["text"].rstrip() for s in secs)
    assert secs[0]["body"] == "| what | median |\n|---|---|\n| query, warm | 0.377 s |\n\nNotes typed under the table."
    assert [subject_of(s["title"]) for s in secs] == [("speed", "demo"), ("mosaic", "designs")]
    m = parse_machine(secs[1]["machine"])
    assert (m["cpu"], m["cores"], m["ram_gib"], m["torch"]) == ("Intel(R) Xeon(R) Processor", 2, 24, "2.14.1+cu130")


def test_legacy_import_writes_records_once(tmp_path):
    from bench.legacy import import_legacy

    log = tmp_path / "old.md"
    log.write_text(LOG)
    written = import_legacy(log, tmp_path / "results", find_commits=False)
    assert [p.relative_to(tmp_path / "results").as_posix() for p in written] == [
        "speed/2026-11-23T113900Z-demo-amd-epyc-2c.json", "mosaic/2026-12-05T054200Z-designs-intel-xeon-processor-2c.json"]
    rec = json.loads(written[0].read_text())
    assert rec["legacy"] is True and rec["command"] == "python bench/run.py --only speed"
    assert rec["summary"].startswith("model load 4.43 s")  # the hand-written key numbers of that run
    assert import_legacy(log, tmp_path / "results", find_commits=False) == []


def test_page_marks_runs_from_the_old_log_and_says_which_code_every_run_measured(tmp_path):
    from bench.legacy import import_legacy

    log = tmp_path / "old.md"
    log.write_text(LOG)
    import_legacy(log, tmp_path, find_commits=False)  # speed on AMD (2026-11-23), mosaic on Intel (2026-12-05)
    save_record("speed", "demo", {}, summary="new speed", command="python -m bench speed", machine=AMD, when=at(6),
                results_dir=tmp_path, extra={"commit": "a" * 40, "dirty": True})
    save_record("speed", "photo-size", {}, summary="new size", command="python -m bench photo-size", machine=AMD,
                when=at(6), results_dir=tmp_path, extra={"commit": "b" * 40, "dirty": False})
    records = load_records(tmp_path)
    lines = {ln.split("<br>")[1]: ln for ln in render_main(records).splitlines() if "<br>" in ln}
    assert "· commit `aaaaaaaaaaaa` + uncommitted changes · `python -m bench speed` ·" in lines["new speed"]
    assert "· commit `bbbbbbbbbbbb`, clean tree · `python -m bench photo-size` ·" in lines["new size"]
    mosaic = next(ln for ln in lines.values() if "#mosaic-" in ln)
    assert "*from the log of 2026-12-05, before the harness; commit unknown*" in mosaic
    assert "rerun today: `python -m bench mosaic --n 2` ·" in mosaic and "bench/mosaic.py" not in mosaic
    assert "model load 4.43 s" not in "".join(lines)  # the old speed run is no longer the AMD machine's latest
    history = render_history(records)
    assert "- command (original, from the log; its scripts are gone): `python bench/mosaic.py --n 2 --write`" in history
    assert "- rerun today: `python -m bench mosaic --n 2`" in history
    assert "- code: commit `aaaaaaaaaaaa` + uncommitted changes" in history


def test_old_log_commands_map_to_todays_benches():
    assert translate("python bench/run.py --only threadless") == "python -m bench accuracy"
    assert translate("python bench/mosaic.py --n 2 --seed 0 --json /tmp/s10/m.json --home bench/results/h --write") \
        == "python -m bench mosaic --n 2 --seed 0"
    assert translate("OMP_NUM_THREADS=1 python bench/milvus_compare.py --n 20000 --publish") \
        == "OMP_NUM_THREADS=1 python -m bench milvus --n 20000"
    assert translate("python bench/bench_finetune.py --variants 20 && python bench/publish.py finetune") \
        == "python -m bench finetune --variants 20"
    assert translate("python bench/text_cache.py clean && python bench/bench_text.py --publish") \
        == "python -m bench text-cache clean && python -m bench text"
    assert translate("python bench/local_sweep.py --publish bench/results/s8/a.json") is None  # merged saved files
    assert translate("python bench/bench_text.py --limit 300") is None  # an option the bench no longer has
    assert translate("python bench/local_scale.py index --refs 1000; then the same with --nlist 8192") is None
    assert translate("python bench/no_such_script.py") is None


def _shown_commands(text: str) -> list[tuple[str, list[str]]]:
    """Every ``python -m bench NAME args`` inside backticks (one per command of a ``&&`` chain)."""
    out = []
    for span in re.findall(r"`([^`]*)`", text):
        for part in span.split("&&"):
            m = re.search(r"python -m bench ([a-z][a-z-]*)(.*)", part)
            if m:
                out.append((m[1], m[2].split()))
    return out


def test_every_bench_command_the_docs_show_exists():
    pages = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md")]
    shown = []
    for page in pages:
        # the history keeps the old log's commands as they were; its rerun lines are checked like the rest
        text = "\n".join(ln for ln in page.read_text().splitlines() if "(original, from the log" not in ln)
        shown += [(page.name, name, args) for name, args in _shown_commands(text)]
        shown += [(page.name, name, []) for name in re.findall(r"make bench NAME=([a-z][a-z-]*)", text)]
    assert {name for _, name, _ in shown} >= {"scale", "speed", "accuracy", "mosaic", "local-scale"}
    for page, name, args in shown:
        assert name in COMMANDS or name == "list", (page, name)
        for a in args:
            if a.startswith("--"):
                assert accepts(name, a), (page, name, a)
    assert "no command reruns it today" not in (ROOT / "BENCHMARKS.md").read_text()


def test_every_bench_records_by_default_and_one_flag_skips_it():
    for name, cmd in COMMANDS.items():
        src = (ROOT / Path(*cmd.module.split("."))).with_suffix(".py").read_text()
        if cmd.records:
            assert "add_no_write(" in src, name  # --no-write, the same flag everywhere
            assert not re.search(r'"--(write|publish|no-append)"', src), name  # the old per-bench switches


def test_benches_keep_to_their_package():
    for path in (ROOT / "bench").rglob("*.py"):
        src, parts = path.read_text(), path.relative_to(ROOT / "bench").parts
        assert "sys.path" not in src, path
        assert DEFAULT_MODEL not in src, path  # `from logoid import DEFAULT_MODEL`
        if len(parts) > 1 and parts[0] in SUBJECTS:  # a subject imports no other: shared code is in bench/_*.py
            assert set(re.findall(r"(?:from|import) bench\.(\w+)", src)) & (set(SUBJECTS) - {parts[0]}) == set(), path


def test_mosaic_set_parses_booleans_and_refuses_reference_settings():
    # `--set similarity_fallback=false` once became bool("false") == True; reference settings are fixed by the index.
    from logoid.identify.match import LocalConfig

    cfg = apply_local_set(LocalConfig(), {"similarity_fallback": "false", "tile_shortlist": "0"})
    assert cfg.flat()["similarity_fallback"] is False and cfg.flat()["tile_shortlist"] == 0
    assert apply_local_set(LocalConfig(), {"similarity_fallback": "1"}).flat()["similarity_fallback"] is True
    with pytest.raises(SystemExit, match="fixed by the built index"):
        apply_local_set(LocalConfig(), {"upscale": "false"})
    with pytest.raises(SystemExit, match="unknown"):
        apply_local_set(LocalConfig(), {"no_such_setting": "1"})
    with pytest.raises(SystemExit, match="expected true or false"):
        apply_local_set(LocalConfig(), {"similarity_fallback": "maybe"})
