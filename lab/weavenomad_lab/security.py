"""The lab's ACL tokens and TLS material, and how lab code uses them (``lab up --acl --tls``).

A lab component, started before the simulated Consul and Nomad: ``up`` makes what
:class:`~weavenomad_lab.layout.LabSecurity` asks for under ``S/security`` (once; a second
``up`` keeps it), ``down`` removes it.

- ACLs: one management token per service (``nomad.token``, ``consul.token``, a random UUID as
  Nomad's and Consul's secret IDs are), mode 0600. The simulators read them from these files,
  never from their command line, so no token shows in a process list.
- TLS: a CA of the lab's own, a server certificate for both agents (``127.0.0.1``, every node's
  address, ``localhost``, ``server.dc1.consul``, ``server.global.nomad``) and a client
  certificate, all signed by that CA, made with ``cryptography`` (EC P-256: fast to make).

The helpers give lab code (readiness checks, ``lab status``, the Nomad agents' Consul client)
the same credentials an operator gets from ``lab env``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import ssl
import uuid
from pathlib import Path

from weavenomad_lab.layout import LabLayout, SecurityFiles

COMPONENT_NAME = "security"
SERVICES = ("nomad", "consul")
#: how long the lab's certificates are valid; a lab lives hours, not years
VALIDITY = datetime.timedelta(days=90)
SERVER_NAMES = ("localhost", "server.dc1.consul", "server.global.nomad")


# --------------------------------------------------------------------------------------------
# reads


def token(lab: LabLayout, service: str) -> str | None:
    """The management token of ``service`` ("nomad", "consul"); None when ACLs are off."""
    if not lab.security.acl:
        return None
    try:
        return lab.security_files.token(service).read_text().strip() or None
    except FileNotFoundError:
        return None


def server_context(lab: LabLayout) -> ssl.SSLContext | None:
    """The TLS context the simulated agents serve with; None when TLS is off."""
    if not lab.security.tls:
        return None
    files = lab.security_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.server_cert, files.server_key)
    if lab.security.verify_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(files.ca_cert)
    return context


def client_context(lab: LabLayout) -> ssl.SSLContext | None:
    """A TLS context that trusts the lab's CA and presents its client certificate."""
    if not lab.security.tls:
        return None
    files = lab.security_files
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    context.load_cert_chain(files.client_cert, files.client_key)
    return context


def requests_options(lab: LabLayout) -> dict:
    """``verify=``/``cert=``/``headers=`` for a requests call to the lab's Nomad or Consul
    (the headers depend on the service: use :func:`auth_headers`)."""
    if not lab.security.tls:
        return {}
    files = lab.security_files
    return {"verify": str(files.ca_cert), "cert": (str(files.client_cert), str(files.client_key))}


def auth_headers(lab: LabLayout, service: str) -> dict[str, str]:
    value = token(lab, service)
    if value is None:
        return {}
    return {"X-Nomad-Token" if service == "nomad" else "X-Consul-Token": value}


def tls_environment(lab: LabLayout) -> dict[str, str]:
    """The CA and client certificate variables of the nomad and consul CLIs (paths only)."""
    if not lab.security.tls:
        return {}
    files = lab.security_files
    env = {}
    for prefix in ("NOMAD", "CONSUL"):
        env[f"{prefix}_CACERT"] = str(files.ca_cert)
        env[f"{prefix}_CLIENT_CERT"] = str(files.client_cert)
        env[f"{prefix}_CLIENT_KEY"] = str(files.client_key)
    return env


def token_environment(lab: LabLayout) -> dict[str, str]:
    """``NOMAD_TOKEN``/``CONSUL_HTTP_TOKEN`` -> the file that holds it (ACLs on only)."""
    if not lab.security.acl:
        return {}
    files = lab.security_files
    return {"NOMAD_TOKEN": str(files.token("nomad")),
            "CONSUL_HTTP_TOKEN": str(files.token("consul"))}


# --------------------------------------------------------------------------------------------
# serving


#: a client that connects and says nothing must not hold a listener's thread for long
HANDSHAKE_TIMEOUT = 10.0
#: what Go's net/http (>= 1.12, so Nomad 1.0) answers a plain HTTP request on a TLS port
GO_PLAIN_HTTP_ANSWER = (b"HTTP/1.0 400 Bad Request\r\n\r\n"
                        b"Client sent an HTTP request to an HTTPS server.\n")
_TLS_HANDSHAKE_RECORD = 0x16


def accept_tls(context: ssl.SSLContext, sock, plain_http_answer: bytes | None = None):
    """The server side of TLS on an accepted connection, run on the connection's own thread:
    the handshake (a failed one closes the connection, as Go's server does), or None.

    A client that speaks plain HTTP gets ``plain_http_answer`` when given (Nomad), else the
    connection is just closed (Consul 1.4 was built with a Go that did that)."""
    import socket

    try:
        sock.settimeout(HANDSHAKE_TIMEOUT)
        first = sock.recv(1, socket.MSG_PEEK)
        if first and first[0] != _TLS_HANDSHAKE_RECORD:
            if plain_http_answer:
                _drain_head(sock)  # unread bytes would turn our close into a reset
                sock.sendall(plain_http_answer)
                sock.shutdown(socket.SHUT_WR)
            sock.close()
            return None
        wrapped = context.wrap_socket(sock, server_side=True)
        wrapped.settimeout(None)
        return wrapped
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        try:
            sock.close()
        except OSError:
            pass
        return None


def _drain_head(sock, limit: int = 65536) -> None:
    """Read a plain HTTP request's head (and what came with it) so that closing the
    connection does not reset it before the client reads the answer."""
    received = b""
    sock.settimeout(0.5)
    while b"\r\n\r\n" not in received and len(received) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk


# --------------------------------------------------------------------------------------------
# making the material


def _write(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (never readable by others, not even
    briefly), atomically."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "weavenomad lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def make_certificates(lab_name: str, addresses: list[str]) -> dict[str, bytes]:
    """PEM texts of a fresh CA, a server certificate for ``addresses`` (plus 127.0.0.1 and
    the agents' usual names) and a client certificate. Pure but for the randomness."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    ca_key = _key()
    ca_name = _name(f"weavenomad lab {lab_name} CA")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, usages: list, names: list | None):
        key = _key()
        builder = (
            x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    ips = dict.fromkeys(["127.0.0.1", *addresses])
    server_names = [x509.DNSName(n) for n in SERVER_NAMES] + [
        x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    server_key, server_cert = leaf(
        "server.global.nomad",
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], server_names)
    client_key, client_cert = leaf("weavenomad lab client", [ExtendedKeyUsageOID.CLIENT_AUTH],
                                   None)
    return {
        "ca_cert": _pem_cert(ca_cert), "ca_key": _pem_key(ca_key),
        "server_cert": _pem_cert(server_cert), "server_key": _pem_key(server_key),
        "client_cert": _pem_cert(client_cert), "client_key": _pem_key(client_key),
    }


def prepare(lab: LabLayout) -> None:
    """Make the tokens and certificates the lab's security asks for, keeping existing ones."""
    files: SecurityFiles = lab.security_files
    if not lab.security.enabled:
        return
    files.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(files.dir, 0o700)
    if lab.security.acl:
        for service in SERVICES:
            if not files.token(service).exists():
                _write(files.token(service), (str(uuid.uuid4()) + "\n").encode(), 0o600)
    if lab.security.tls and not all(p.exists() for p in (
            files.ca_cert, files.server_cert, files.server_key, files.client_cert,
            files.client_key)):
        files.tls_dir.mkdir(mode=0o700, exist_ok=True)
        pems = make_certificates(lab.name, [n.host_ip for n in lab.nodes])
        for name, data in pems.items():
            secret = name.endswith("_key")
            _write(getattr(files, name), data, 0o600 if secret else 0o644)


class SecurityComponent:
    name = COMPONENT_NAME

    def up(self, lab: LabLayout) -> None:
        prepare(lab)

    def down(self, lab: LabLayout) -> None:
        shutil.rmtree(lab.security_files.dir, ignore_errors=True)

    def status(self, lab: LabLayout) -> list:
        from weavenomad_lab.core import PartStatus

        security = lab.security
        if not security.enabled:
            return []
        parts = []
        if security.acl:
            parts.append("ACLs on")
        if security.tls:
            parts.append("TLS on" + (", client certificate required"
                                     if security.verify_client else ""))
        files = lab.security_files
        present = all(p.exists() for p in (
            *(files.token(s) for s in SERVICES if security.acl),
            *((files.ca_cert, files.client_cert) if security.tls else ())))
        detail = ", ".join(parts) + ("" if present else "; files missing: run 'weavenomad lab "
                                                          "up' again")
        return [PartStatus(self.name, None, present, str(files.dir), detail)]


COMPONENT = SecurityComponent()
