"""The contract inside a .tflite file: one JSON entry ``edgeblood`` in the flatbuffer's ``Model.metadata`` table.

The format's own place for free-form data, readable with ai-edge-litert alone. Written by the exporter
and by the int8 quantizer (which copies the fp32 entry, so it rewrites ``precision``); read back by the
LiteRT adapter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METADATA_NAME = "edgeblood"


def write_metadata(path: str | Path, metadata: dict[str, str]) -> None:
    """Store the contract as the flatbuffer metadata entry ``edgeblood`` (replacing an older one)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from edgeblood.atomic import write_bytes

    path = Path(path)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    model.metadata = [m for m in (model.metadata or []) if as_text(m.name) != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    write_bytes(path, bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def read_litert_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The contract stored in a .tflite file's ``Model.metadata`` entry ``edgeblood`` (empty when absent).

    Read with ai-edge-litert's generated flatbuffer schema only. A buffer may live after the
    flatbuffer itself (offset/size; ai-edge-quantizer writes them so) or inside it.
    """
    from ai_edge_litert import schema_py_generated as schema

    from edgeblood.contract import decode_metadata

    data = Path(path).read_bytes()
    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() != METADATA_NAME:
            continue
        buffer = model.Buffers(entry.Buffer())
        raw = data[buffer.Offset() : buffer.Offset() + buffer.Size()] if buffer.Offset() > 1 else buffer.DataAsNumpy().tobytes()
        return decode_metadata(json.loads(raw.decode("utf-8")))
    return {}


def as_text(value) -> str:
    """A flatbuffer string (bytes in the object API) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
