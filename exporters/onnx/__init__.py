"""ONNX: everything edgeblood does with this format, in one place.

``export`` (model.onnx, the target record), ``capture`` (model-capture.onnx, framing in the graph),
``metadata`` (the contract in ``metadata_props``), ``runtime`` (the ONNX Runtime adapter) and ``quantize``
(ONNX Runtime static/dynamic int8 and fp16).

Nothing is imported here: ``edgeblood.targets``, ``edgeblood.runtimes`` and
``edgeblood.compression.methods`` import the modules by name, and the runtime adapter sits on a lower
floor than the exporter and the quantizer (tests/test_layers.py), so loading it never loads them.
"""
