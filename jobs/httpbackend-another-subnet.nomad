# The seed's httpbackend job, placed on tenant subnet 10.32.1.0/24 by hand: every container
# gets WEAVE_CIDR=net:10.32.1.0/24, so the Weave proxy attaches it to that subnet.
# This is byte for byte the job recorded from real Nomad 1.0.18 (fixtures/recorded).
#
#   nomad job run jobs/httpbackend-another-subnet.nomad     # Nomad's Docker endpoint = weave.sock
#   weavenomad render jobs/httpbackend-another-subnet.nomad -o json   # offline, no Nomad needed
#
# Image bb:local is busybox; the local lab imports it under that name on every node.
job "httpbackend" {
  datacenters = ["dc1"]
  type = "service"

  group "httpbackend" {
    count = 2

    task "httpbackend" {
      driver = "docker"
      config {
        image = "bb:local"
        command = "/bin/httpd"
        args = ["-f", "-p", "8081", "-h", "/"]
        dns_servers =  ["192.168.56.3", "192.168.56.4", "192.168.56.5"]
        logging {
          type = "json-file"
        }
      }

      env {
        WEAVE_CIDR="net:10.32.1.0/24"
      }

      resources {
        network {
          mbits = 10
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
