"""Synthetic logos and photos for tests: text logos pasted with a known homography into clutter.

One copy, shared with the concurrency bench (bench/concurrency/synth.py), so the crash tests and the bench draw the
same workload."""

from bench.concurrency.synth import background, homography, paste, photo, photo_of, text_logo

__all__ = ["background", "homography", "logos_and_photos", "paste", "photo", "photo_of", "text_logo"]


def logos_and_photos(folder, names: dict[str, tuple[str, int]]) -> tuple[dict, dict]:
    """For each ``band -> (text, seed)``: its logo file and a photo of it, written in ``folder``."""
    logos, photos = {}, {}
    for band, (text, seed) in names.items():
        logos[band] = folder / f"{band}.png"
        text_logo(text, seed=seed).save(logos[band])
        photos[band] = folder / f"{band}.jpg"
        photo_of(text_logo(text, seed=seed)).save(photos[band])
    return logos, photos
