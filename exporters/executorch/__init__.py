"""ExecuTorch: everything edgeblood does with this format, in one place.

``export`` (.pte delegated to XNNPACK, batch-1/64 methods), ``metadata`` (the contract as a
constant method), ``runtime`` (the pybindings adapter) and ``quantize`` (PT2E int8).

Nothing is imported here: ``edgeblood.targets``, ``edgeblood.runtimes`` and
``edgeblood.compression.methods`` import the modules by name, and the runtime adapter sits on a lower
floor than the exporter and the quantizer (tests/test_layers.py), so loading it never loads them.
"""
