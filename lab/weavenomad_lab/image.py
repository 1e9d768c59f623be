"""The lab's container image ``bb:local``: Debian's static busybox and one symlink per applet.
Each node also gets weaveworks' Weave 2.8.1 images made of it (:mod:`weavenomad_lab.weave.images`).

Built once per lab as a tar (``S/image/bb.tar``) and ``docker import``ed into each node's
dockerd, with no ENV or CMD, like the image the recorded job ran (``bb:local``,
``/bin/httpd -f -p 8081 -h /``). busybox must be the static build: the image holds no libc.
"""

from __future__ import annotations

import io
import shutil
import struct
import tarfile
from pathlib import Path

from weavenomad_lab.core import PartStatus
from weavenomad_lab.dockerd import for_each_node
from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LAB_IMAGE, LabLayout, NodeLayout
from weavenomad_lab.process import run

DOCKER_TIMEOUT = 60
_PT_INTERP = 3


def find_busybox() -> Path:
    found = shutil.which("busybox")
    if not found:
        raise LabError("busybox is not installed", hint="apt-get install busybox-static")
    path = Path(found).resolve()
    if not is_static_elf(path.read_bytes()[:65536]):
        raise LabError(f"{path} is dynamically linked; the lab image needs a static busybox",
                       hint="apt-get install busybox-static")
    return path


def is_static_elf(head: bytes) -> bool:
    """Whether an ELF image (its first bytes) has no program interpreter, i.e. needs no libc."""
    if head[:4] != b"\x7fELF":
        return False
    is64, order = head[4] == 2, "<" if head[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(order + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 0x36)
    else:
        phoff, = struct.unpack_from(order + "I", head, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", head, 0x2A)
    for i in range(phnum):
        offset = phoff + i * phentsize
        if offset + 4 > len(head):
            break
        kind, = struct.unpack_from(order + "I", head, offset)
        if kind == _PT_INTERP:
            return False
    return True


def applets(busybox: Path) -> list[str]:
    names = run([str(busybox), "--list"], timeout=10).split()
    return sorted(set(names) - {"busybox"})


def rootfs_tar(busybox_bytes: bytes, applet_names: list[str]) -> bytes:
    """A rootfs: /bin/busybox, /bin/<applet> -> busybox, and /tmp. Same input, same bytes."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777)):
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode = tarfile.DIRTYPE, mode
            tar.addfile(entry)
        binary = tarfile.TarInfo("bin/busybox")
        binary.size, binary.mode = len(busybox_bytes), 0o755
        tar.addfile(binary, io.BytesIO(busybox_bytes))
        for applet in applet_names:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
    return out.getvalue()


def build_image_tar(target: Path) -> None:
    if target.exists():
        return
    busybox = find_busybox()
    data = rootfs_tar(busybox.read_bytes(), applets(busybox))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(target)


def _client(node: NodeLayout):
    import docker

    return docker.DockerClient(base_url=node.docker_host, timeout=DOCKER_TIMEOUT)


def image_id(node: NodeLayout) -> str | None:
    """The id of the lab image in the node's dockerd, None when it is not there."""
    import docker.errors

    client = _client(node)
    try:
        return client.images.get(LAB_IMAGE).id
    except docker.errors.ImageNotFound:
        return None
    finally:
        client.close()


def import_image(lab: LabLayout, node: NodeLayout) -> None:
    if image_id(node) is not None:
        return
    repository, _, tag = LAB_IMAGE.rpartition(":")
    client = _client(node)
    try:
        client.api.import_image(src=str(lab.image_tar), repository=repository, tag=tag)
    finally:
        client.close()
    if image_id(node) is None:
        raise LabError(f"'docker import' of {lab.image_tar} did not create {LAB_IMAGE} on "
                       f"{node.name}; see {node.docker_dir / 'dockerd.log'}")


def node_status(lab: LabLayout, node: NodeLayout) -> PartStatus:
    try:
        found = image_id(node)
    except Exception as exc:  # dockerd down: reported by its own row too
        return PartStatus("image", node.name, False, None, f"cannot ask dockerd: {exc}")
    if found is None:
        return PartStatus("image", node.name, False, None, f"{LAB_IMAGE} missing")
    return PartStatus("image", node.name, True, None, f"{LAB_IMAGE} {found[:19]}")


class Image:
    name = "image"

    def up(self, lab: LabLayout) -> None:
        from weavenomad_lab.weave.images import put_default_images

        build_image_tar(lab.image_tar)
        for_each_node(lab, import_image)
        for_each_node(lab, put_default_images)

    def down(self, lab: LabLayout) -> None:
        # the imported copies go with each node's dockerd data-root
        lab.image_tar.unlink(missing_ok=True)
        lab.image_tar.with_suffix(".partial").unlink(missing_ok=True)
        if lab.image_tar.parent.is_dir() and not any(lab.image_tar.parent.iterdir()):
            lab.image_tar.parent.rmdir()

    def status(self, lab: LabLayout) -> list[PartStatus]:
        return for_each_node(lab, node_status)


COMPONENT = Image()
