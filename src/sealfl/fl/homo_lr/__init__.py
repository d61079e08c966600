"""homo-lr: horizontal logistic regression on a Paillier-encrypted model with an attested PS.

The pure mathematics (:mod:`.algorithm`, :mod:`.evaluation`, :mod:`.plaintext`) is kept apart
from the encrypted step and from the parameter-server and worker processes.
"""
