"""A Milvus standalone server on this machine, for the benches and the server tests: the embedded server that PyPI
ships as ``milvus`` (Milvus 2.3, one process with its own etcd and local storage; ``make milvus-server`` installs
it). logoid itself never starts a server: users point ``--uri`` at theirs.

    with running(WORK / "milvus-server") as server:   # a fresh data folder every start
        MilvusConfig(uri=server.uri, ...)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Server:
    uri: str
    pid: int  # the server process (its memory is not the client's)
    data: Path  # its data folder (what it stores on disk)
    version: str


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("milvus") is not None


@contextmanager
def running(base: Path) -> Iterator[Server]:
    """Start the server on a fresh data folder ``base`` (a folder left by an earlier server refused connections
    here), yield it, stop it."""
    try:
        from milvus import MilvusServer
    except ImportError as e:
        raise SystemExit(f"no Milvus server package ({e}); run `make milvus-server`") from e
    from importlib.metadata import version

    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    server = MilvusServer()
    server.set_base_dir(str(base))
    server.start()
    try:
        yield Server(f"http://127.0.0.1:{server.listen_port}", server.server_proc.pid, base, version("milvus"))
    finally:
        server.stop()


def memory_mb(pid: int) -> dict:
    """Resident memory of a process from /proc/<pid>/status (MiB): VmRSS, RssAnon, RssFile, VmHWM."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            got[key] = int(rest.split()[0]) / 1024
    return got


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
