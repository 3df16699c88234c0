"""Slow, obvious float64 NumPy/SciPy reference of S4 and SaShiMi.

Every function computes one equation with the paper's symbols; loops are
allowed, speed is not a goal. The fast `sashimi` package is checked against it.
"""
