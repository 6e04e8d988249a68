"""Content-addressed artifact store: datasets and models under their sha256, verified on read."""

from .store import ArtifactStore, FileStore, IntegrityError, StoreError, open_store, sha256_file

__all__ = ["ArtifactStore", "FileStore", "IntegrityError", "StoreError", "open_store", "sha256_file"]
