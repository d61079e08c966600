"""Paillier homomorphic encryption: keys, fixed-point vectors, packing, encrypted linear algebra.

Hazardous-materials layer: these are sharp tools. Workloads in :mod:`sealfl.fl` combine them safely.
"""
