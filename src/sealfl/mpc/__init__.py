"""Secure two-party computation over Z_2^64 with a dealer of correlated randomness."""
