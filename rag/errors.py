"""Errors a user can cause. Interfaces turn them into one-line messages; programming errors still raise."""

from __future__ import annotations


class RagError(Exception):
    """Base class for every error caused by user input or user data."""


class QueryError(RagError):
    """A question or a search option is unusable (empty question, bad k, unknown mode...)."""


class CorpusError(RagError):
    """The corpus folder is missing, empty or holds no readable document."""


class IndexCorruptError(RagError):
    """An index file is missing, truncated or does not match its checksum."""


class IndexWriteError(RagError):
    """The index must be built or updated, but its folder cannot be written."""


class ModelError(RagError):
    """The embedding model cannot be found or loaded from its local path."""
