"""The decisions of Nomad's client task runner, as pure functions: restart or not after an
exit (``client/allocrunner/taskrunner/restarts``), the allocation's client status from its
task states (``getClientStatus``), and deployment health (``allochealth``).
"""

from __future__ import annotations

from dataclasses import dataclass

from weavenomad_lab.nomad.gostyle import duration_string

REASON_WITHIN_POLICY = "Restart within policy"


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    #: nanoseconds to wait before the next start
    delay: int
    #: the task is done for good and this is a failure (else a normal completion)
    failed: bool
    reason: str


def restart_decision(policy: dict, job_type: str, exit_code: int, recent_restarts: int,
                     interval_left: int) -> RestartDecision:  # fmt: skip
    """What happens after a task exited with ``exit_code``, having restarted
    ``recent_restarts`` times in the current policy interval (``interval_left`` ns remain)."""
    if exit_code == 0 and job_type == "batch":
        return RestartDecision(False, 0, False, "")
    attempts = int(policy.get("Attempts") or 0)
    delay = int(policy.get("Delay") or 0)
    mode = policy.get("Mode") or "fail"
    if recent_restarts < attempts:
        return RestartDecision(True, delay, False, REASON_WITHIN_POLICY)
    interval = int(policy.get("Interval") or 0)
    reason = (f"Exceeded allowed attempts {attempts} in interval "
              f"{duration_string(interval)} and mode is \"{mode}\"")  # fmt: skip
    if mode == "delay":
        return RestartDecision(True, max(delay, interval_left), False, reason)
    return RestartDecision(False, 0, True, reason)


def jittered(decision: RestartDecision, fraction: float) -> RestartDecision:
    """A restart within policy waits its delay plus ``fraction`` (Nomad: a random share of
    up to 25 %) of it more, as the recorded 15 s delays became 16.06 s and 17.66 s."""
    if not decision.restart or decision.reason != REASON_WITHIN_POLICY:
        return decision
    return RestartDecision(True, decision.delay + int(decision.delay * fraction),
                           decision.failed, decision.reason)


def client_status(task_states: dict[str, dict]) -> tuple[str, str]:
    """(ClientStatus, ClientDescription) of an allocation from its tasks' states."""
    states = list(task_states.values())
    if any(s["State"] == "dead" and s.get("Failed") for s in states):
        return "failed", "Failed tasks"
    if any(s["State"] == "running" for s in states):
        return "running", "Tasks are running"
    if any(s["State"] == "pending" for s in states) or not states:
        return "pending", "No tasks have started"
    return "complete", "All tasks have completed"


@dataclass(frozen=True)
class HealthInput:
    #: the group's update block (HealthCheck, MinHealthyTime, HealthyDeadline in ns)
    update: dict
    all_running: bool
    #: when every task was last seen running since (ns), or None
    running_since: int | None
    #: status of each of the allocation's Consul checks ("passing", "critical", …)
    check_statuses: list[str]
    #: when every check was last seen passing since (ns), or None
    passing_since: int | None
    placed_at: int
    now: int


def deployment_health(given: HealthInput) -> bool | None:
    """True (healthy), False (unhealthy: deadline passed or a task failed), or None (not yet)."""
    update = given.update or {}
    mode = update.get("HealthCheck") or "checks"
    min_healthy = int(update.get("MinHealthyTime") or 0)
    deadline = int(update.get("HealthyDeadline") or 0)
    if mode == "manual":
        return None
    healthy_since = given.running_since if given.all_running else None
    if mode == "checks" and given.check_statuses:
        if given.passing_since is None or healthy_since is None:
            healthy_since = None
        else:
            healthy_since = max(healthy_since, given.passing_since)
    if healthy_since is not None and given.now - healthy_since >= min_healthy:
        return True
    if deadline and given.now - given.placed_at > deadline:
        return False
    return None
