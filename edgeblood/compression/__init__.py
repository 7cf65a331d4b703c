"""Compression: post-training quantization (ONNX Runtime, OpenVINO/NNCF, Core ML) and pruning.

Every compressed variant is re-measured on the full test split with its own runtime
(``edgeblood.compression.measure``); nothing here assumes that accuracy survives compression.
Modules import their heavy libraries lazily, so importing this package is cheap.
"""
