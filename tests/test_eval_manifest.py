import pytest
from PIL import Image

from logoid.core.errors import ConfigError, LogoidError
from logoid.eval.manifest import LabelledQuery, load_queries


def test_csv_manifest_relative_paths_unknown_and_split(tmp_path):
    (tmp_path / "m").mkdir()
    csv = tmp_path / "m" / "queries.csv"
    csv.write_text("\ufeffPhoto, Label ,split\nphotos/a.jpg,band:1,calib\nb.jpg,,test\nc.jpg,Unknown,test\n"
                   "d.jpg,album:3,\n", encoding="utf-8")
    qs = load_queries(csv)
    assert qs == [
        LabelledQuery(tmp_path / "m" / "photos" / "a.jpg", "band:1", "calib"),
        LabelledQuery(tmp_path / "m" / "b.jpg", None, "test"),
        LabelledQuery(tmp_path / "m" / "c.jpg", None, "test"),
        LabelledQuery(tmp_path / "m" / "d.jpg", "album:3", None),
    ]
    assert [q.path.name for q in load_queries(csv, split="test")] == ["b.jpg", "c.jpg"]


def test_csv_missing_column_names_file_and_fix(tmp_path):
    csv = tmp_path / "q.csv"
    csv.write_text("image,label\na.jpg,band:1\n")
    with pytest.raises(LogoidError) as e:
        load_queries(csv)
    assert str(csv) in str(e.value) and "photo" in str(e.value) and e.value.hint
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_queries(tmp_path / "empty.csv")
    (tmp_path / "blank.csv").write_text("photo,label\n,band:1\n")
    with pytest.raises(ConfigError, match=":2"):
        load_queries(tmp_path / "blank.csv")
    with pytest.raises(ConfigError):
        load_queries(tmp_path / "nope.csv")


def test_folder_tree(tmp_path):
    for rel in ["band:1/x.jpg", "band:1/sub/y.png", "unknown/z.jpg", "album:2/w.jpg"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(p)
    (tmp_path / "band:1" / "notes.txt").write_text("not an image")
    got = {(q.path.relative_to(tmp_path).as_posix(), q.label) for q in load_queries(tmp_path)}
    assert got == {("band:1/x.jpg", "band:1"), ("band:1/sub/y.png", "band:1"), ("unknown/z.jpg", None),
                   ("album:2/w.jpg", "album:2")}
    Image.new("RGB", (4, 4)).save(tmp_path / "stray.jpg")
    with pytest.raises(ConfigError, match="label folder"):
        load_queries(tmp_path)


def test_empty_folder_raises(tmp_path):
    with pytest.raises(ConfigError, match="no labelled photos"):
        load_queries(tmp_path)
