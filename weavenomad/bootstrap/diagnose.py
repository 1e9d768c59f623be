"""Why Weave does not run here, and fixes that work on this node (issue 22, "Diagnose"). Pure.

A node whose Docker was upgraded past the API its Weave speaks has a weave container that
crash-loops ("FATA: Could not start proxy: API error (400): client version 1.18 is too old",
recorded: docker26/V00), and every check that depends on Weave fails with it. Their usual fix,
``weavenomad bootstrap``, would refuse on such a node (its preflight fails), so the fix shown is
the cause's: :func:`redirect_fixes`. Which Weave is in play is :func:`weave_in_play`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from weavenomad.bootstrap import versions as vs
from weavenomad.bootstrap.checks import FAIL, PASS, Check
from weavenomad.bootstrap.leftovers import WeaveContainer

#: Docker's words when it refuses an API version (docker26/A07, V00)
API_REFUSAL = re.compile(r"client version (?P<client>[\d.]+) is too old\. Minimum supported API "
                         r"version is (?P<floor>[\d.]+)")
#: what keeps Weave from running, in the order to fix it
CAUSES = ("docker", "weave-command", "docker-weave-api", "weave-container")
#: checks that fail because Weave does not run
WEAVE_DEPENDENT = ("weave-router", "weave-peers", "weave-ipam", "weave-exposed",
                   "nomad-docker-endpoint")
BOOTSTRAP = "weavenomad bootstrap"
GUARD_ENSURE = "weavenomad guard ensure"


def weave_in_play(report: dict | None, router: WeaveContainer | None,
                  configured: str | None, command_versions: dict | None,
                  for_launch: bool) -> str | None:
    """The Weave release whose API matters: the one that runs or crashes here (its report,
    else its router container's image); for a launch (bootstrap, when Weave does not run), the
    one the launch would run (the configured WEAVE_VERSION, else the weave script's)."""
    running = vs.running_weave((report or {}).get("Version"),
                               router.image if router is not None else None)
    launching = vs.launching_weave(configured, command_versions)
    if for_launch:
        return running if report is not None and running else launching
    return running or launching


def check_weave_container(router: WeaveContainer | None, last_words: str | None,
                          api_fix: str | None) -> Check | None:
    """The router container's own state, with the last line it logged when it does not run
    and, when that line is Docker refusing its API version, the cause and ``api_fix``. None
    when there is no router container (Weave was not launched: weave-router says so)."""
    name = "weave-container"
    if router is None:
        return None
    image = router.image or "weave"
    refused = API_REFUSAL.search(last_words or "")
    if router.state == "running":
        # A crash loop is "running" for the moment between two attempts. When Docker refuses
        # this Weave's API now and the router has already died of that, it will again.
        if not (refused and api_fix and router.restarts):
            return Check(name, PASS, f"the weave container runs ({image})")
        detail = (f"the weave container ({image}) is crash-looping: caught running between "
                  f"two restarts ({router.restarts} restart(s))")
    else:
        detail = (f"the weave container ({image}) is {router.state} ({router.restarts} "
                  f"restart(s), last exit {router.exit_code})")
    if last_words:
        detail += f"; its last line: {last_words}"
    if refused:
        detail += (f"; cause: Docker refuses the API {refused['client']} this Weave speaks (it "
                   f"accepts {refused['floor']} and later)")
        return Check(name, FAIL, detail, api_fix or f"{vs.UPGRADE_COMMAND}")
    return Check(name, FAIL, detail, "read 'docker logs weave', then launch it again: "
                 f"{BOOTSTRAP} (its 'weave launch' replaces the stopped container)")


def redirect_fixes(checks: Sequence[Check], preflight: Sequence[str],
                   weave_bridge: bool) -> list[Check]:
    """Point every fix at something that works on this node: a check that fails because Weave
    does not run gets the fix of what stops Weave (Docker down, a Docker that refuses Weave's
    API, a crash-looping router); a fix that says ``weavenomad bootstrap`` while bootstrap's
    preflight (the checks named ``preflight``) fails gets the failing preflight item's fix, or,
    for the isolation guards, ``weavenomad guard ensure``, which needs no Weave."""
    failed = {c.name: c for c in checks if c.status == FAIL}
    cause = next((failed[n] for n in CAUSES if n in failed and failed[n].fix), None)
    blocker = next((failed[n] for n in preflight if n in failed and failed[n].fix), None)
    fixed = []
    for check in checks:
        fix = check.fix
        if check.status != PASS and fix and check.name not in CAUSES:
            if check.name in WEAVE_DEPENDENT and cause is not None:
                fix = cause.fix
            elif fix.startswith(BOOTSTRAP) and blocker is not None:
                fix = (GUARD_ENSURE + fix[len(BOOTSTRAP):]
                       if check.name == "tenant-isolation" and weave_bridge else blocker.fix)
        fixed.append(check if fix == check.fix else replace(check, fix=fix))
    return fixed
