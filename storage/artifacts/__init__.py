"""Artifact stores: where published model versions live (local folder, S3)."""

from storage.artifacts.local import LocalArtifactStore
from storage.artifacts.s3 import S3ArtifactStore

__all__ = ["LocalArtifactStore", "S3ArtifactStore"]
