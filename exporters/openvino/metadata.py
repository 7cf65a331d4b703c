"""The contract inside an OpenVINO IR: ``rt_info['edgeblood'][key]``, one string per key of ``edgeblood.contract``.

Written by the exporter, the capture variant and the NNCF quantizer (``precision``); read back by the
OpenVINO adapter from the ``ov.Model`` it compiles.
"""

from __future__ import annotations

from typing import Any

RT_INFO_SECTION = "edgeblood"


def write_rt_info(model: Any, metadata: dict[str, str]) -> None:
    """Store the contract under rt_info['edgeblood'][key] (read back by :func:`read_openvino_metadata`)."""
    for key, value in metadata.items():
        model.set_rt_info(str(value), [RT_INFO_SECTION, key])


def read_openvino_metadata(model: Any) -> dict[str, Any]:
    """The contract stored under rt_info['edgeblood'] of an ov.Model (empty when absent)."""
    from edgeblood.contract import decode_metadata

    if not model.has_rt_info(["edgeblood"]):
        return {}
    keys = model.get_rt_info(["edgeblood"]).astype(dict)
    return decode_metadata({str(k): model.get_rt_info(["edgeblood", str(k)]).astype(str) for k in keys})
