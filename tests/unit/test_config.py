import pytest

from weavenomad.config import build_settings, load_settings, parse_config_text
from weavenomad.errors import ConfigError


def test_defaults():
    s = build_settings({}, {})
    assert s.nomad.addr == "http://127.0.0.1:4646"
    assert s.consul.addr == "http://127.0.0.1:8500"
    assert s.docker.host == "unix:///var/run/docker.sock"
    assert s.weave.api == "http://127.0.0.1:6784"
    assert s.nomad.tls.verify is True and s.consul.tls.verify is True


def test_precedence_flag_over_env_over_file_over_default():
    file_values = {"nomad.addr": "http://file:4646", "consul.addr": "file:8500",
                   "docker.host": "unix:///file.sock"}
    env = {"NOMAD_ADDR": "http://env:4646", "CONSUL_HTTP_ADDR": "env:8500"}
    s = build_settings({"nomad_addr": "http://flag:4646"}, env, file_values)
    assert s.nomad.addr == "http://flag:4646"
    assert s.consul.addr == "http://env:8500"
    assert s.docker.host == "unix:///file.sock"
    assert s.weave.api == "http://127.0.0.1:6784"


def test_ecosystem_tls_variables():
    env = {"CONSUL_HTTP_ADDR": "c:8501", "CONSUL_HTTP_SSL": "true", "CONSUL_CACERT": "/ca.pem",
           "CONSUL_CLIENT_CERT": "/c.pem", "CONSUL_CLIENT_KEY": "/k.pem",
           "NOMAD_SKIP_VERIFY": "1", "CONSUL_HTTP_SSL_VERIFY": "true"}
    s = build_settings({}, env)
    assert s.consul.addr == "https://c:8501"
    assert s.consul.tls.verify == "/ca.pem"
    assert s.consul.tls.cert == ("/c.pem", "/k.pem")
    assert s.nomad.tls.verify is False
    assert build_settings({}, {"CONSUL_HTTP_SSL_VERIFY": "false"}).consul.tls.verify is False


def test_tokens_never_in_repr():
    s = build_settings({}, {"NOMAD_TOKEN": "s3cr3t-nomad", "CONSUL_HTTP_TOKEN": "s3cr3t-consul"})
    assert s.nomad.token == "s3cr3t-nomad"
    assert "s3cr3t" not in repr(s)
    assert set(s.secrets()) == {"s3cr3t-nomad", "s3cr3t-consul"}


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="NOMAD_SKIP_VERIFY"):
        build_settings({}, {"NOMAD_SKIP_VERIFY": "maybe"})


def test_config_file_unknown_key_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"cfg.toml: unknown setting 'nomad.adr'"):
        parse_config_text('[nomad]\nadr = "x"\n', "cfg.toml")
    with pytest.raises(ConfigError, match="cfg.toml: invalid TOML"):
        parse_config_text("nomad = \n", "cfg.toml")
    with pytest.raises(ConfigError, match="http.timeout"):
        parse_config_text("[http]\ntimeout = -1\n", "cfg.toml")


def test_load_settings_reads_explicit_file_and_requires_it(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[consul]\naddr = "10.0.0.1:8500"\n[registry]\nkv_prefix = "/wn/"\n')
    s = load_settings({}, {}, str(path))
    assert s.consul.addr == "http://10.0.0.1:8500"
    assert s.kv_prefix == "wn/"
    assert s.config_file == str(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings({}, {}, str(tmp_path / "missing.toml"))
    s = load_settings({}, {"WEAVENOMAD_CONFIG": str(path)})
    assert s.consul.addr == "http://10.0.0.1:8500"


def test_node_bootstrap_and_reconciler_settings(tmp_path):
    text = ('[bootstrap]\npeers = ["192.168.56.4", "192.168.56.5"]\n'
            '[reconciler]\nresync = 30\nlog_format = "json"\n[nomad]\nconfig = "/etc/nomad.d"\n')
    s = build_settings({}, {"WEAVENOMAD_NOMAD_RESTART_COMMAND": "sv restart nomad"},
                       parse_config_text(text, "c.toml"))
    assert s.bootstrap.peers == ("192.168.56.4", "192.168.56.5")
    assert s.bootstrap.ipalloc_range == "10.32.0.0/16"
    assert s.reconciler.resync == 30.0 and s.reconciler.log_format == "json"
    assert s.nomad.config_path == "/etc/nomad.d"
    assert s.nomad.restart_command == "sv restart nomad"
    assert build_settings({}, {"WEAVENOMAD_PEERS": "a, b c"}).bootstrap.peers == ("a", "b", "c")
    assert build_settings({"peers": ("x",)}, {"WEAVENOMAD_PEERS": "a"}).bootstrap.peers == ("x",)
    with pytest.raises(ConfigError, match="reconciler.log_format"):
        parse_config_text('[reconciler]\nlog_format = "xml"\n', "c.toml")
