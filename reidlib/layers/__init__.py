"""Building blocks shared by the models: pooling, the BN neck, Batch DropBlock, init helpers, Grad-CAM,
spatial and channel attention.

Import from the submodules (``reidlib.layers.pooling`` ...); this package imports nothing itself so that
each block stays independent.
"""
