"""The runtimes a classifier runs in; a module of its own so that the CLI lists them without importing torch.

- ``torch``: PyTorch, the only one with gradients (saliency maps, attacks, training);
- ``onnx``: the same float network exported to ONNX Runtime (faster on CPU);
- ``onnx-int8``: ONNX Runtime on an int8 graph (``ferlab export --int8``; fastest on CPUs with VNNI).
"""

BACKENDS = ("torch", "onnx", "onnx-int8")
