"""`logoid serve` as a user runs it, and `logoid query/batch --server`: the same output as the local path."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner
from synth import photo_of, text_logo

import logoid
from logoid.cli import cli
from logoid.serve.app import create_app
from logoid.serve.service import Service

CH = ["--channels", "global,local"]


def run(*args, code=0):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == code, res.output
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def built(tmp_path):
    for band, text, seed in (("Mayhem", "MAYHEM", 1), ("Deftones", "DEFTONES", 2), ("Korn", "KORN", 3)):
        p = tmp_path / f"{band.lower()}.png"
        text_logo(text, seed=seed).save(p)
        run("add-band", "--name", band, "--genre", "metal", "--image", p)
    run("build-index", "--model", "tiny-test", "--variants", "3")
    photos = tmp_path / "photos"
    photos.mkdir()
    photo_of(text_logo("MAYHEM", seed=1)).save(photos / "a_mayhem.jpg")
    photo_of(text_logo("QUIX", seed=9), seed=4).save(photos / "b_unknown.jpg")
    (photos / "c_empty.jpg").write_bytes(b"")
    photo_of(text_logo("KORN", seed=3), seed=2).save(photos / "d_korn.jpg")
    return photos


@pytest.fixture
def server(built):
    """A real HTTP server (uvicorn in a thread) over the test's home."""
    service = Service(logoid.open_home(), threads=2)
    service.warm()
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(service, warm=False), host="127.0.0.1", port=port,
                                        log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    while not srv.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    t.join(10)


def _no_timings(text: str):
    data = json.loads(text)
    items = data.get("results", [data])
    for r in items:
        r.pop("timings")
        if "explain" in r:  # its last line is the timings
            assert r["explain"][-1].startswith("timings: ")
            r["explain"].pop()
    return data


def test_query_through_a_server_prints_what_the_local_query_prints(built, server):
    photo = built / "a_mayhem.jpg"
    for extra in ([], ["--json"], ["--json", "--explain", "-k", "2"], ["--all"]):
        local = run("query", photo, *CH, *extra).stdout
        remote = run("query", photo, *CH, *extra, "--server", server).stdout
        if "--json" in extra:
            assert _no_timings(remote) == _no_timings(local)
        else:
            assert remote == local
    assert "Mayhem" in local


def test_the_server_url_may_come_from_the_environment(built, server, monkeypatch):
    monkeypatch.setenv("LOGOID_SERVER", server)
    out = json.loads(run("query", built / "d_korn.jpg", *CH, "--json").stdout)
    assert out["answer"] == "Korn" and out["path"] == str(built / "d_korn.jpg")


def test_batch_through_a_server_writes_the_same_rows(built, server, tmp_path):
    local = run("batch", built, *CH, "--json", "-o", tmp_path / "local.csv")
    remote = run("batch", built, *CH, "--json", "-o", tmp_path / "remote.csv", "--server", server)
    assert _no_timings(remote.stdout) == _no_timings(local.stdout)
    assert (tmp_path / "remote.csv").read_text() == (tmp_path / "local.csv").read_text()
    statuses = [r["status"] for r in json.loads(remote.stdout)["results"]]
    assert statuses == ["ok", "unknown", "error", "ok"]
    assert f"skipping {built / 'c_empty.jpg'}: empty file (0 bytes)" in remote.stderr


def test_server_errors_are_one_line(built, server, tmp_path):
    res = run("query", tmp_path / "missing.jpg", "--server", server, code=1)
    assert res.stderr.strip() == f"error: {tmp_path / 'missing.jpg'}: no such file (check the path)"
    (tmp_path / "notes.jpg").write_text("not a photo")
    res = run("query", tmp_path / "notes.jpg", "--server", server, code=1)
    assert res.stderr.startswith(f"error: {tmp_path / 'notes.jpg'}: a text file, not an image")
    res = run("query", built / "a_mayhem.jpg", "--server", f"http://127.0.0.1:{free_port()}", code=1)
    assert res.stderr.startswith("error: cannot reach the logoid server at http://127.0.0.1:")
    assert "start it with `logoid serve`" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = run("query", built / "a_mayhem.jpg", "--server", server, "--threshold", "0.5", code=2)
    assert "--threshold" in res.output


def test_serve_refuses_in_one_line_without_an_index_or_a_free_port(built, tmp_path):
    res = run("--home", tmp_path / "empty-home", "serve", code=1)
    assert res.stderr.strip().startswith("error: no index in ") and "logoid build-index" in res.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        res = run("serve", "--port", s.getsockname()[1], code=1)
    assert res.stderr.startswith("error: cannot listen on 127.0.0.1:") and "--port" in res.stderr


def _get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, json.loads(r.read())


def test_logoid_serve_process_warms_answers_and_picks_up_a_cli_change(built, tmp_path):
    """The command a user runs: a separate process; another shell adds a band; the server answers it."""
    port = free_port()
    env = {**os.environ, "LOGOID_HOME": str(logoid.open_home().root)}
    proc = subprocess.Popen([sys.executable, "-m", "logoid", "serve", "--port", str(port), "--host", "0.0.0.0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if _get(url + "/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
            time.sleep(0.2)
        ask = ["query", built / "a_mayhem.jpg", *CH, "--json", "--server", url]
        assert json.loads(run(*ask).stdout)["answer"] == "Mayhem"
        run("remove-band", "Mayhem")  # from "another shell": this process, not the server's
        assert json.loads(run(*ask).stdout)["status"] == "unknown"
        assert _get(url + "/v1/stats")[1]["catalog"]["bands"] == 2
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert f"logoid serve: http://0.0.0.0:{port}/" in out and "ready in " in out
    assert err.startswith("warning: listening on 0.0.0.0, not only this machine")
    assert "Traceback" not in err


def test_serve_without_the_server_extra_says_how_to_install_it(built, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_uvicorn(name, *a, **kw):
        if name == "uvicorn":
            raise ImportError("No module named 'uvicorn'", name="uvicorn")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_uvicorn)
    res = run("serve", code=1)
    assert res.stderr.strip() == ("error: logoid serve needs FastAPI and uvicorn (uvicorn is missing) (install the "
                                  "server extra: pip install -e '.[server]' (`make install` does))")


def test_readme_documents_serve_and_server(built):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "logoid serve" in readme and "--server" in readme
