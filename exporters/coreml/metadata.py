"""The contract inside a Core ML model: ``user_defined_metadata``, one string per key of ``edgeblood.contract``.

Written by the exporter (with ``precision`` and ``target``) and the weight compressors (``precision``);
read back by the Core ML adapter. The model's standard fields (author, licence, description) are the
exporter's, not part of the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def write_metadata(mlmodel: Any, metadata: Mapping[str, str]) -> None:
    """Set each key of ``metadata`` in the model's ``user_defined_metadata`` (other keys stay)."""
    for key, value in metadata.items():
        mlmodel.user_defined_metadata[key] = value


def read_coreml_metadata(mlmodel: Any) -> dict[str, Any]:
    """The contract stored in a Core ML model's user_defined_metadata."""
    from edgeblood.contract import decode_metadata

    return decode_metadata(dict(mlmodel.user_defined_metadata))
