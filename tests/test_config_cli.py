"""bridge.config.resolve, SecurityConfig.client_allowed, the CLI parser and its exit codes
(real ``python -m bridge`` subprocesses)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import __version__
from bridge.cli.main import build_parser
from bridge.config import DEFAULT_MAX_PIXELS, SecurityConfig, resolve
from bridge.errors import ConfigError
from bridge.protocol import DEFAULT_HTTP_PORT, DEFAULT_OSC_PORT

REPO = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSE2PERSON_")}
    env.update(extra)
    return env


def run_bridge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=env or clean_env())


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "root"
    shm = tmp_path / "shm"
    root.mkdir()
    shm.mkdir()
    return {"allow_roots": [str(root)], "shm_dir": str(shm)}  # type: ignore[dict-item]


# ---------------------------------------------------------------------------------------------
# resolve()


def test_defaults(dirs: dict, tmp_path: Path) -> None:
    cfg = resolve(**dirs)
    assert cfg.osc.host == "127.0.0.1" and cfg.osc.port == DEFAULT_OSC_PORT == 9400 and cfg.osc.tcp
    assert cfg.http.host == "127.0.0.1" and cfg.http.port == DEFAULT_HTTP_PORT == 9401 and cfg.http.enabled
    assert cfg.security.allow_roots == ((tmp_path / "root").resolve(),)
    assert cfg.security.allow_clients == ()
    assert cfg.security.max_pixels == DEFAULT_MAX_PIXELS == 7680 * 4320
    assert cfg.shm.directory == (tmp_path / "shm").resolve()
    assert cfg.shm.slots == 3
    assert cfg.discovery.enabled and cfg.discovery.interfaces == ()
    assert cfg.discovery.instance_name
    assert cfg.pipeline.model == "passthrough"
    assert cfg.log_level == "info"
    with pytest.raises(Exception):  # frozen
        cfg.osc.port = 1  # type: ignore[misc]


def test_explicit_values(dirs: dict) -> None:
    cfg = resolve(host="0.0.0.0", osc_port=0, http_port=65535, no_http=True, no_tcp=True, model="invert",
                  allow_clients=["10.0.0.0/8", "::1"], max_pixels=1000, no_zeroconf=True,
                  zeroconf_interfaces=["192.168.1.2", "::1"], instance_name="studio A", log_level="debug", **dirs)
    assert (cfg.osc.host, cfg.osc.port, cfg.osc.tcp) == ("0.0.0.0", 0, False)
    assert (cfg.http.port, cfg.http.enabled) == (65535, False)
    assert cfg.pipeline.model == "invert"
    assert cfg.security.allow_clients == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert cfg.security.max_pixels == 1000
    assert not cfg.discovery.enabled and cfg.discovery.interfaces == ("192.168.1.2", "::1")
    assert cfg.discovery.instance_name == "studio A"
    assert cfg.log_level == "debug"


def test_localhost_and_ipv6_hosts(dirs: dict) -> None:
    assert resolve(host="localhost", **dirs).osc.host == "127.0.0.1"
    assert resolve(host="::1", **dirs).osc.host == "::1"
    assert resolve(host="::", **dirs).http.host == "::"


@pytest.mark.parametrize("field,value", [
    ("osc_port", -1), ("osc_port", 65536), ("osc_port", 99999),
    ("http_port", -5), ("http_port", 70000),
])
def test_bad_ports(dirs: dict, field: str, value: int) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(**{field: value}, **dirs)
    assert str(value) in str(info.value)


@pytest.mark.parametrize("host", ["example.com", "256.1.1.1", "", "127.0.0.1:9400", "1.2.3", "::g"])
def test_bad_hosts(dirs: dict, host: str) -> None:
    with pytest.raises(ConfigError):
        resolve(host=host, **dirs)


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "nonsense", "1.2.3.4/abc", "", "::1/129", "10.0.0.0/8/8"])
def test_bad_cidrs(dirs: dict, cidr: str) -> None:
    with pytest.raises(ConfigError):
        resolve(allow_clients=[cidr], **dirs)


def test_cidr_host_bits_are_accepted_loosely(dirs: dict) -> None:
    cfg = resolve(allow_clients=["10.1.2.3/8"], **dirs)
    assert cfg.security.allow_clients == (ipaddress.ip_network("10.0.0.0/8"),)


def test_other_bad_values(dirs: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        resolve(log_level="verbose", **dirs)
    with pytest.raises(ConfigError):
        resolve(max_pixels=0, **dirs)
    with pytest.raises(ConfigError):
        resolve(max_pixels=-1, **dirs)
    with pytest.raises(ConfigError):
        resolve(zeroconf_interfaces=["eth0"], **dirs)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigError):
        resolve(allow_roots=dirs["allow_roots"], shm_dir=str(not_a_dir))
    with pytest.raises(ConfigError):
        resolve(allow_roots=dirs["allow_roots"], shm_dir=str(tmp_path / "missing"))
    with pytest.raises(ConfigError):  # a file is in the way of the root
        resolve(allow_roots=[str(not_a_dir / "sub")], shm_dir=dirs["shm_dir"])


def test_creates_missing_allow_roots_and_resolves_them(tmp_path: Path) -> None:
    a = tmp_path / "new" / "nested" / "root"
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    cfg = resolve(allow_roots=[str(a), str(link)], shm_dir=str(tmp_path))
    assert a.is_dir()
    assert cfg.security.allow_roots == (a.resolve(), real.resolve())


def test_default_allow_root_is_under_the_temp_dir(tmp_path: Path) -> None:
    # In a subprocess with its own TMPDIR, so the real system temp dir is left alone.
    code = ("from bridge.config import resolve; import sys; "
            "print(resolve(shm_dir=sys.argv[1]).security.allow_roots[0])")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=60, env=clean_env(TMPDIR=str(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == (tmp_path / "pose2person").resolve()
    assert (tmp_path / "pose2person").is_dir()


# ---------------------------------------------------------------------------------------------
# client_allowed


def _sec(*cidrs: str) -> SecurityConfig:
    return SecurityConfig(allow_clients=tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))


def test_no_list_allows_everyone() -> None:
    sec = SecurityConfig()
    for host in ("127.0.0.1", "8.8.8.8", "::1", "whatever"):
        assert sec.client_allowed(host)


def test_ipv4_networks() -> None:
    sec = _sec("192.168.1.0/24", "10.0.0.5")
    assert sec.client_allowed("192.168.1.77")
    assert sec.client_allowed("192.168.1.0")
    assert sec.client_allowed("10.0.0.5")
    assert not sec.client_allowed("10.0.0.6")
    assert not sec.client_allowed("192.168.2.1")
    assert not sec.client_allowed("::1")
    assert not sec.client_allowed("not-an-ip")
    assert not sec.client_allowed("")


def test_ipv4_mapped_ipv6_matches_ipv4_networks() -> None:
    sec = _sec("192.168.1.0/24")
    assert sec.client_allowed("::ffff:192.168.1.5")
    assert sec.client_allowed("::ffff:c0a8:0105")
    assert not sec.client_allowed("::ffff:10.0.0.1")


def test_ipv6_networks_and_zone_ids() -> None:
    sec = _sec("::1", "fe80::/10", "2001:db8::/32")
    assert sec.client_allowed("::1")
    assert sec.client_allowed("fe80::1%eth0")
    assert sec.client_allowed("2001:db8:1::7")
    assert not sec.client_allowed("2001:db9::1")
    assert not sec.client_allowed("127.0.0.1")  # IPv4 loopback is not ::1


# ---------------------------------------------------------------------------------------------
# CLI parser and process exit codes


def test_parser_repeatable_flags() -> None:
    args = build_parser().parse_args([
        "serve", "--allow-root", "/a", "--allow-root", "/b", "--allow-client", "10.0.0.0/8",
        "--allow-client", "::1", "--zeroconf-interface", "127.0.0.1", "--zeroconf-interface", "::1",
        "--osc-port", "0", "--no-http", "--no-tcp", "--no-zeroconf", "--model", "throttle:20",
        "--max-pixels", "1234", "--log-level", "debug", "--name", "x",
    ])
    assert args.command == "serve"
    assert args.allow_roots == ["/a", "/b"]
    assert args.allow_clients == ["10.0.0.0/8", "::1"]
    assert args.zeroconf_interfaces == ["127.0.0.1", "::1"]
    assert (args.osc_port, args.no_http, args.no_tcp, args.no_zeroconf) == (0, True, True, True)
    assert (args.model, args.max_pixels, args.log_level, args.name) == ("throttle:20", 1234, "debug", "x")
    send = build_parser().parse_args(["send", "a.png", "b.mp4", "--transport", "path", "-o", "out"])
    assert send.inputs == ["a.png", "b.mp4"] and send.transport == "path" and send.output == "out"
    disc = build_parser().parse_args(["discover", "--interface", "1.2.3.4", "--interface", "::1", "--json"])
    assert disc.interface == ["1.2.3.4", "::1"] and disc.json


def test_parser_defaults_without_repeatable_flags() -> None:
    args = build_parser().parse_args(["serve"])
    assert args.allow_roots is None and args.allow_clients is None and args.zeroconf_interfaces is None
    assert args.max_pixels == DEFAULT_MAX_PIXELS
    assert not args.no_http and not args.no_zeroconf


def test_parser_usage_errors() -> None:
    parser = build_parser()
    for argv in ([], ["serve", "--log-level", "loud"], ["serve", "--osc-port", "abc"], ["bogus"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(argv)
        assert info.value.code == 2, argv


def test_environment_sets_defaults() -> None:
    code = ("from bridge.cli.main import build_parser; a = build_parser().parse_args(['serve']); "
            "print(a.host, a.osc_port, a.http_port, a.model, a.log_level)")
    env = clean_env(POSE2PERSON_HOST="0.0.0.0", POSE2PERSON_OSC_PORT="9100", POSE2PERSON_HTTP_PORT="9101",
                    POSE2PERSON_MODEL="invert", POSE2PERSON_LOG_LEVEL="warning")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0.0.0.0", "9100", "9101", "invert", "warning"]


def test_serve_with_bad_port_exits_3(tmp_path: Path) -> None:
    proc = run_bridge("serve", "--osc-port", "99999", "--no-zeroconf", "--no-http",
                      "--allow-root", str(tmp_path / "root"), "--shm-dir", str(tmp_path))
    assert proc.returncode == 3, proc.stderr
    assert "--osc-port must be 0..65535" in proc.stderr


def test_serve_with_bad_allow_client_exits_3(tmp_path: Path) -> None:
    proc = run_bridge("serve", "--allow-client", "not/a/net", "--no-zeroconf", "--no-http",
                      "--allow-root", str(tmp_path / "root"), "--shm-dir", str(tmp_path))
    assert proc.returncode == 3, proc.stderr
    assert "--allow-client" in proc.stderr


def test_usage_error_exits_2() -> None:
    proc = run_bridge("serve", "--osc-port", "not-a-number")
    assert proc.returncode == 2
    assert "usage" in proc.stderr.lower()


def test_version() -> None:
    proc = run_bridge("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"pose2person {__version__}"
    assert __version__ == "0.1.0"


def test_ipv4_mapped_ipv6_networks_match_mapped_addresses() -> None:
    # An allow list written in the dual-stack notation matches what a dual-stack socket reports.
    sec = _sec("::ffff:192.168.1.0/120")
    assert sec.client_allowed("::ffff:192.168.1.5")
    assert not sec.client_allowed("::ffff:192.168.2.5")
    assert not sec.client_allowed("2001:db8::1")
    both = _sec("::ffff:0:0/96", "10.0.0.0/8")
    assert both.client_allowed("::ffff:8.8.8.8")
    assert both.client_allowed("10.1.2.3")
    assert not both.client_allowed("8.8.8.8")  # a plain IPv4 peer is matched against IPv4 networks only


def test_resolved_allow_clients_drive_client_allowed(dirs: dict) -> None:
    sec = resolve(allow_clients=["127.0.0.1", "192.168.0.0/16", "fd00::/8"], **dirs).security
    assert sec.client_allowed("127.0.0.1")
    assert sec.client_allowed("::ffff:127.0.0.1")
    assert sec.client_allowed("192.168.200.1")
    assert sec.client_allowed("fd12:3456::1")
    assert not sec.client_allowed("127.0.0.2")
    assert not sec.client_allowed("::1")
    assert not sec.client_allowed("fe80::1")


def test_bad_environment_port_is_a_usage_error() -> None:
    proc = run_bridge("serve", "--no-zeroconf", env=clean_env(POSE2PERSON_OSC_PORT="nine"))
    assert proc.returncode == 2
    assert "--osc-port" in proc.stderr


def test_serve_with_bad_host_and_bad_zeroconf_interface_exit_3(tmp_path: Path) -> None:
    common = ("--no-zeroconf", "--no-http", "--allow-root", str(tmp_path / "root"), "--shm-dir", str(tmp_path))
    proc = run_bridge("serve", "--host", "not-a-host", *common)
    assert proc.returncode == 3, proc.stderr
    assert "--host" in proc.stderr
    proc = run_bridge("serve", "--zeroconf-interface", "eth0", *common)
    assert proc.returncode == 3, proc.stderr
    assert "--zeroconf-interface" in proc.stderr
    proc = run_bridge("serve", "--osc-port", "0", "--http-port", "70000", *common)
    assert proc.returncode == 3, proc.stderr
    assert "--http-port" in proc.stderr


def test_pipeline_depth_parses_auto_and_numbers_and_rejects_the_rest(dirs: dict) -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).pipeline_depth == 0  # auto
    assert parser.parse_args(["serve", "--pipeline-depth", "auto"]).pipeline_depth == 0
    assert parser.parse_args(["serve", "--pipeline-depth", "2"]).pipeline_depth == 2
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["serve", "--pipeline-depth", "deep"])
    assert info.value.code == 2
    assert resolve(**dirs, pipeline_depth=3).pipeline.pipeline_depth == 3
    for bad in (-1, 5):
        with pytest.raises(ConfigError, match="--pipeline-depth"):
            resolve(**dirs, pipeline_depth=bad)
