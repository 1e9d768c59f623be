"""``/v1/kv/``: Consul 1.4's KV endpoint (get, recurse, keys, raw; put with flags and cas;
delete with cas and recurse), including its status codes and texts.

Sessions do not exist in the lab, so ``?acquire`` and ``?release`` fail as Consul does for an
unknown session.
"""

from __future__ import annotations

from urllib.parse import urlencode

from weavenomad_lab.consul.http import (
    ConsulAPI,
    Failure,
    Request,
    Response,
    Route,
    json_body,
    parse_uint,
    text,
)
from weavenomad_lab.consul.state import StateError

PREFIX = "/v1/kv/"
#: Consul 1.4's maxKVSize
MAX_VALUE = 512 * 1024


def _conflicting(req: Request, *flags: str) -> None:
    if sum(req.has(f) for f in flags) > 1:
        encoded = urlencode(sorted((k, v) for k, vs in req.query.items() for v in vs))
        raise Failure(text(400, f"Conflicting flags: {encoded}"))


def _missing_key(key: str) -> None:
    if not key:
        raise Failure(text(400, "Missing key name"))


def _sniff(body: bytes) -> list[tuple[str, str]]:
    """Go's DetectContentType, for what a KV value can be: text or bytes."""
    if not body:
        return []
    try:
        decoded = body.decode()
    except UnicodeDecodeError:
        return [("Content-Type", "application/octet-stream")]
    binary = any(ord(c) < 32 and c not in "\t\n\r\f\x1b" for c in decoded[:512])
    return [("Content-Type", "application/octet-stream" if binary else
             "text/plain; charset=utf-8")]


def kv_endpoint(api: ConsulAPI, req: Request) -> Response:
    api.check_dc(req)
    key = req.suffix(PREFIX)
    if req.method == "GET":
        return _keys(api, req, key) if req.has("keys") else _get(api, req, key)
    if req.method == "PUT":
        return _put(api, req, key)
    return _delete(api, req, key)


def _get(api: ConsulAPI, req: Request, key: str) -> Response:
    recurse = req.has("recurse")
    if not recurse:
        _missing_key(key)
        if req.filtered:  # KVS.Get checks key:read and fails; only a listing is filtered
            return text(403, "Permission denied")
    answer = api.blocking_read(
        req, (lambda: api.state.kv_list(key)) if recurse else (lambda: api.state.kv_get(key)))
    headers = api.meta_headers(req, answer, consistency=False)
    if not answer.found or req.filtered:
        return Response(404, headers=headers)
    if req.has("raw") and not recurse:
        value = api.state.kv.get(key)
        body = (value.value or b"") if value else b""
        return Response(200, body, _sniff(body) + headers)
    return json_body(answer.body, req, headers)


def _keys(api: ConsulAPI, req: Request, prefix: str) -> Response:
    separator = req.param("separator", req.param("seperator"))  # Consul honours the typo too
    answer = api.blocking_read(req, lambda: api.state.kv_keys(prefix, separator))
    headers = api.meta_headers(req, answer, consistency=False)
    keys = [] if req.filtered else answer.body
    if not keys and prefix:
        return Response(404, headers=headers)
    return json_body(keys, req, headers)


def _put(api: ConsulAPI, req: Request, key: str) -> Response:
    _missing_key(key)
    _conflicting(req, "cas", "acquire", "release")
    flags = parse_uint(req.param("flags")) if req.has("flags") else 0
    cas = parse_uint(req.param("cas")) if req.has("cas") else None
    for lock_param in ("acquire", "release"):
        if req.has(lock_param):
            raise StateError(f'invalid session "{req.param(lock_param)}"')
    if req.content_length is not None and req.content_length > MAX_VALUE:
        response = text(413, f"Value exceeds {MAX_VALUE} byte limit")
        response.close = True
        return response
    body = req.body
    if len(body) > MAX_VALUE:  # a chunked body has no Content-Length to check first
        return text(413, f"Value exceeds {MAX_VALUE} byte limit")
    done = api.state.kv_put(key, body, flags, cas)
    return json_body(done if cas is not None else True, req)


def _delete(api: ConsulAPI, req: Request, key: str) -> Response:
    _conflicting(req, "recurse", "cas")
    recurse = req.has("recurse")
    if not recurse:
        _missing_key(key)
    cas = parse_uint(req.param("cas")) if req.has("cas") else None
    done = api.state.kv_delete(key, recurse=recurse, cas=cas)
    return json_body(done if cas is not None else True, req)


KV_ROUTES = (Route(PREFIX, ("GET", "PUT", "DELETE"), kv_endpoint, acl="filter"),)
