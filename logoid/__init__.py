"""logoid: recognise band logos and album covers in real photos."""

__version__ = "0.1.0"
__all__ = ["__version__"]
