"""The address a cluster's push ingest is published at (needs no Ray)."""

from __future__ import annotations

from swapwatch.cluster.push import publish_host


def test_a_cluster_push_ingest_is_published_where_it_listens() -> None:
    """`ingest.rtmp.host` set: the URL names that address (the ingest listens only there);
    unset or a wildcard: the node's IP."""
    assert publish_host("127.0.0.1", "192.0.2.2") == "127.0.0.1"
    assert publish_host("10.1.2.3", "192.0.2.2") == "10.1.2.3"
    assert publish_host("0.0.0.0", "192.0.2.2") == "192.0.2.2"
    assert publish_host("::", "fd00::2") == "fd00::2"
