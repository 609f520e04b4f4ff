"""The errors a request can stop with before any work starts."""
from __future__ import annotations


class ParameterError(ValueError):
    """A chapter, profile or parameter value that cannot be used; raised before any work starts."""
