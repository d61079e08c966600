"""Sealed files at rest (chunked AES-256-GCM) and the keys that open them.

The safe recipe on top of the hazardous layers: use it to keep models and checkpoints at rest.
"""
