# The seed's httpbackend job: its containers join Docker's "weave" network, i.e. Weave's
# default subnet, whatever tenant should own them. This is the pitfall `weavenomad run
# --tenant` is there to fix (the tenant's WEAVE_CIDR instead of a shared named network).
#
#   weavenomad plan jobs/httpbackend.nomad --tenant net:10.32.1.0/24     # what run would change
#   weavenomad run jobs/httpbackend.nomad --tenant net:10.32.1.0/24      # the tenant-safe way
#   weavenomad render jobs/httpbackend.nomad --tenant net:10.32.1.0/24   # offline, for GitOps
#   nomad job run jobs/httpbackend.nomad                                 # as the seed did
#
# Current Nomad syntax: the group network block replaces the seed's task-level
# `resources { network { mbits = 10 } }`, deprecated since Nomad 0.12. Its host mode leaves
# each Docker task on its own bridge network, which the Weave proxy attaches ("bridge" or
# "cni/..." would put the tasks into a pause container's namespace, which the proxy skips).
# Image bb:local is busybox; the local lab imports it under that name on every node.
job "httpbackend" {
  datacenters = ["dc1"]
  type = "service"

  group "httpbackend" {
    count = 2

    network {
      mode = "host"
    }

    task "httpbackend" {
      driver = "docker"
      config {
        image = "bb:local"
        command = "/bin/httpd"
        args = ["-f", "-p", "8081", "-h", "/"]
        dns_servers = ["192.168.56.3", "192.168.56.4", "192.168.56.5"]
        network_mode = "weave"
        logging {
          type = "json-file"
        }
      }

      service {
        name = "httpbackend"
        address_mode = "driver"
        port = 8081
        check {
          type = "tcp"
          interval = "5s"
          timeout = "2s"
          address_mode = "driver"
          port = 8081
        }
      }
    }
  }
}
