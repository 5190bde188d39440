"""Text channel: RapidOCR reads the name on a logo, fuzzy matching finds it among the catalog's names.

band-logos (1,206 real band logos), text channel alone: clean = the logo files; prints = each logo simulated on a
shirt in a threadless-dev photo (placed by homography, polarity as merch is printed, perspective, fabric shading,
blur, noise, JPEG: `bench/_prints.py`); roster = the real names plus generated band-like names up to 200k, as
distractors. Rejection: a seeded quarter of the bands left out of the catalog, the text-only threshold calibrated on
half of the prints and reported on the other half. `text-cache clean` and `text-cache prints` fill the OCR caches
first (slow; the bench then runs in seconds); `text-fused` checks on threadless-dev (designs without names) that the
text channel makes no metric worse.
"""
