"""Architecture search spaces: blocks with closed-form parameter counts and the image network builder
(docs/architecture.md, "Architecture search")."""

from optbench.nas.blocks import ACTIVATIONS, BLOCKS, NORMS, block_parameters, make_block
from optbench.nas.image import ImageArchitecture

__all__ = ["ACTIVATIONS", "BLOCKS", "NORMS", "ImageArchitecture", "block_parameters", "make_block"]
