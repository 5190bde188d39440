"""Local features: RootSIFT keypoints and descriptors for geometric matching of logos.

Images are resized to a fixed working size before SIFT (small photos are upscaled: SIFT finds few
stable keypoints on a 380 px photo of a shirt), but keypoint coordinates are returned in the
ORIGINAL image's pixels, so homographies and polygons mean something to the caller.

SIFT descriptors are not invariant to contrast inversion, so a reference is also enrolled as its
inverted grey image (a black-on-white logo printed white-on-black on a shirt). Each variant also holds
the keypoints of a small, blurred copy of the reference (``ref_small_side``): what a print that is a
small part of a photo looks like to SIFT.

Modules: ``config`` (:class:`ExtractConfig`, the hashes that key features on it), ``features`` (:class:`Features`),
``sift`` (one grey array), ``extract`` (an image, a reference), ``tiles`` (finer levels of a photo in tiles),
``cache`` (reference features on disk). Matching and verifying them is the identify stage's
(``logoid.identify.match`` and ``logoid.identify.verify``).
"""

from .cache import FeatureCache
from .config import ExtractConfig
from .extract import extract, extract_reference, reference_variants
from .features import DESC_DIM, INVERTED_ORDER, VARIANT_INVERTED, VARIANT_NORMAL, Features
from .sift import root_sift
from .tiles import finest_side, tile_scales, tile_windows

__all__ = [
    "DESC_DIM", "ExtractConfig", "INVERTED_ORDER", "FeatureCache", "Features", "VARIANT_INVERTED", "VARIANT_NORMAL", "extract",
    "extract_reference", "reference_variants", "finest_side", "root_sift", "tile_scales", "tile_windows",
]
