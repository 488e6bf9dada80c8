"""Streams past one machine: each stream worker runs as a Ray actor, the detector as one shared
batched actor, and the service's front (HTTP, registry, outbox) stays where it was.

`ledger` (what a worker made and what the front has committed) and `push` (the RTMP ingest an
actor opens on its node) need no Ray; the other modules import it, so they are imported only
when a cluster is configured (`pip install 'swapwatch[ray]'`).
"""
