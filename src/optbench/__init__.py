"""optbench: compare neural-network training methods fairly and fast."""
__version__ = "0.1.0"
