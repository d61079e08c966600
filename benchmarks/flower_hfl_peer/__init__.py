"""The Flower 1.42 app that ``sealfl bench hfl --flower-python PATH`` runs as its peer.

Run only by the peer interpreter (one that has ``flwr==1.42.*`` and torch), inside Flower's
deployment engine: :mod:`.server_app` is the ServerApp the SuperLink starts, :mod:`.client_app`
the ClientApp every SuperNode starts for each message, and :mod:`.task` the part that needs
only torch and numpy (and sealfl's own model and data code, imported from sealfl's source
tree by path, so both systems train literally the same network on the same shard files).
``benchmarks/flower_hfl.py`` packs this directory into a Flower app and drives the run.
"""
