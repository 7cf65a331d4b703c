"""Core ML: everything edgeblood does with this format, in one place.

``export`` (.mlpackage ML program, spec inspection and validation), ``metadata`` (the contract
in ``user_defined_metadata``), ``runtime`` (the coremltools adapter; predictions need macOS) and
``quantize`` (int8 weights, k-means palettes).

Nothing is imported here: ``edgeblood.targets``, ``edgeblood.runtimes`` and
``edgeblood.compression.methods`` import the modules by name, and the runtime adapter sits on a lower
floor than the exporter and the quantizer (tests/test_layers.py), so loading it never loads them.
"""
