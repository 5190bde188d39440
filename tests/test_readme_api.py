"""The README's Python example runs as written, with the real default model, and answers the right band."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from synth import photo_of, text_logo

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    m = re.search(r"<!-- api-example -->\s*```python\n(.*?)```\s*<!-- /api-example -->", README.read_text(), re.S)
    assert m, "README.md lost its <!-- api-example --> block"
    return m.group(1)


def test_the_example_is_short():
    assert len(readme_example().strip().splitlines()) <= 10


@pytest.mark.real
def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text_logo("MAYHEM", seed=1).save("mayhem.png")
    photo_of(text_logo("MAYHEM", seed=1)).save("photo.jpg")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(readme_example(), "README.md", "exec"), {})
    first = out.getvalue().splitlines()[0].split()
    assert first[:2] == ["ok", "Mayhem"]
    assert (tmp_path / "my-home" / "catalog.db").exists()
