"""``weavenomad render`` offline: the job file read literally with python-hcl2, the same
transform as ``run``, the user's document written back. No nomad CLI on PATH here (the tests
with a stand-in CLI are in test_jobs_nomad_cli.py).

The cross-checks read render's HCL output with the lab's parser (the simulated Nomad's, written
independently of the product) and compare it with ``run``'s transform of the lab parser's job."""

import contextlib
import io
import json
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from weavenomad_lab.nomad.jobspec import parse_job as lab_parse_job

from weavenomad.cli import main
from weavenomad.errors import ValidationError
from weavenomad.jobs import hcl_literal, render
from weavenomad.jobs.transform import apply_tenant
from weavenomad.tenancy.contract import TenantTarget

JOBS = sorted((Path(__file__).resolve().parents[2] / "jobs").glob("*.nomad"))
TENANT = "net:10.32.1.0/24"
TARGET = TenantTarget(TENANT, IPv4Network("10.32.1.0/24"))

#: what the lab's parser evaluates too: variables, locals, runtime interpolations, a meta block,
#: env as a map with a dotted key, an exec task, two groups, a job-set WEAVE_CIDR in the subnet
RICH_JOB = """\
# comments are fine
variable "image" {
  type    = string
  default = "bb:local"
}

locals {
  port = 8080
}

job "rich" {
  datacenters = ["dc1"]

  meta {
    owner = "team-a"
  }

  group "web" {
    count = 2

    network {
      mode = "host"
    }

    task "server" {
      driver = "docker"

      config {
        image        = var.image
        args         = ["-p", "${local.port}", "${NOMAD_ALLOC_ID}", "$${HOME}"]
        network_mode = "weave"
        labels {
          tier = "front"
        }
      }

      env = {
        "app.name" = "web \\"quoted\\" ✓"
        NODE       = "${node.unique.name}"
        MOTD       = <<-EOT
          hello  \x20
            indented

          ${attr.kernel.name}
          EOT
      }
    }

    task "sidecar" {
      driver = "exec"

      config {
        command = "/bin/true"
      }
    }
  }

  group "db" {
    task "db" {
      driver = "docker"

      config {
        image = "db:1"
      }

      env {
        WEAVE_CIDR = "net:10.32.1.0/24"
        MODE       = "primary"
      }
    }
  }
}
"""


@pytest.fixture(autouse=True)
def no_nomad_cli(tmp_path_factory, monkeypatch):
    """PATH without a nomad executable, whatever the machine has installed."""
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("empty-path")))


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            pytest.raises(SystemExit) as exited:
        main(["render", *argv], environ={})
    return exited.value.code, out.getvalue(), err.getvalue()


def job_file(tmp_path, text, name="job.nomad"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def rendered(text, path="job.nomad", target=TARGET):
    warnings = []
    return render.rendered_hcl(text, path, target, warnings.append), warnings


def lab_cross_check(text):
    """render's HCL, read by the lab's parser, is run's transform of the lab parser's job."""
    output, _ = rendered(text)
    expected = apply_tenant(lab_parse_job(text, "job.nomad"), TARGET).job
    assert lab_parse_job(output, "rendered.nomad") == expected
    return output


# -- the jobs in jobs/ -------------------------------------------------------------------------


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_every_job_renders_to_hcl_in_the_tenant(path):
    code, out, err = cli(str(path), "--tenant", TENANT)
    assert code == 0, err
    assert 'WEAVE_CIDR = "net:10.32.1.0/24"' in out
    assert "network_mode" not in out
    assert '"weavenomad.tenant" = "net:10.32.1.0/24"' in out
    assert '"weavenomad.subnet" = "10.32.1.0/24"' in out
    assert all(line.startswith("warning: ") for line in err.splitlines())
    assert out.startswith(f"# {path} for tenant {TENANT} (10.32.1.0/24)")


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_every_job_cross_checks_with_the_lab_parser(path):
    lab_cross_check(path.read_text())


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_every_job_renders_offline_json_of_what_the_transform_reads(path):
    code, out, err = cli(str(path), "--tenant", TENANT, "-o", "json")
    assert code == 0, err
    job = json.loads(out)["Job"]
    task = job["TaskGroups"][0]["Tasks"][0]
    assert task["Env"] == {"WEAVE_CIDR": "net:10.32.1.0/24"}
    assert "network_mode" not in task["Config"] and task["Config"]["image"] == "bb:local"
    assert task["Config"]["logging"] == [{"type": "json-file"}]
    assert job["Meta"] == {"weavenomad.tenant": TENANT, "weavenomad.subnet": "10.32.1.0/24"}
    assert "warning: without a nomad CLI on PATH, -o json holds only" in err


def test_the_rich_job_cross_checks_with_the_lab_parser():
    output = lab_cross_check(RICH_JOB)
    assert "image        = var.image" in output or "image = var.image" in output
    assert '"${local.port}"' in output and '"$${HOME}"' in output
    assert ("          hello   \n            indented\n\n          ${attr.kernel.name}\n"
            "          EOT\n" in output)  # the heredoc is kept byte for byte
    assert 'owner               = "team-a"' in output  # the meta block became a map


def test_render_keeps_a_job_set_cidr_inside_the_tenant_and_warns_about_other_drivers():
    output, warnings = rendered(RICH_JOB)
    assert output.count('WEAVE_CIDR = "net:10.32.1.0/24"') == 2
    assert any("driver 'exec': left alone" in w for w in warnings)
    assert any('removed network_mode = "weave"' in w for w in warnings)


def test_runtime_interpolations_stay_verbatim_in_offline_json(tmp_path):
    path = job_file(tmp_path, 'job "j" {\n group "g" {\n task "t" {\n driver = "docker"\n'
                    ' config {\n image = "bb:local"\n args = ["${NOMAD_ALLOC_ID}", '
                    '"${attr.kernel.name}", "${meta.rack}", "${node.unique.id}", '
                    '"${env["HOME"]}", "$${literal}", "a\\tb"]\n }\n }\n }\n}\n')
    code, out, err = cli(path, "--tenant", TENANT, "-o", "json")
    assert code == 0, err
    args = json.loads(out)["Job"]["TaskGroups"][0]["Tasks"][0]["Config"]["args"]
    assert args == ["${NOMAD_ALLOC_ID}", "${attr.kernel.name}", "${meta.rack}",
                    "${node.unique.id}", '${env["HOME"]}', "${literal}", "a\tb"]


def test_what_nomad_evaluates_at_submission_stays_as_written_in_hcl(tmp_path):
    text = ('variable "image" {\n default = "bb:local"\n}\nlocals {\n n = 2\n}\n'
            'job "j" {\n group "g" {\n count = local.n\n task "t" {\n driver = "docker"\n'
            ' config {\n image = var.image\n args = [upper("x"), "${var.image}-x"]\n }\n'
            ' env {\n NAME = "${var.image}"\n }\n }\n }\n}\n')
    code, out, err = cli(job_file(tmp_path, text), "--tenant", TENANT)
    assert code == 0, err
    for kept in ("count = local.n", "image = var.image", 'upper("x")', '"${var.image}-x"',
                 'NAME       = "${var.image}"'):
        assert kept in out
    code, out, err = cli(job_file(tmp_path, text), "--tenant", TENANT, "-o", "json")
    assert code == 1 and out == ""
    assert err.strip() == (
        f"weavenomad: error: {tmp_path / 'job.nomad'}: job \"j\" group \"g\" task \"t\": "
        "config image is an expression (var.image) that only Nomad evaluates, so -o json cannot "
        "print it without a nomad CLI (install the nomad CLI ('nomad job run -output' evaluates "
        "it offline), or use -o hcl, which keeps it for Nomad to evaluate)")


# -- refusals and hostile input: one line, nothing printed on stdout ---------------------------

DOCKER_TASK = 'job "j" {{\n  group "g" {{\n    task "t" {{\n      driver = "docker"\n{body}\n' \
              '    }}\n  }}\n}}\n'


def docker(body):
    return DOCKER_TASK.format(body=body)


REFUSED = [
    ("", "is empty"),
    ("  \n\t\n", "is empty"),
    ("# only a comment\n", "expected one job block, found 0"),
    ('job "a" {}\njob "b" {}\n', "expected one job block, found 2"),
    ("job {}\n", "a job block needs exactly one label"),
    ('job "a" "b" {}\n', "a job block needs exactly one label"),
    ('job "j" {\n', "invalid HCL: unexpected end of file"),
    ('job "j" {\n  x = \n}\n', "job.nomad:2:7: invalid HCL: unexpected"),
    ("\x00\x01", "invalid HCL"),
    ('job "j" {\n  meta = {}\n  meta {\n  }\n}\n', "invalid HCL: Attribute meta is already"),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ('job "j" {\n  task "t" {\n    driver = "docker"\n  }\n}\n', "task is outside a group"),
    ('job "j" {\n  group = "g"\n}\n', "group must be a block"),
    ('job "j" {\n  group "g" {\n    dynamic "task" {\n      for_each = ["a"]\n'
     '      labels = [task.value]\n      content {\n        driver = "docker"\n      }\n'
     '    }\n  }\n}\n', 'job "j" group "g": dynamic "task" makes blocks'),
    ('job "j" {\n  dynamic "group" {\n    for_each = ["a"]\n    content {}\n  }\n}\n',
     'job "j": dynamic "group" makes blocks'),
    (docker('      dynamic "env" {\n        for_each = []\n        content {}\n      }'),
     'dynamic "env" makes blocks'),
    (docker('      config {\n        image = "i"\n        dynamic "mount" {\n'
            '          for_each = var.mounts\n          content {\n            type = "bind"\n'
            '          }\n        }\n      }'), "config holds a dynamic block"),
    ('job "j" {\n  group "g" {\n    task "t" {\n      driver = var.driver\n    }\n  }\n}\n',
     'task "t": driver is an expression (var.driver) that Nomad evaluates only when the job '
     "is submitted (write it literally, or check the evaluated job: 'weavenomad render -o json'"),
    ('job "j" {\n  group "g" {\n    task "t" {\n      driver = "${local.d}"\n    }\n  }\n}\n',
     'driver is an expression ("${local.d}")'),
    (docker('      config {\n        network_mode = var.mode\n      }'),
     "config network_mode is an expression (var.mode)"),
    (docker('      config {\n        network_mode = "${var.mode}"\n      }'),
     'config network_mode is an expression ("${var.mode}")'),
    (docker('      config {\n        privileged = var.p\n      }'),
     "config privileged is an expression"),
    (docker('      config {\n        volumes = ["${var.dir}:/d"]\n      }'),
     "config volumes is an expression"),
    (docker("      config = var.config"), "config is an expression (var.config)"),
    (docker("      config = merge(var.a, {})"), "config is an expression (merge(var.a, {}))"),
    (docker("      env = var.env"), "env is an expression (var.env)"),
    (docker("      env = {\n        (var.k) = 1\n      }"), "env is an expression ((var.k))"),
    (docker("      env {\n        WEAVE_CIDR = var.cidr\n      }"),
     "env WEAVE_CIDR is an expression (var.cidr)"),
    (docker("      env {\n        A = 1\n      }\n      env {\n        B = 2\n      }"),
     "env is given 2 times"),
    (docker('      template {\n        data = "x"\n        env = var.e\n      }'),
     "template[0] env is an expression (var.e)"),
    (docker('      template {\n        data = file("t.tpl")\n        env = true\n      }'),
     'template[0] data is an expression (file("t.tpl"))'),
    (docker('      resources {\n        network {\n          mode = var.m\n        }\n      }'),
     "resources network[0] mode is an expression (var.m)"),
    ('job "j" {\n  group "g" {\n    network {\n      mode = var.m\n    }\n  }\n}\n',
     'group "g": network[0] mode is an expression (var.m)'),
    ('job "j" {\n  meta = var.meta\n}\n', "meta is an expression (var.meta)"),
    (docker('      config {\n        network_mode = "host"\n      }'),
     "config network_mode = 'host' is not attached by the Weave proxy"),
    (docker('      env {\n        WEAVE_CIDR = "net:10.32.2.0/24"\n      }'),
     "would place the task outside tenant"),
    (docker('      template {\n        data = "WEAVE_CIDR=net:10.32.9.0/24"\n'
            "        env  = true\n      }"), "template[0] data sets WEAVE_CIDR"),
]


@pytest.mark.parametrize("text, message", REFUSED, ids=range(len(REFUSED)))
@pytest.mark.parametrize("output", ["hcl", "json"])
def test_refusals_are_one_line_naming_the_file(tmp_path, text, message, output):
    path = job_file(tmp_path, text)
    code, out, err = cli(path, "--tenant", TENANT, "-o", output)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("weavenomad: error: ") and path in lines[0]
    assert message in lines[0]


@pytest.mark.parametrize("make, message", [
    (lambda tmp: str(tmp / "missing.nomad"), "cannot read job file {}: No such file or directory"),
    (lambda tmp: str(tmp), "cannot read job file {}: Is a directory"),
    (lambda tmp: job_file(tmp, ""), '{} is empty (a job file holds a job "name" {{ … }} block)'),
])
def test_unreadable_paths_are_one_line(tmp_path, make, message):
    path = make(tmp_path)
    code, out, err = cli(path, "--tenant", TENANT)
    assert (code, out) == (1, "")
    assert err == f"weavenomad: error: {message.format(path)}\n"


def test_a_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.nomad"
    path.write_bytes('job "caf\xe9" {}\n'.encode("latin-1"))
    code, _, err = cli(str(path), "--tenant", TENANT)
    assert code == 1 and err == f"weavenomad: error: job file {path} is not UTF-8 text\n"


def test_unicode_names_and_values_render(tmp_path):
    text = docker('      config {\n        image = "bild:ä✓"\n      }').replace('"j"', '"jöb✓"')
    code, out, err = cli(job_file(tmp_path, text), "--tenant", TENANT)
    assert code == 0, err
    assert 'job "jöb✓"' in out and '"bild:ä✓"' in out
    code, out, _ = cli(job_file(tmp_path, text), "--tenant", TENANT, "-o", "json")
    assert json.loads(out)["Job"]["ID"] == "jöb✓"


def test_a_json_job_renders_as_json_and_refuses_hcl(tmp_path):
    job = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
                      / "nomad-jobs-parse.json").read_text())["body"]
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"Job": job}))
    code, out, err = cli(str(path), "--tenant", TENANT, "-o", "json")
    assert code == 0, err
    assert json.loads(out)["Job"]["Meta"]["weavenomad.tenant"] == TENANT
    code, out, err = cli(str(path), "--tenant", TENANT)
    assert code == 1 and out == ""
    assert err == f"weavenomad: error: {path} is a JSON job; -o hcl writes HCL job files back " \
                  "(use -o json)\n"


# -- variables without a nomad CLI -------------------------------------------------------------


def test_variables_do_not_apply_to_hcl_output_and_say_so():
    code, out, err = cli(str(JOBS[0]), "--tenant", TENANT, "--var", "image=x")
    assert code == 0
    assert err.startswith("warning: --var/--var-file do not apply to -o hcl")
    assert "WEAVE_CIDR" in out


@pytest.mark.parametrize("flags, flag", [(["--var", "image=x"], "--var"),
                                         (["--var-file", "vars.hcl"], "--var-file")])
def test_variables_for_json_output_need_the_nomad_cli(flags, flag):
    code, out, err = cli(str(JOBS[0]), "--tenant", TENANT, "-o", "json", *flags)
    assert code == 1 and out == ""
    assert err == (f"weavenomad: error: {flag}: -o json needs the nomad CLI to evaluate job "
                   "variables, and there is none on PATH (install the nomad CLI (any version "
                   "from 1.0; it needs no server for this), or use -o hcl, which keeps var.NAME "
                   "for Nomad to evaluate at submission)\n")


# -- writing back ------------------------------------------------------------------------------


def test_meta_keys_are_added_to_an_existing_map_and_env_is_created():
    text = ('job "j" {\n  meta = {\n    "weavenomad.tenant" = "old"\n    team = "a"\n  }\n'
            '  group "g" {\n    task "t" {\n      driver = "docker"\n      config {\n'
            '        image = "i"\n      }\n    }\n  }\n}\n')
    output, _ = rendered(text)
    job = lab_parse_job(output, "out.nomad")
    assert job["Meta"] == {"weavenomad.tenant": TENANT, "team": "a",
                           "weavenomad.subnet": "10.32.1.0/24"}
    assert job["TaskGroups"][0]["Tasks"][0]["Env"] == {"WEAVE_CIDR": "net:10.32.1.0/24"}
    assert output.count("weavenomad.tenant") == 1


def test_a_tenant_name_is_written_as_an_escaped_string():
    target = TenantTarget('a"b${x}', IPv4Network("10.32.1.0/24"))
    output, _ = rendered(JOBS[0].read_text(), target=target)
    assert lab_parse_job(output, "out.nomad")["Meta"]["weavenomad.tenant"] == 'a"b${x}'


@pytest.mark.parametrize("damage", [
    lambda text: text.replace('WEAVE_CIDR = "net:10.32.1.0/24"', ""),  # an edit lost
    lambda text: text.replace('"bb:local"', '"bb:other"'),  # the user's own value changed
    lambda text: text.replace("count = 2", ""),
])
def test_output_that_does_not_read_back_as_written_is_refused(monkeypatch, damage):
    import hcl2

    dumps = hcl2.dumps
    monkeypatch.setattr(hcl2, "dumps", lambda document, **options: damage(
        dumps(document, **options)))
    with pytest.raises(ValidationError, match="python-hcl2 did not write the job back"):
        rendered(JOBS[1].read_text())


def test_tidy_drops_trailing_blanks_but_not_inside_heredocs():
    text = 'a = 1   \n  \n\n\nb = <<EOT\nx  \n\n\n  \nEOT\nc = <<-X\n  y \n  X\n\n'
    assert hcl_literal.tidy(text) == 'a = 1\n\nb = <<EOT\nx  \n\n\n  \nEOT\nc = <<-X\n  y \n  X\n'


# -- literal values ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ('"plain"', "plain"),
    ('"a\\"b\\\\c\\n\\t\\u00e9"', 'a"b\\c\n\té'),
    ('"$${x} %%{y}"', "${x} %{y}"),
    ('"${ NOMAD_ALLOC_ID }"', "${NOMAD_ALLOC_ID}"),
    ('"x-${attr.unique.network.ip-address}"', "x-${attr.unique.network.ip-address}"),
    ('"${env["HOME"]}"', '${env["HOME"]}'),
    ("${meta.rack}", "${meta.rack}"),
    ('"<<EOT\nline\n  two\nEOT"', "line\n  two\n"),
    ('"<<-EOT\n    a\n      b\n    EOT"', "a\n  b\n"),
    ('"<<EOT\nno \\n escape ${NOMAD_TASK_DIR}\nEOT"', "no \\n escape ${NOMAD_TASK_DIR}\n"),
    (7, 7), (-1.5, -1.5), ("${1e3}", 1000.0), (True, True), (None, None),
    (['"a"', 1], ["a", 1]),
    ({'"k.x"': '"v"', "y": 2}, {"k.x": "v", "y": 2}),
])
def test_literal_values(raw, expected):
    found = hcl_literal.value(raw)
    assert found == expected and not hcl_literal.expressions_in(found)


@pytest.mark.parametrize("raw, source", [
    ("${var.x}", "var.x"),
    ("${local.y}", "local.y"),
    ('"${var.x}-y"', '"${var.x}-y"'),
    ('"%{ if true }a%{ endif }"', '"%{ if true }a%{ endif }"'),
    ('${upper("a")}', 'upper("a")'),
    ('"${"}"}"', '"${"}"}"'),
    ("${true}", "true"),
    ('"<<EOT\n${var.x}\nEOT"', '"<<EOT\n${var.x}\nEOT"'),
])
def test_expressions_are_kept_apart(raw, source):
    found = hcl_literal.value(raw)
    assert isinstance(found, hcl_literal.Expression) and found.source == source
    assert found == "${" + source + "}"  # read as an interpolation by every policy check


def test_hcl_string_round_trips_through_the_literal_reader():
    text = 'a"b\\c\n\t${x}%{y} ✓'
    assert hcl_literal.value(hcl_literal.hcl_string(text)) == text


def test_the_product_imports_neither_the_lab_nor_lark():
    import ast

    product = Path(__file__).resolve().parents[2] / "weavenomad"
    for source in product.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in ("weavenomad_lab", "lark"), (source, name)
