"""The reconciler: make the local Consul agent answer with each Nomad task's Weave address.

Nomad registers a Docker task's services with the Docker-bridge or the node address, and reverts
any edit of its own ``_nomad-task-…`` services within a sync period (docs/design.md). So the
reconciler never touches them; for every such service of a task on the Weave overlay it keeps:

* a **twin**: a service of its own, ID ``weavenomad-<allocID>-<task>-<service>-<port label>``
  (Nomad's ID with ``_nomad-task-`` replaced by ``weavenomad-``), with Nomad's Name, Tags and
  Meta plus ``weavenomad-managed=true``, ``weavenomad-source=<Nomad's service ID>`` and
  ``weavenomad-digest`` (a hash of the whole definition, because Consul 1.4 does not return
  check definitions to compare), Address = the Weave address, Port = the *container* port, and
  Nomad's checks re-aimed at that address and port (IDs ``<twin ID>-check-<n>``);
* a **mask**: a critical TTL check ``weavenomad-mask-<allocID>-<task>-<service>-<port label>``
  on Nomad's service, so DNS and ``?passing`` return only the twin. Nomad leaves foreign check
  IDs alone, and Consul drops the mask with Nomad's service. Catalog readers
  (``/v1/catalog/service``) still see Nomad's instance with the wrong address, and Nomad >= 1.7
  drops the mask whenever it re-registers the service (the next pass registers it again).
* for a service ``weavenomad run`` **held** under a private name (``weavenomad-hidden-<name>``,
  tags prefixed ``weavenomad-hidden:``, the public name in meta ``weavenomad-service``;
  :mod:`weavenomad.jobs.services`), the twin takes the public name and tags, and there is no
  mask: nobody asks for the private name, so every read path of the public name (catalog,
  Fabio, DNS, health) holds the twin alone, whatever Nomad re-registers.

A pass is ``observe`` (:mod:`.observe`) -> ``plan`` (:mod:`.plan`, pure) -> ``apply``
(:mod:`.apply`); :mod:`.daemon` runs passes when Nomad, Docker or Consul report a change, and
every ``--resync`` seconds. The plan decides in neutral terms (:mod:`.registrations`: which
address and port, which checks aimed where, which mask); :mod:`.consul` alone knows Consul's
answers and request bodies. The rules the plan follows:

* **Ownership**: only services whose ID starts ``weavenomad-`` *and* carry
  ``weavenomad-managed=true``, and checks whose ID starts ``weavenomad-mask-`` (or belong to such
  a twin) are ever changed or removed. Everything else, above all ``_nomad-`` objects, is read
  only. Whatever of ours is not wanted is removed, so orphans of a crash go in the first pass.
* **Port**: a numeric port label is the port; a label is looked up in the group's ports
  (``To``, or the port itself when ``To`` is unset), then the task's Docker ``port_map``, then
  the task's own network ports. No label means port 0, as Nomad does.
* **Address**: the container's Weave addresses come from Weave's HTTP API, else from ``ethwe``
  in the container's network namespace. Several addresses: the lowest inside the tenant's
  subnet, or the lowest at all for jobs without a tenant. A group service (task
  ``group-<group>``) uses the leader task's container, else the first task (in job order) that
  has a Weave address.
* **Tenants**: a job's tenant is its ``weavenomad.tenant`` meta; its subnet comes from the
  tenant registry, else from the job's ``weavenomad.subnet`` meta (``default``: the cluster's
  default subnet). A task whose address lies outside it is a *violation*: no twin, and the mask
  still hides Nomad's instance, so it is not advertised at all. So is a task with any address
  in a subnet that is not its job's: a tenant's subnet when the job is not that tenant's (no
  tenant meta, as a job run around ``weavenomad run``, or another tenant's), or a deleted
  tenant's quarantined subnet when the job is not that deleted tenant's.
* **Bad input** (logged once per service and reason, counted, never half-registered): an
  unresolvable port (no twin, Nomad's instance left as it is), a container without a Weave
  address (likewise), a tenant whose subnet is unknown (likewise). A script or docker-exec check
  cannot be re-aimed: the twin gets a TTL check that mirrors the status of Nomad's own check
  (Nomad runs the script inside the task, so its verdict holds for the twin too), and the mask
  applies as usual. Its TTL outlives a few resyncs only, so a dead reconciler's mirrors turn
  critical, like its re-aimed checks.
"""
