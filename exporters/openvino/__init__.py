"""OpenVINO: everything edgeblood does with this format, in one place.

``export`` (IR converted from the ONNX export, fp32/fp16 weights), ``capture``
(openvino/model-capture.xml), ``metadata`` (the contract in ``rt_info``), ``runtime`` (the OpenVINO adapter)
and ``quantize`` (NNCF int8).

Nothing is imported here: ``edgeblood.targets``, ``edgeblood.runtimes`` and
``edgeblood.compression.methods`` import the modules by name, and the runtime adapter sits on a lower
floor than the exporter and the quantizer (tests/test_layers.py), so loading it never loads them.
"""
