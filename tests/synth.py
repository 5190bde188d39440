"""Synthetic logos and photos for tests: text logos pasted with a known homography into clutter.

One copy, shared with the concurrency bench (bench/concurrency/synth.py), so the crash tests and the bench draw the
same workload."""

from bench.concurrency.synth import background, homography, paste, photo, photo_of, text_logo

__all__ = ["BACKEND_BANDS", "background", "faiss_and_milvus_homes", "homography", "logos_and_photos", "paste", "photo", "photo_of", "text_logo"]


def logos_and_photos(folder, names: dict[str, tuple[str, int]]) -> tuple[dict, dict]:
    """For each ``band -> (text, seed)``: its logo file and a photo of it, written in ``folder``."""
    logos, photos = {}, {}
    for band, (text, seed) in names.items():
        logos[band] = folder / f"{band}.png"
        text_logo(text, seed=seed).save(logos[band])
        photos[band] = folder / f"{band}.jpg"
        photo_of(text_logo(text, seed=seed)).save(photos[band])
    return logos, photos


BACKEND_BANDS = {"Mayhem": ("MAYHEM", 1), "Deftones": ("DEFTONES", 2), "Korn": ("KORN", 3), "Slayer": ("SLAYER", 9)}


def faiss_and_milvus_homes(tmp_path, run, build_args, milvus_args=()) -> tuple[dict, dict, dict, dict]:
    """Two homes with Mayhem, Deftones and Korn (Slayer's photo stays unknown), one built with ``--backend faiss``
    and one with ``--backend milvus`` (and ``milvus_args``, e.g. a server's ``--uri``), through the CLI
    ``run(home, *args)``: (logos, photos, homes, build outputs)."""
    import json

    logos, photos = logos_and_photos(tmp_path, BACKEND_BANDS)
    homes = {"faiss": tmp_path / "home-faiss", "milvus": tmp_path / "home-milvus"}
    outs = {}
    for backend, home in homes.items():
        for band in ("Mayhem", "Deftones", "Korn"):
            run(home, "add-band", "--name", band, "--image", logos[band])
        where = milvus_args if backend == "milvus" else ()
        outs[backend] = json.loads(run(home, "build-index", *build_args, "--backend", backend, *where,
                                       "--json").stdout)
    return logos, photos, homes, outs
