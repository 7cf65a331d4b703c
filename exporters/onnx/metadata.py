"""The contract inside an ONNX file: ``metadata_props``, one string entry per key of ``edgeblood.contract``.

Written by the exporter, the capture variant and the quantizers (which copy the fp32 file's entries
and change ``precision``); read back by the ONNX Runtime adapter from the session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def write_metadata(proto: Any, metadata: Mapping[str, str]) -> None:
    """Replace the ``metadata_props`` of an ``onnx.ModelProto`` with ``metadata``."""
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)


def read_metadata(proto: Any) -> dict[str, str]:
    """The raw ``metadata_props`` of an ``onnx.ModelProto`` (strings, as stored)."""
    return {p.key: p.value for p in proto.metadata_props}


def read_session_metadata(session: Any) -> dict[str, Any]:
    """The contract of the model an ``onnxruntime.InferenceSession`` loaded, decoded."""
    from edgeblood.contract import decode_metadata

    return decode_metadata(dict(session.get_modelmeta().custom_metadata_map))
