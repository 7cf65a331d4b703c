"""LiteRT: everything edgeblood does with this format, in one place.

``export`` (.tflite with batch-1/64 signatures), ``metadata`` (the contract in the flatbuffer's
``Model.metadata``), ``runtime`` (the interpreter adapter) and ``quantize`` (ai-edge-quantizer int8).

Nothing is imported here: ``edgeblood.targets``, ``edgeblood.runtimes`` and
``edgeblood.compression.methods`` import the modules by name, and the runtime adapter sits on a lower
floor than the exporter and the quantizer (tests/test_layers.py), so loading it never loads them.
"""
