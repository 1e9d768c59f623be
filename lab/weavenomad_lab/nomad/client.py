"""A lab node's Nomad client: it runs each allocation placed on the node as real Docker
containers, reports task states back to the servers, registers the services in Consul and
watches deployment health. One :class:`AllocRunner` thread per allocation, one
:class:`TaskRunner` thread per task, like Nomad's allocrunner/taskrunner.
"""

from __future__ import annotations

import copy
import logging
import random
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weavenomad_lab.nomad import consul_sync, dockertask, lifecycle, shapes
from weavenomad_lab.nomad.consul_client import ConsulUnavailable, ServiceSyncer
from weavenomad_lab.nomad.dockergate import DockerGate, stop_container, wait_timed_out
from weavenomad_lab.nomad.gostyle import SECOND, now_ns, rfc3339
from weavenomad_lab.nomad.state import NomadState

log = logging.getLogger(__name__)

#: a task runner's wait on its container is cut into slices this long, only to notice the
#: agent's own shutdown (Nomad's driver waits without end): short slices cost a request per
#: task and slice through the Weave proxy, which a full node felt
WAIT_SLICE = 30.0
HEALTH_POLL = 0.5
#: Nomad's restart tracker adds up to this fraction of the delay (client/.../restarts.go)
RESTART_JITTER = 0.25
#: what Docker's client reports when the connection of a wait breaks (the Weave proxy went)
BROKEN_WAIT = "unexpected EOF"


@dataclass
class ClientContext:
    state: NomadState
    syncer: Callable[[], ServiceSyncer]
    #: a docker.DockerClient for the node's *current* Docker endpoint (raises when none)
    docker: Callable[[], Any]
    node: Callable[[], dict]
    alloc_root: Path
    stop: threading.Event
    #: keeps the node's container removals apart (a Docker 20.10 deadlock, see dockergate)
    gate: DockerGate = field(default_factory=DockerGate)


class TaskRunner(threading.Thread):
    def __init__(self, owner: AllocRunner, task: dict):
        super().__init__(name=f"task-{owner.alloc_id[:8]}-{task['Name']}", daemon=True)
        self.owner = owner
        self.task = task
        self.name_ = task["Name"]
        self.killed = threading.Event()
        self.container_id: str | None = None
        self.restart_times: list[int] = []

    # -- state reporting ----------------------------------------------------------------------

    def event(self, kind: str, state: str | None = None, **fields: Any) -> None:
        self.owner.task_event(self.name_, shapes.task_event(kind, now_ns(), **fields), state)

    # -- the main loop ------------------------------------------------------------------------

    @property
    def agent_gone(self) -> bool:
        """The node's agent was killed (a reboot): its runners stop without a word, as the
        process they are part of does."""
        return self.owner.ctx.stop.is_set()

    def run(self) -> None:
        if self.name_ not in self.owner.task_states:  # restored runners have their history
            self.event("Received", "pending")
            self.event("Task Setup", Message="Building Task Directory",
                       Details={"message": "Building Task Directory"})  # fmt: skip
        while not self.killed.is_set():
            exit_code = self._run_once()
            if self.agent_gone:
                return
            if self.killed.is_set():
                break
            decision = self._decide(exit_code)
            if not decision.restart:
                if decision.failed:
                    self.event("Not Restarting", RestartReason=decision.reason, FailsTask=True)
                self.owner.task_finished(self.name_, failed=decision.failed)
                return
            self.event("Restarting", "pending", StartDelay=decision.delay,
                       RestartReason=decision.reason)  # fmt: skip
            self.owner.task_restarted(self.name_)
            self.restart_times.append(now_ns())
            if self.killed.wait(decision.delay / SECOND):
                break
            if self.agent_gone:
                return
        self.owner.task_finished(self.name_, failed=False)

    def _decide(self, exit_code: int) -> lifecycle.RestartDecision:
        policy = self.task.get("RestartPolicy") or {}
        interval = int(policy.get("Interval") or 0)
        now = now_ns()
        recent = [t for t in self.restart_times if not interval or now - t < interval]
        left = (interval - (now - recent[0])) if recent and interval else 0
        decision = lifecycle.restart_decision(policy, self.owner.job_type, exit_code,
                                              len(recent), left)
        return lifecycle.jittered(decision, random.random() * RESTART_JITTER)

    def _run_once(self) -> int:
        """Start (or adopt) the container and wait for it to exit; the exit code (-1: never
        started)."""
        try:
            docker = self.owner.ctx.docker()
            self.container_id = self._start(docker)
        except Exception as exc:  # the driver's error, whatever the SDK raised
            self.event("Driver Failure", DriverError=_one_line(exc))
            return -1
        self.event("Started", "running")
        try:
            self.owner.register_task_services(self.task, docker, self.container_id)
        except consul_sync.AddressError as exc:
            self.event("Driver Failure", DriverError=f"unable to get address for service: {exc}")
        except Exception as exc:  # the driver could not inspect the container: a failed start
            self.event("Driver Failure", DriverError=_one_line(exc))
            self._remove(docker)
            return -1
        exit_code, broken = self._wait(docker)
        if self.agent_gone:
            return exit_code
        if broken:
            # Nomad's handle.run: "failed to wait for container; already terminated", then a
            # StopContainer through the same endpoint "just in case"; while the Weave proxy is
            # away that fails ("cannot connect to Docker endpoint") and the container runs on
            log.error("failed to wait for container %s; already terminated", self.container_id)
            self._stop_quietly(docker)
        self.owner.deregister_task_services(self.name_)
        if not self.killed.is_set():
            self.event("Terminated", ExitCode=exit_code, Message=BROKEN_WAIT if broken else "")
            if not broken:
                self._remove(docker)
        return exit_code

    def _start(self, docker: Any) -> str:
        alloc_dir = self.owner.alloc_dir
        for sub in ("alloc", f"{self.name_}/local", f"{self.name_}/secrets"):
            (alloc_dir / sub).mkdir(parents=True, exist_ok=True)
        spec = dockertask.container_spec(self.owner.alloc, self.task, self.owner.ctx.node(),
                                         alloc_dir)  # fmt: skip
        api = docker.api
        gate = self.owner.ctx.gate
        _remove_leftover(api, spec["name"], gate)
        if not spec["image"]:
            raise RuntimeError("Missing required field \"image\"")
        try:
            api.inspect_image(spec["image"])
        except Exception:
            self.event("Driver", DriverMessage=f"Downloading image {spec['image']}")
            api.pull(spec["image"])
        host_config = api.create_host_config(**spec.pop("host_config"))
        with gate.starting():
            try:
                created = api.create_container(host_config=host_config, **spec)
            except Exception as exc:
                running = _running_container(api, spec["name"], exc)
                if running is None:
                    raise
                # Nomad's createContainer on "container already exists": a running container
                # of the task's name is taken over (the recorded Weave restart, day-two/1c:
                # "created container" with the same ID, StartedAt unchanged)
                return running
            api.start(created["Id"])
        return created["Id"]

    def _wait(self, docker: Any) -> tuple[int, bool]:
        """(the container's exit code, whether the wait broke instead). A wait whose
        connection breaks (Docker, or the Weave proxy in front of it, went away) counts as the
        task's exit with code 0, as in Nomad's Docker driver: the restart policy decides what
        follows, and the container may well run on."""
        while True:
            try:
                result = docker.api.wait(self.container_id, timeout=WAIT_SLICE)
                return int(result.get("StatusCode", -1)), False
            except Exception as exc:
                if wait_timed_out(exc) and not self.agent_gone:
                    continue  # still running
                if not self.agent_gone:
                    log.warning("waiting for %s failed: %s", self.container_id, exc)
                return 0, True

    def _stop_quietly(self, docker: Any) -> None:
        try:
            docker.api.stop(self.container_id, timeout=0)
        except Exception as exc:
            log.error("error stopping container %s: %s", self.container_id, _one_line(exc))

    def kill(self, docker: Any) -> None:
        if self.killed.is_set():
            return
        timeout = int(self.task.get("KillTimeout") or 5 * SECOND)
        self.killed.set()
        if self.container_id is None:
            return
        self.event("Killing", KillTimeout=timeout)
        try:
            stop_container(docker.api, self.container_id, self.task.get("KillSignal") or "",
                           timeout / SECOND, self.owner.ctx.gate)
            self.event("Killed")
        except Exception as exc:
            self.event("Killed", KillError=_one_line(exc))
        self._remove(docker)

    def _remove(self, docker: Any) -> None:
        with self.owner.ctx.gate.removing():
            try:
                docker.api.remove_container(self.container_id, force=True)
            except Exception as exc:
                log.debug("removing %s: %s", self.container_id, exc)


class AllocRunner(threading.Thread):
    def __init__(self, ctx: ClientContext, alloc: dict):
        super().__init__(name=f"alloc-{alloc['ID'][:8]}", daemon=True)
        self.ctx = ctx
        self.alloc = alloc
        self.alloc_id = alloc["ID"]
        self.job_type = alloc["Job"]["Type"]
        self.alloc_dir = ctx.alloc_root / alloc["ID"]
        self._lock = threading.Lock()
        self._changed = threading.Event()
        # a runner of a restarted agent goes on from the states the servers have
        self.task_states: dict[str, dict] = copy.deepcopy(alloc.get("TaskStates") or {})
        self.tasks: dict[str, TaskRunner] = {}
        self.finished = threading.Event()
        self._running_since: int | None = None
        self._passing_since: int | None = None
        self._health_reported = _health_known(alloc)
        #: set by an update that changes what the services say (an in-place update to a new
        #: job version, a promoted canary): the loop registers them again
        self._services_stale = False

    @property
    def group(self) -> dict:
        job = self.alloc["Job"]
        return next(g for g in job["TaskGroups"] if g["Name"] == self.alloc["TaskGroup"])

    # -- updates from the server and from task runners ---------------------------------------

    def update(self, alloc: dict) -> None:
        with self._lock:
            old, self.alloc = self.alloc, alloc
        if alloc.get("DeploymentID") != old.get("DeploymentID") or (
                alloc.get("DeploymentStatus") is None and old.get("DeploymentStatus")):
            # updated in place into a new deployment: its health is judged again
            self._health_reported = _health_known(alloc)
            self._running_since = self._passing_since = None
        if (alloc["Job"].get("Version"), _canary(alloc)) != (old["Job"].get("Version"),
                                                             _canary(old)):
            # Nomad's service hook Update: the task's services as the new version (or the
            # promoted canary) has them, registered again where they changed (UpdateWorkload)
            self._services_stale = True
        self._changed.set()

    def _refresh_services(self) -> None:
        self._services_stale = False
        self._register_group_services()
        try:
            docker = self.ctx.docker()
        except Exception as exc:
            log.warning("cannot reach Docker to update the services of %s: %s", self.alloc_id,
                        exc)
            return
        for task in self.group.get("Tasks") or []:
            runner = self.tasks.get(task["Name"])
            if runner is None or runner.container_id is None or runner.killed.is_set():
                continue
            runner.task = task
            try:
                self.register_task_services(task, docker, runner.container_id)
            except Exception as exc:  # the container went meanwhile: its runner deregisters
                log.debug("services of %s/%s: %s", self.alloc_id, task["Name"], exc)

    def task_event(self, task: str, event: dict, state: str | None) -> None:
        with self._lock:
            current = self.task_states.setdefault(task, shapes.task_state())
            current["Events"] = (current["Events"] + [event])[-10:]
            if state:
                current["State"] = state
            if state == "running":
                current["StartedAt"] = rfc3339(event["Time"])
        self._report()

    def task_restarted(self, task: str) -> None:
        with self._lock:
            current = self.task_states[task]
            current["Restarts"] += 1
            current["LastRestart"] = rfc3339(now_ns())
        self._report()

    def task_finished(self, task: str, failed: bool) -> None:
        with self._lock:
            current = self.task_states.setdefault(task, shapes.task_state())
            current.update(State="dead", Failed=failed, FinishedAt=rfc3339(now_ns()))
        self._report()
        self._changed.set()

    def _report(self) -> None:
        with self._lock:
            states = {k: dict(v, Events=list(v["Events"])) for k, v in self.task_states.items()}
        status, description = lifecycle.client_status(states)
        self.ctx.state.update_alloc(self.alloc_id, ClientStatus=status,
                                    ClientDescription=description, TaskStates=states)  # fmt: skip

    # -- services -----------------------------------------------------------------------------

    def register_task_services(self, task: dict, docker: Any, container_id: str) -> None:
        services = task.get("Services") or []
        if not services:
            return
        driver = _driver_network(docker.api.inspect_container(container_id))
        networks = ((self.alloc["AllocatedResources"] or {}).get("Tasks") or {}).get(
            task["Name"], {}).get("Networks") or []  # fmt: skip
        ports = ((self.alloc["AllocatedResources"] or {}).get("Shared") or {}).get("Ports") or []
        regs, checks = consul_sync.workload_registrations(
            self.alloc_id, task["Name"], services, networks, driver, ports, _canary(self.alloc))
        self.ctx.syncer().set_workload(self.alloc_id, task["Name"], regs, checks)

    def deregister_task_services(self, task_name: str) -> None:
        self.ctx.syncer().remove_workload(self.alloc_id, task_name)

    def _register_group_services(self) -> None:
        services = self.group.get("Services") or []
        if not services:
            return
        shared = (self.alloc["AllocatedResources"] or {}).get("Shared") or {}
        try:
            regs, checks = consul_sync.workload_registrations(
                self.alloc_id, f"group-{self.group['Name']}", services,
                shared.get("Networks") or [], None, shared.get("Ports") or [],
                _canary(self.alloc))
        except consul_sync.AddressError as exc:
            log.warning("group services of %s: %s", self.alloc_id, exc)
            return
        self.ctx.syncer().set_workload(self.alloc_id, f"group-{self.group['Name']}", regs, checks)

    # -- the main loop ------------------------------------------------------------------------

    def run(self) -> None:
        self._register_group_services()
        for task in self.group.get("Tasks") or []:
            runner = TaskRunner(self, task)
            self.tasks[task["Name"]] = runner
            runner.start()
        while not self.ctx.stop.is_set():
            if self.alloc["DesiredStatus"] != "run":
                self._stop_tasks()
                break
            if all(not t.is_alive() for t in self.tasks.values()):
                break
            if self._services_stale:
                self._refresh_services()
            self._watch_health()
            self._changed.wait(HEALTH_POLL)
            self._changed.clear()
        if self.ctx.stop.is_set() and self.alloc["DesiredStatus"] == "run":
            return  # the agent was killed: what it registered stays, as a dead agent's does
        self.ctx.syncer().remove_workload(self.alloc_id, f"group-{self.group['Name']}")
        self.finished.set()
        if self.alloc["DesiredStatus"] != "run":
            shutil.rmtree(self.alloc_dir, ignore_errors=True)

    def _stop_tasks(self) -> None:
        try:
            docker = self.ctx.docker()
        except Exception as exc:
            log.warning("cannot reach Docker to stop %s: %s", self.alloc_id, exc)
            docker = None
        for runner in self.tasks.values():
            if docker is not None:
                runner.kill(docker)
            else:
                runner.killed.set()
        for runner in self.tasks.values():
            runner.join(timeout=60)
        with self._lock:
            for state in self.task_states.values():
                if state["State"] != "dead":
                    state.update(State="dead", FinishedAt=rfc3339(now_ns()))
        self._report()

    def _watch_health(self) -> None:
        if self._health_reported or not self.alloc.get("DeploymentID"):
            return
        now = now_ns()
        with self._lock:
            all_running = bool(self.task_states) and all(
                s["State"] == "running" for s in self.task_states.values())
        self._running_since = (self._running_since or now) if all_running else None
        statuses = self._check_statuses()
        passing = all(s == "passing" for s in statuses)
        self._passing_since = (self._passing_since or now) if passing else None
        healthy = lifecycle.deployment_health(lifecycle.HealthInput(
            update=self.group.get("Update") or {}, all_running=all_running,
            running_since=self._running_since, check_statuses=statuses,
            passing_since=self._passing_since, placed_at=self.alloc["CreateTime"], now=now))
        if healthy is not None:
            self._health_reported = True
            self.ctx.state.update_alloc(self.alloc_id, DeploymentHealthy=healthy)

    def _check_statuses(self) -> list[str]:
        syncer = self.ctx.syncer()
        wanted = syncer.workload_checks(self.alloc_id)
        if not wanted:
            return []
        try:
            checks = syncer.check_statuses()
        except ConsulUnavailable:
            return ["critical"]
        return [checks.get(cid, {}).get("Status", "critical") for cid in sorted(wanted)]


def _health_known(alloc: dict) -> bool:
    return (alloc.get("DeploymentStatus") or {}).get("Healthy") is not None


def _canary(alloc: dict) -> bool:
    """An unpromoted canary (its services carry the job's canary tags and meta)."""
    return bool((alloc.get("DeploymentStatus") or {}).get("Canary"))


def _driver_network(inspect: dict) -> consul_sync.DriverNetwork | None:
    """The Docker driver's ``detectIP``: the IP of the first network that has one, advertised
    automatically only when that network is not the default bridge."""
    networks = ((inspect.get("NetworkSettings") or {}).get("Networks")) or {}
    for name, network in sorted(networks.items()):
        ip = network.get("IPAddress")
        if ip:
            return consul_sync.DriverNetwork(ip=ip, auto_advertise=name not in ("bridge", "nat"))
    return None


def _running_container(api: Any, name: str, refused: Exception) -> str | None:
    """The ID of the running container ``name`` when Docker refused a create for the name's
    being taken (409), else None."""
    status = getattr(getattr(refused, "response", None), "status_code", None)
    if status != 409:
        return None
    try:
        info = api.inspect_container(name)
    except Exception:
        return None
    return info["Id"] if (info.get("State") or {}).get("Running") else None


def _remove_leftover(api: Any, name: str, gate: DockerGate) -> None:
    """Remove a stopped container left with the task's name by an earlier run (rare: asked
    first, so that a start takes the gate's exclusive side only when there is one). A running
    one stays: the create that follows takes it over, as Nomad's driver does."""
    try:
        info = api.inspect_container(name)
    except Exception:
        return  # none of that name: the normal case
    if (info.get("State") or {}).get("Running"):
        return
    with gate.removing():
        try:
            api.remove_container(name, force=True)
        except Exception as exc:
            log.debug("removing the leftover %s: %s", name, exc)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__

