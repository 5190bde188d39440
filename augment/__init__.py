"""Deterministic variants of reference images (colour and black-and-white schemes) and contact sheets."""

from .config import AugmentConfig
from .sheet import contact_sheet, preview
from .variants import make_variants, variant_arrays, variant_rng

__all__ = ["AugmentConfig", "contact_sheet", "make_variants", "preview", "variant_arrays", "variant_rng"]
