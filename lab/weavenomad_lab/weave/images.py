"""Weave's images on a lab node: what ``docker pull`` of a Weave release puts on a real node.

``OWNER/weave:VERSION`` (the router) and ``OWNER/weavedb:latest`` are the lab image (busybox)
under Weave's names, so ``docker inspect weave`` shows the router's image as on a real node.
``OWNER/weaveexec:VERSION`` is the lab image plus ``/home/weave/weave``, where the real weaveexec
image keeps the release's ``weave`` script: here the lab's ``weave`` command for that release and
node (a launcher of :mod:`weavenomad_lab.weave.shim` that says ``SCRIPT_VERSION="VERSION"`` as
the real script does). Whoever installs "the script from the image" installs that.

Every node gets weaveworks' 2.8.1 images at ``lab up`` (what provisioning pulls); other releases
(the fork's) come with ``weavenomad lab weave-images NODE OWNER VERSION``, the lab's registry.
"""

from __future__ import annotations

import io
import tarfile

from weavenomad_lab.errors import LabError
from weavenomad_lab.layout import LAB_IMAGE, LabLayout, NodeLayout
from weavenomad_lab.weave.flavours import WEAVEWORKS, Flavour, pinned_api

SCRIPT_PATH = "home/weave/weave"
DOCKER_TIMEOUT = 120


def launcher(lab: LabLayout, node: NodeLayout, flavour: Flavour) -> str:
    from weavenomad_lab.weave.daemon import shim_script

    return shim_script(lab, node, f"{flavour.version}+lab", flavour.owner)


def exec_image_tar(base: bytes, script: str) -> bytes:
    """The lab image's rootfs with ``/home/weave/weave`` added. Pure."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(base)) as source, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for member in source.getmembers():
            tar.addfile(member, source.extractfile(member) if member.isfile() else None)
        for folder in ("home", "home/weave"):
            entry = tarfile.TarInfo(folder)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(entry)
        data = script.encode()
        entry = tarfile.TarInfo(SCRIPT_PATH)
        entry.size, entry.mode = len(data), 0o755
        tar.addfile(entry, io.BytesIO(data))
    return out.getvalue()


def put_images(lab: LabLayout, node: NodeLayout, owner: str, version: str) -> Flavour:
    """Put Weave ``owner``/``version``'s images on ``node`` (idempotent)."""
    import docker
    import docker.errors

    flavour = Flavour(owner, version, pinned_api(version, None))
    client = docker.DockerClient(base_url=node.docker_host, timeout=DOCKER_TIMEOUT)
    try:
        try:
            client.images.get(flavour.exec_image)
            return flavour  # put there before: the launcher of this lab and node
        except docker.errors.ImageNotFound:
            pass
        base = client.images.get(LAB_IMAGE)
        for image in (flavour.router_image, flavour.db_image):
            repository, _, tag = image.rpartition(":")
            base.tag(repository, tag)
        repository, _, tag = flavour.exec_image.rpartition(":")
        rootfs = exec_image_tar(lab.image_tar.read_bytes(), launcher(lab, node, flavour))
        client.api.import_image_from_data(rootfs, repository=repository, tag=tag)
        client.images.get(flavour.exec_image)
    except (docker.errors.DockerException, OSError) as exc:
        raise LabError(f"cannot put Weave {owner} {version}'s images on {node.name}: {exc}",
                       hint="run 'weavenomad lab up'") from None
    finally:
        client.close()
    return flavour


def put_default_images(lab: LabLayout, node: NodeLayout) -> None:
    put_images(lab, node, WEAVEWORKS, "2.8.1")
