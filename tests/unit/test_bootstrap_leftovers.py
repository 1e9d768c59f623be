"""What Weave leaves on a node (day-two/1d: a launch whose router died) and the words for what
was removed."""

from weavenomad.bootstrap.leftovers import (
    Leftovers,
    WeaveContainer,
    is_weave_container,
    proxy_sockets,
    removed,
)

#: the recorded router's Args (day-two/1d-04-docker-inspect-weave.stdout), abridged
ROUTER_ARGS = ("--port", "6783", "--nickname", "vm", "--ipalloc-range", "10.32.0.0/33",
               "--http-addr", "127.0.0.1:6784", "-H", "unix:///var/run/weave/weave.sock",
               "--plugin", "--proxy", "--no-dns", "--no-default-ipalloc")


def test_the_proxy_socket_comes_from_the_routers_flags():
    assert proxy_sockets(ROUTER_ARGS) == ["/var/run/weave/weave.sock"]
    assert proxy_sockets(["-H=unix:///run/w.sock", "-H", "tcp://0.0.0.0:12375"]) == [
        "/run/w.sock"]
    assert proxy_sockets(["-H"]) == []


def test_weaves_containers_by_name():
    assert all(map(is_weave_container, ("weave", "weavedb", "weavevolumes-2.8.1",
                                        "weaveplugin")))
    assert not any(map(is_weave_container, ("weaveworks", "web", "weave-2")))


def test_what_a_reset_removed_in_words():
    before = Leftovers((WeaveContainer("weave", "exited", 1, ROUTER_ARGS),
                        WeaveContainer("weavedb", "created"),
                        WeaveContainer("weavevolumes-2.8.1", "created")),
                       True, ("/var/run/weave/weave.sock",))
    assert removed(before, Leftovers()) == [
        "container weave (exited (1))", "container weavedb (created)",
        "container weavevolumes-2.8.1 (created)", "the weave bridge",
        "the stale socket /var/run/weave/weave.sock"]
    kept = Leftovers(before.containers[1:2], True, before.stale_sockets)
    assert removed(before, kept) == ["container weave (exited (1))",
                                     "container weavevolumes-2.8.1 (created)"]
