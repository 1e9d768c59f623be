"""The weavewait volume: what the proxy mounts at ``/w`` (read-only) in every container it
attaches, and whose ``/w/w`` becomes the container's entrypoint.

Real Weave ships a static Go binary there. The lab's is image-independent too: a static busybox
(Debian's busybox-static) next to a script ``w`` run by that busybox. It waits until ``ethwe``
has an IPv4 address, as weavewait does, then ``exec``s the original entrypoint and command, so
the application never starts before its Weave address exists.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from weavenomad_lab.errors import LabError

MOUNT_POINT = "/w"
ENTRYPOINT = "/w/w"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
#: seconds weavewait waits for ethwe before giving up (the proxy attaches within milliseconds)
WAIT_SECONDS = 30

# The wait polls: a container has no event source for "an address appeared" that a busybox
# script can block on, and the interface normally exists before the first check completes.
SCRIPT = f"""#!/w/busybox sh
# weavewait (weavenomad lab): wait for ethwe to carry an IPv4 address, then run the command.
i=0
while ! /w/busybox ip -4 -o addr show dev ethwe 2>/dev/null | /w/busybox grep -q inet; do
    i=$((i + 1))
    if [ "$i" -gt {WAIT_SECONDS * 50} ]; then
        echo "weavewait: ethwe did not get an address in {WAIT_SECONDS}s" >&2
        exit 1
    fi
    /w/busybox usleep 20000
done
if [ "$#" -eq 0 ]; then
    echo "weavewait: no command given" >&2
    exit 1
fi
exec "$@"
"""


def find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    raise LabError("busybox is not installed", hint="apt-get install busybox-static")


def prepare(volume_dir: Path) -> Path:
    """Create (or refresh) the volume directory; returns it. Idempotent."""
    volume_dir.mkdir(parents=True, exist_ok=True)
    busybox = volume_dir / "busybox"
    source = find_busybox()
    if not busybox.exists() or busybox.stat().st_size != source.stat().st_size:
        tmp = volume_dir / ".busybox.tmp"
        shutil.copyfile(source, tmp)
        tmp.chmod(0o755)
        os.replace(tmp, busybox)
    script = volume_dir / "w"
    if not script.exists() or script.read_text() != SCRIPT:
        tmp = volume_dir / ".w.tmp"
        tmp.write_text(SCRIPT)
        tmp.chmod(0o755)
        os.replace(tmp, script)
    return volume_dir


def bind(volume_dir: Path) -> str:
    """The Docker ``Binds`` entry that mounts the volume as Weave's proxy does."""
    return f"{volume_dir}:{MOUNT_POINT}:ro"
