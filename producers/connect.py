"""Redis clients from a URL, sync and async: the one place cio-fleet makes them.

``redis://`` and ``rediss://`` (and ``unix://``) name one Redis node; ``redis+cluster://host:port`` and
``rediss+cluster://host:port`` name a Redis Cluster by any one of its nodes, and give redis-py's cluster client,
which follows the cluster's slot map (``MOVED``/``ASK``) and sends each command, script and transaction to the node
that owns its keys. Every key a script or transaction touches is in one slot (``producers.keys``: the workspace is
the slot unit), which is what Redis Cluster requires.

The cluster client is returned typed as ``redis.Redis`` (``redis.asyncio.Redis``): it answers the same commands
cio-fleet sends, and the callers never branch on the kind of client except through :func:`is_cluster`.
"""

from __future__ import annotations

from typing import Any, Final, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

#: URL schemes that mean Redis Cluster, and the scheme of one of its nodes.
CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
#: URL schemes that mean one Redis node.
NODE_SCHEMES: Final = ("redis", "rediss", "unix")


class RedisUrlError(ValueError):
    """A Redis URL cio-fleet cannot use; the message names the problem, never the password."""


def scheme_of(url: str) -> str:
    """The URL's scheme, lower-cased."""
    return urlsplit(url).scheme.lower()


def is_cluster_url(url: str) -> bool:
    """Whether the URL names a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``)."""
    return scheme_of(url) in CLUSTER_SCHEMES


def node_url(url: str) -> str:
    """The cluster URL as redis-py's cluster client reads it: the scheme of one node (``redis://host:port``).

    Raises:
        RedisUrlError: The URL is not a Redis URL, or a cluster URL names a database other than 0.
    """
    scheme = scheme_of(url)
    if scheme in NODE_SCHEMES:
        return url
    if scheme not in CLUSTER_SCHEMES:
        known = ", ".join(f"{name}://" for name in (*NODE_SCHEMES, *CLUSTER_SCHEMES))
        raise RedisUrlError(f"Redis URL scheme {scheme + '://' if scheme else '(none)'!r} is not one of {known}")
    parts = urlsplit(url)
    if parts.path.strip("/") not in ("", "0"):
        raise RedisUrlError("a Redis Cluster has only database 0: remove the database from the cluster URL")
    if not parts.hostname:
        raise RedisUrlError("a Redis Cluster URL must name one of the cluster's nodes (host:port)")
    return parts._replace(scheme=CLUSTER_SCHEMES[scheme], path="").geturl()


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a cluster client (sync or async)."""
    return isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)


def sync_client(url: str, **options: Any) -> redis.Redis:
    """A client of the Redis (or Redis Cluster) the URL names; ``options`` go to each node's connections.

    Raises:
        RedisUrlError: The URL cannot be used.
    """
    target = node_url(url)
    if is_cluster_url(url):
        return cast("redis.Redis", redis.cluster.RedisCluster.from_url(target, **options))
    return redis.Redis.from_url(target, **options)


def async_client(url: str, **options: Any) -> redis.asyncio.Redis:
    """``sync_client`` for ``redis.asyncio``."""
    target = node_url(url)
    if is_cluster_url(url):
        return cast("redis.asyncio.Redis", redis.asyncio.cluster.RedisCluster.from_url(target, **options))
    return redis.asyncio.Redis.from_url(target, **options)
