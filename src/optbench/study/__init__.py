"""optbench.study"""
