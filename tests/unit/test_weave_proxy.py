"""The emulated Weave proxy against a fake dockerd on a unix socket: which containers it
attaches, what it changes in a create, and that everything else passes byte for byte
(keep-alive, chunked streams, hijacked connections, the client's end of stream)."""

import asyncio
import json
from pathlib import Path

import pytest
from weavenomad_lab.weave import proxy, wire

from weavenomad.errors import ValidationError

IMAGE = {"Config": {"Entrypoint": None, "Cmd": ["/bin/httpd", "-f"]}}


@pytest.mark.parametrize(
    ("mode", "env", "no_default", "expected"),
    [
        ("", ["WEAVE_CIDR=net:10.32.1.0/24"], False, ["net:10.32.1.0/24"]),
        ("default", [], False, []),
        ("bridge", ["A=1"], True, None),  # --no-default-ipalloc: only with WEAVE_CIDR
        ("none", ["WEAVE_CIDR=net:default ip:10.32.0.9/24"], True,
         ["net:default", "ip:10.32.0.9/24"]),
        ("host", ["WEAVE_CIDR=net:10.32.1.0/24"], False, None),
        ("container:abc", ["WEAVE_CIDR=net:10.32.1.0/24"], False, None),
        ("tenant-net", [], False, None),
        ("", ["WEAVE_CIDR=none"], False, None),
    ],
)
def test_which_containers_are_attached(mode, env, no_default, expected):
    assert proxy.weave_cidrs(mode, env, no_default) == expected


class FakeDocker:
    """Records what reaches it; answers from ``self.answers[(method, path)]``."""

    def __init__(self, socket_path: Path):
        self.path = socket_path
        self.received: list[tuple[wire.Head, bytes]] = []
        self.eof = asyncio.Event()

    async def start(self):
        self.server = await asyncio.start_unix_server(self.connection, path=str(self.path))

    async def connection(self, reader, writer):
        while True:
            head = await wire.read_head(reader)
            if head is None:
                self.eof.set()
                break
            body = await wire.read_body(reader, head, wire.request_body_kind(head), 1 << 20)
            self.received.append((head, body))
            path = head.target.split("?")[0]
            if path.endswith("/events"):
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nfirst\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"6;ext=1\r\nsecond\r\n")
                await writer.drain()
                await reader.read(1)  # until the client goes away, as dockerd does
                self.eof.set()
                break
            if path.endswith("/attach"):
                writer.write(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: "
                             b"application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\n"
                             b"Upgrade: tcp\r\n\r\n")
                while data := await reader.read(100):
                    writer.write(data.upper())
                    await writer.drain()
                writer.write(b"bye")
                writer.write_eof()
                break
            if path.startswith("/images/"):
                answer = json.dumps(IMAGE).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer))
                writer.write(answer)
            elif path.endswith("/start"):
                writer.write(b"HTTP/1.1 204 No Content\r\nApi-Version: 1.41\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{\"Id\":1}\n")
            await writer.drain()
        writer.close()


@pytest.fixture
def run(tmp_path):
    """run(scenario): start a fake dockerd and the proxy, then ``await scenario(env)``."""

    def runner(scenario, attach=None):
        async def main():
            docker = FakeDocker(tmp_path / "docker.sock")
            await docker.start()
            attached: list[str] = []

            async def default_attach(ref):
                attached.append(ref)

            p = proxy.Proxy(str(docker.path), Path("/lab/weavewait"), attach or default_attach,
                            no_default_ipalloc=True)
            server = await p.serve(tmp_path / "weave.sock")
            try:
                reader, writer = await asyncio.open_unix_connection(str(tmp_path / "weave.sock"))
                env = dict(docker=docker, reader=reader, writer=writer, attached=attached)
                return await asyncio.wait_for(scenario(env), 10)
            finally:
                server.close()
                docker.server.close()

        return asyncio.run(main())

    return runner


async def exchange(env, raw: bytes) -> tuple[wire.Head, bytes]:
    env["writer"].write(raw)
    await env["writer"].drain()
    head = await wire.read_head(env["reader"])
    kind = wire.response_body_kind(head, raw.split(b" ")[0].decode())
    return head, await wire.read_body(env["reader"], head, kind, 1 << 20)


def test_create_gets_weavewait_and_the_image_command(run):
    create = {"Image": "bb:local", "Env": ["WEAVE_CIDR=net:10.32.1.0/24"],
              "HostConfig": {"Binds": ["/old:/w", "/data:/data"], "NetworkMode": "default"}}
    body = json.dumps(create).encode()
    request = (b"POST /v1.41/containers/create?name=x HTTP/1.1\r\nHost: docker\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    async def scenario(env):
        head, answer = await exchange(env, request)
        return head, answer, env["docker"].received

    head, answer, received = run(scenario)
    assert head.status == 201 and answer == b'{"Id":1}\n'
    sent_head, sent = [r for r in received if "create" in r[0].target][0]
    doc = json.loads(sent)
    assert doc["Entrypoint"] == ["/w/w"]
    assert doc["Cmd"] == ["/bin/httpd", "-f"]  # from the image, as Weave does
    assert doc["HostConfig"]["Binds"] == ["/data:/data", "/lab/weavewait:/w:ro"]
    assert sent_head.content_length == len(sent)
    assert sent_head.get("Host") == "docker"


def test_create_left_alone_is_forwarded_byte_for_byte(run):
    body = b'{"Image": "bb:local", "Env": ["WEAVE_CIDR=none"],  "Cmd": ["true"]}'
    request = (b"POST /containers/create HTTP/1.1\r\nhost: docker\r\nX-Odd:  spaced \r\n"
               b"Content-Length: %d\r\n\r\n" % len(body) + body)

    async def scenario(env):
        await exchange(env, request)
        return env["docker"].received

    (head, sent), = run(scenario)
    assert head.raw + sent == request


def test_create_without_any_command_is_refused_like_weave(run):
    IMAGE["Config"]["Cmd"] = None
    try:
        body = b'{"Image": "bb:local", "Env": ["WEAVE_CIDR=net:default"]}'
        request = b"POST /containers/create HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body)

        async def scenario(env):
            return await exchange(env, request + body)

        head, answer = run(scenario)
    finally:
        IMAGE["Config"]["Cmd"] = ["/bin/httpd", "-f"]
    assert head.status == 500 and answer == b"No command specified\n"


def test_start_attaches_before_answering_and_keep_alive_works(run):
    async def scenario(env):
        head, _ = await exchange(env, b"POST /v1.41/containers/abc/start HTTP/1.1\r\n\r\n")
        attached_before_second = list(env["attached"])
        second, body = await exchange(env, b"GET /v1.41/containers/json HTTP/1.1\r\n\r\n")
        return head, attached_before_second, second, body

    head, attached, second, body = run(scenario)
    assert head.status == 204 and head.get("Api-Version") == "1.41"
    assert attached == ["abc"]
    assert second.status == 201 and body == b'{"Id":1}\n'


def test_a_failed_attach_turns_the_start_into_a_500(run):
    async def refuse(ref):
        raise ValidationError("invalid WEAVE_CIDR token 'net:x'")

    async def scenario(env):
        return await exchange(env, b"POST /containers/abc/restart HTTP/1.1\r\n\r\n")

    head, body = run(scenario, attach=refuse)
    assert head.status == 500
    assert head.get("Content-Type") == "text/plain; charset=utf-8"
    assert body == b"invalid WEAVE_CIDR token 'net:x'\n"


def test_event_stream_passes_chunk_by_chunk_and_ends_with_the_client(run):
    async def scenario(env):
        env["writer"].write(b"GET /events?since=1 HTTP/1.1\r\nHost: d\r\n\r\n")
        await env["writer"].drain()
        head = await wire.read_head(env["reader"])
        first = await env["reader"].readuntil(b"first\r\n")  # arrives before the rest exists
        second = await env["reader"].readuntil(b"second\r\n")
        env["writer"].close()  # the client leaves: dockerd must see it
        await asyncio.wait_for(env["docker"].eof.wait(), 5)
        return head, first + second

    head, body = run(scenario)
    assert head.raw == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert body == b"5\r\nfirst\r\n6;ext=1\r\nsecond\r\n"


def test_hijacked_attach_is_a_raw_two_way_stream_with_half_close(run):
    async def scenario(env):
        env["writer"].write(b"POST /containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\n"
                            b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        await env["writer"].drain()
        head = await wire.read_head(env["reader"])
        env["writer"].write(b"hello ")
        await env["writer"].drain()
        echoed = await env["reader"].readexactly(6)
        env["writer"].write(b"world")
        env["writer"].write_eof()  # stdin closed: output must still arrive
        rest = await env["reader"].read()
        return head, echoed + rest

    head, output = run(scenario)
    assert head.status == 101
    assert output == b"HELLO WORLDbye"
