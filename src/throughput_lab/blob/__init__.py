"""Blob triggers and blob bindings on Azurite: ``BlobLab`` (see ``blob/lab.py``)."""

from .lab import BlobDrainResult, BlobLab

__all__ = ["BlobDrainResult", "BlobLab"]
