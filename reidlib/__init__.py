"""reidlib: a small, tested PyTorch library for person re-identification.

Layers, lowest first (imports only point down):

1. ``reidlib.layers``, ``reidlib.figures.style`` - building blocks.
2. ``reidlib.models``, ``reidlib.losses``, ``reidlib.data``, ``reidlib.evaluation``.
3. ``reidlib.engine``, ``reidlib.explain``.
4. ``reidlib.recipes`` - per-paper experiment recipes and configs.
5. ``reidlib.cli`` and the notebooks.
"""

__version__ = "0.1.0"
