"""Synthetic logos and photos for tests: text logos pasted with a known homography into clutter.

One copy, shared with the concurrency bench (bench/concurrency/synth.py), so the crash tests and the bench draw the
same workload."""

from bench.concurrency.synth import background, homography, paste, photo, photo_of, text_logo

__all__ = ["background", "homography", "paste", "photo", "photo_of", "text_logo"]
