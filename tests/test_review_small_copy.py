"""Review of 14ded1b: find_all's ``all_min_score`` floor is applied after the same-place de-duplication, so a logo
that the floor drops can still hide a stronger logo found later at the same place."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def test_logo_dropped_by_all_min_score_does_not_hide_a_stronger_one_at_the_same_place():
    from logoid.identify.pipeline import Identifier, IdentifyConfig

    def verif(image_id, inliers, poly):
        return SimpleNamespace(image_id=image_id, inliers=inliers, inlier_ratio=0.5, score=float(inliers),
                               polygon=poly, coverage=0.5)

    # find_all order (local score, strongest first). Fused scores differ from it (the global channel agrees with
    # band:3 only): 60 inliers -> 0.95, 30 -> 0.6, 25 -> 0.9.
    fused = {60: 0.95, 30: 0.6, 25: 0.9}
    verifs = [verif(1, 60, [[0, 0], [50, 0], [50, 30], [0, 30]]),
              verif(2, 30, [[400, 0], [450, 0], [450, 30], [400, 30]]),  # weak fused score
              verif(3, 25, [[380, -20], [480, -20], [480, 50], [380, 50]])]  # same place, strong fused score
    stub = SimpleNamespace(entity_of_image=lambda i: f"band:{i}", threshold=0.5,
                           config=IdentifyConfig(all_min_score=0.7),
                           score=lambda fs: [fused[round(float(np.expm1(f["log_inliers"])))] for f in fs],
                           catalog=SimpleNamespace(entity_name=lambda t, i: f"B{i}"), _meta=lambda key: {})
    got = [(c.entity_key, c.score) for c in Identifier._logos(stub, verifs, {})]
    # band:2 (0.6) is below all_min_score and is dropped, but it already suppressed band:3 (0.9, same place):
    # the print is lost although a logo above the floor was verified there.
    assert got == [("band:1", 0.95), ("band:3", 0.9)]
