"""Crash consistency: every write killed (SIGKILL, as ``kill -9``) at every named step leaves a catalog and an index
that agree, queries that answer right, and a next write that repairs what the crash left (tests/crashkit.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import crashkit as ck
import pytest
from click.testing import CliRunner

from logoid.cli import cli

#: The steps each write must pass (logoid.core.faults.STEPS): a crash test that never reached one proves nothing.
STEPS = {
    "add-band": {"write-locked", "catalog-image-stored", "index-staged", "catalog-before-commit", "catalog-committed",
                 "index-files-written", "index-committed", "write-done"},
    "remove-band": {"write-locked", "index-staged", "catalog-before-commit", "catalog-committed",
                    "index-files-written", "index-committed", "write-done"},
    "catalog import": {"write-locked", "catalog-image-stored", "catalog-before-commit", "catalog-committed",
                       "write-done"},
    "build-index": {"write-locked", "build-image-embedded", "index-staged", "index-files-written", "index-committed",
                    "write-done"},
}
# add-album takes add-band's path (catalog_cmds._sync_index / _commit_index): `python -m bench concurrency` kills it too.


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    ctx = ck.context()
    ck.warm(ctx)
    assets = ck.make_assets(root / "assets")
    return SimpleNamespace(ctx=ctx, assets=assets, root=root,
                           templates=ck.kill_templates(ctx, assets, root / "templates"),
                           scenarios={s[0]: s for s in ck.kill_scenarios(assets, root / "scenarios")})


@pytest.mark.parametrize("write", list(STEPS))
def test_kill_at_every_step_leaves_catalog_and_index_agreeing(kit, write, capsys):
    _, template, argv, subjects = kit.scenarios[write]
    rows = ck.kill_scenario(kit.ctx, kit.templates[template], write, argv, subjects, kit.assets,
                            kit.root / write.replace(" ", "-"))
    with capsys.disabled():
        print(f"\n{ck.kill_table(rows)}")
    assert {r.step.split("@")[0] for r in rows} >= STEPS[write]
    bad = [r for r in rows if not r.ok]
    assert not bad, ck.kill_table(bad) + "\n" + "\n".join(f"{r.step}: {r.problems}" for r in bad)


def test_real_cli_killed_between_catalog_and_index_reports_then_repairs(kit, tmp_path):
    """The issue's crash through ``python -m logoid``: the catalog has the band, the index not yet. A query answers
    without error and says how to fix it; the next add-band indexes the band and gets a fresh id."""
    home = ck.copy_home(kit.templates["base"], tmp_path / "home")
    logo, photo = kit.assets["FLIP"]
    env = {**os.environ, "LOGOID_FAULT": "catalog-committed"}
    res = subprocess.run([sys.executable, "-m", "logoid", "--home", str(home), "add-band", "--name", "FLIP",
                          "--image", str(logo)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == -9, res.stderr

    def query(p):
        r = CliRunner().invoke(cli, ["--home", str(home), "query", str(p), "--channels", ck.CHANNELS, "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout), r.stderr

    ans, err = query(photo)
    assert ans["answer"] == "unknown"
    assert err.strip() == ("warning: 1 catalog image(s) are not in the index, so queries cannot find them (an "
                           "interrupted write or an import); run `logoid build-index`")
    r = CliRunner().invoke(cli, ["--home", str(home), "add-band", "--name", "CBGB", "--image",
                                 str(kit.assets["CBGB"][0]), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["band"] == 5  # FLIP kept id 4: committed ids are never handed out again
    st = ck.read_home(home)
    assert st.exact and st.entities["FLIP"] == "band:4"
    for name in ("FLIP", "CBGB"):
        ans, err = query(kit.assets[name][1])
        assert (ans["answer"], ans["entity"], err) == (name, st.entities[name], "")
