# The seed's httpbackend job placed on tenant subnet 10.32.1.0/24 by hand: every container
# gets WEAVE_CIDR=net:10.32.1.0/24, so the Weave proxy attaches it to that subnet. It is the
# job recorded from real Nomad 1.0.18 (tests/fixtures/recorded/nomad-jobs-parse.json) in
# current syntax: the group network block instead of the task's `resources { network }`.
#
#   weavenomad plan jobs/httpbackend-another-subnet.nomad --tenant net:10.32.1.0/24
#   weavenomad render jobs/httpbackend-another-subnet.nomad --tenant net:10.32.1.0/24 -o json
#   nomad job run jobs/httpbackend-another-subnet.nomad  # when Nomad's Docker endpoint is weave.sock
#
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
        logging {
          type = "json-file"
        }
      }

      env {
        WEAVE_CIDR = "net:10.32.1.0/24"
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
