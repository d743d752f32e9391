"""The boot rehearsal's machinery: bake the instance image into a Debian rootfs, fake the AWS
around it (moto_server, an IMDSv2 service) and boot it under systemd-nspawn as EC2 boots an AMI.

Network (all addresses made here, in namespaces and links created here; nothing else is
reached): a "router" network namespace holds moto_server and the fake IMDS. The instance's
link `cvrh0c` (10.213.47.2, configured at boot by cloud-init from the NoCloud seed, in the
instance's own namespace) reaches it at 10.213.47.1 and 169.254.169.254; the host reaches it
through `cvrh1h` (10.213.48.1 -> 10.213.48.2), and the instance's HTTPS through a route via
the router.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from backend.paths import REPO_ROOT

AMI_REHEARSAL = REPO_ROOT / "ami" / "rehearsal"
STATE_DIR = REPO_ROOT / ".cvstack" / "rehearsal"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
MACHINE = "cvstack-rehearsal"
NETNS = "cvstack-rehearsal"
INSTANCE_NETNS = "cvstack-rehearsal-instance"
INSTANCE_LINK, ROUTER_LINK = "cvrh0c", "cvrh0r"
HOST_LINK, ROUTER_HOST_LINK = "cvrh1h", "cvrh1r"
ROUTER_ADDRESS, INSTANCE_ADDRESS, INSTANCE_NET = "10.213.47.1", "10.213.47.2", "10.213.47.0/24"
HOST_ADDRESS, ROUTER_HOST_ADDRESS = "10.213.48.1", "10.213.48.2"
IMDS_ADDRESS = "169.254.169.254"
MOTO_PORT = 5000
REGION = "eu-west-1"
ACCOUNT = "123456789012"
STACK_NAME = "Cvstack"
CLOUD_CONFIG = "datasource_list: [ NoCloud, None ]\nlocale: false\n"


class RehearsalError(RuntimeError):
    """A step of the rehearsal failed; the message says which and why."""


def run(command: list[str], *, timeout: float = 120) -> str:
    """Run a command; its stdout, or a RehearsalError carrying its output."""
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RehearsalError(f"{' '.join(command)}: no answer in {timeout} s") from exc
    if result.returncode != 0:
        raise RehearsalError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout[-3000:]}"
            f"\n{result.stderr[-3000:]}"
        )
    return result.stdout


def quietly(command: list[str]) -> None:
    """Run a clean-up command whose failure only means there was nothing to clean."""
    subprocess.run(command, capture_output=True, check=False)


# --- the image ---------------------------------------------------------------------------


def stage_source_tree(target: Path) -> Path:
    """The working tree as `git archive` would pack it (tracked and new, not ignored files)."""
    if target.exists():
        shutil.rmtree(target)
    git = ["git", "-C", str(REPO_ROOT)]
    listing = run([*git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    for name in sorted(set(filter(None, listing.split("\0")))):
        source = REPO_ROOT / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet in the index
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination, follow_symlinks=False)
    return target


@dataclass
class Timer:
    """Seconds per named step, in order."""

    steps: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = time.monotonic() - started


# --- the synthesized template -----------------------------------------------------------


@dataclass(frozen=True)
class CloudResources:
    """What the rehearsal created in moto for the template's references to resolve to."""

    bucket: str
    instance_id: str
    # Secret ARN by the template's logical id (the session-token key, the origin secret).
    secret_arns: dict[str, str]


class TemplateResolver:
    """Evaluates the intrinsic functions of a synthesized template against `CloudResources`."""

    def __init__(self, template: dict[str, Any], resources: CloudResources) -> None:
        self.resources_json: dict[str, Any] = template["Resources"]
        self.cloud = resources
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": STACK_NAME,
        }

    def resolve(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self._ref(argument)
            if function == "Fn::GetAtt":
                return self._get_att(argument[0], argument[1])
            if function == "Fn::Join":
                separator, parts = argument
                return str(separator).join(self.resolve(part) for part in parts)
            if function == "Fn::Base64":
                return self.resolve(argument)
            if function == "Fn::Sub":
                return self._sub(argument)
            if function == "Fn::Select":
                index, items = argument
                return self.resolve(items[int(self.resolve(index))])
        raise RehearsalError(f"cannot resolve {json.dumps(value)[:200]} from the template")

    def _type(self, logical_id: str) -> str:
        if logical_id not in self.resources_json:
            raise RehearsalError(f"the template has no resource {logical_id}")
        return str(self.resources_json[logical_id]["Type"])

    def _ref(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        kind = self._type(name)
        if kind == "AWS::S3::Bucket":
            return self.cloud.bucket
        if kind == "AWS::SecretsManager::Secret":
            if name not in self.cloud.secret_arns:
                raise RehearsalError(f"no rehearsal secret for {name}: {self.cloud.secret_arns}")
            return self.cloud.secret_arns[name]
        if kind == "AWS::EC2::Instance":
            return self.cloud.instance_id
        if kind == "AWS::SSM::Parameter":
            properties = self.resources_json[name]["Properties"]
            if "Name" not in properties:
                raise RehearsalError(f"SSM parameter {name} has no fixed Name in the template")
            return self.resolve(properties["Name"])
        raise RehearsalError(f"no rehearsal stand-in for Ref {name} ({kind})")

    def _get_att(self, name: str, attribute: str) -> str:
        kind = self._type(name)
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{self.cloud.bucket}"
        if kind == "AWS::SSM::Parameter" and attribute == "Value":
            return self.resolve(self.resources_json[name]["Properties"]["Value"])
        raise RehearsalError(f"no rehearsal stand-in for Fn::GetAtt {name}.{attribute} ({kind})")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return self.resolve(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self._get_att(logical_id, attribute)
            return self._ref(name)

        return re.sub(r"\$\{([^!}][^}]*)\}", replace, str(text))

    def instance_user_data(self) -> str:
        instances = [r for r in self.resources_json.values() if r["Type"] == "AWS::EC2::Instance"]
        if len(instances) != 1:
            raise RehearsalError(f"expected one AWS::EC2::Instance, found {len(instances)}")
        user_data = instances[0]["Properties"].get("UserData")
        if user_data is None:
            raise RehearsalError("the instance has no UserData in the template")
        return self.resolve(user_data)

    def parameter(self, name: str) -> str:
        """The Value of the template's SSM parameter with this Name."""
        for logical_id, resource in self.resources_json.items():
            if resource["Type"] == "AWS::SSM::Parameter" and self._ref(logical_id) == name:
                return self.resolve(resource["Properties"]["Value"])
        raise RehearsalError(f"the template has no SSM parameter named {name}")


def synthesized_template() -> dict[str, Any]:
    """The stack's template as `make synth` writes it (cdk.json's context, no cdk-nag)."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from infra_cdk.app import build_app  # noqa: PLC0415 (aws_cdk: ~2 s to import, only here)

    outdir = STATE_DIR / "cdk.out"
    shutil.rmtree(outdir, ignore_errors=True)
    app, stack = build_app(outdir=str(outdir), nag=False)
    assembly = app.synth()
    template: dict[str, Any] = assembly.get_stack_by_name(stack.stack_name).template
    return template


# --- network and fake AWS -----------------------------------------------------------------


class Network:
    """The router namespace with its link to the host (made once), and the instance's own
    namespace, made anew for every boot: systemd-nspawn joins it (`--network-namespace-path`),
    and a power cycle must not keep kernel network state (Docker's bridge and rules)."""

    def up(self) -> None:
        self.down()
        router = ["ip", "-n", NETNS]
        commands = [
            ["ip", "netns", "add", NETNS],
            [*router, "link", "set", "lo", "up"],
            [*router, "addr", "add", f"{IMDS_ADDRESS}/32", "dev", "lo"],
            ["ip", "netns", "exec", NETNS, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
            ["ip", "link", "add", HOST_LINK, "type", "veth", "peer", ROUTER_HOST_LINK],
            ["ip", "link", "set", ROUTER_HOST_LINK, "netns", NETNS],
            ["ip", "addr", "add", f"{HOST_ADDRESS}/30", "dev", HOST_LINK],
            [*router, "addr", "add", f"{ROUTER_HOST_ADDRESS}/30", "dev", ROUTER_HOST_LINK],
            ["ip", "link", "set", HOST_LINK, "up"],
            [*router, "link", "set", ROUTER_HOST_LINK, "up"],
            ["ip", "route", "add", INSTANCE_NET, "via", ROUTER_HOST_ADDRESS, "dev", HOST_LINK],
        ]
        for command in commands:
            run(command)

    def new_instance_namespace(self) -> None:
        """The instance's namespace with its link, down and without an address (for cloud-init
        to configure at boot). Namespaces go away asynchronously: the old link is deleted first."""
        quietly(["ip", "-n", NETNS, "link", "del", ROUTER_LINK])
        quietly(["ip", "netns", "del", INSTANCE_NETNS])
        router = ["ip", "-n", NETNS]
        commands = [
            ["ip", "netns", "add", INSTANCE_NETNS],
            ["ip", "link", "add", INSTANCE_LINK, "type", "veth", "peer", ROUTER_LINK],
            ["ip", "link", "set", ROUTER_LINK, "netns", NETNS],
            ["ip", "link", "set", INSTANCE_LINK, "netns", INSTANCE_NETNS],
            [*router, "addr", "add", f"{ROUTER_ADDRESS}/24", "dev", ROUTER_LINK],
            [*router, "link", "set", ROUTER_LINK, "up"],
        ]
        for command in commands:
            run(command)

    def down(self) -> None:
        """Remove everything made here (also what a killed run left)."""
        quietly(["ip", "netns", "del", INSTANCE_NETNS])
        quietly(["ip", "netns", "del", NETNS])
        quietly(["ip", "link", "del", HOST_LINK])
        quietly(["ip", "link", "del", INSTANCE_LINK])


class Service:
    """A process in the router namespace, logged to a file, stopped by its own id."""

    def __init__(self, name: str, command: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as handle:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", NETNS, *command],
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _remember_pid(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def moto_url(address: str = ROUTER_HOST_ADDRESS) -> str:
    return f"http://{address}:{MOTO_PORT}"


def aws_client(service: str) -> Any:
    """A boto3 client of the rehearsal's moto_server, from the host."""
    make_client: Any = boto3.client  # one helper for five services: no per-service stub type
    return make_client(
        service,
        region_name=REGION,
        endpoint_url=moto_url(),
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def wait_for_url(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.1)
    raise RehearsalError(f"{url} did not answer in {timeout_s} s")


# --- the machine ----------------------------------------------------------------------------


PID_FILE = STATE_DIR / "pids"


def _remember_pid(pid: int) -> None:
    PID_FILE.parent.mkdir(parents=True, exist_ok=True)
    with PID_FILE.open("a") as handle:
        handle.write(f"{pid}\n")


def stop_leftovers() -> None:
    """Processes a killed earlier rehearsal started (recorded by id) and its links."""
    if PID_FILE.is_file():
        for line in PID_FILE.read_text().split():
            pid = int(line)
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"systemd-nspawn" in command or NETNS.encode() in command:
                    os.kill(pid, signal.SIGKILL)
        PID_FILE.unlink()
    Network().down()


def seed_instance(root: Path, user_data: str, instance_id: str) -> None:
    """What EC2 provides around the image: the user data and instance id (cloud-init NoCloud
    seed), the network (cloud-init network config, as EC2's DHCP would) and, as contract item 4
    allows, the AWS endpoint override that points boto3 at moto_server."""
    seed = root / "var/lib/cloud/seed/nocloud"
    seed.mkdir(parents=True, exist_ok=True)
    (seed / "user-data").write_text(user_data)
    (seed / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {MACHINE}\n")
    (seed / "network-config").write_text(
        "version: 2\n"
        "ethernets:\n"
        f"  {INSTANCE_LINK}:\n"
        f"    addresses: [{INSTANCE_ADDRESS}/24]\n"
        f"    routes: [{{to: 0.0.0.0/0, via: {ROUTER_ADDRESS}}}]\n"
    )
    # On EC2 the link is configured by DHCPv4, which ends systemd-networkd's wait for
    # network-online.target; with static addresses networkd would instead solicit an IPv6
    # router for 12 s (3 x 4 s) first (cloud-init 22.4 renders accept-ra only with DHCP).
    drop_in = root / f"etc/systemd/network/10-cloud-init-{INSTANCE_LINK}.network.d"
    drop_in.mkdir(parents=True, exist_ok=True)
    (drop_in / "rehearsal.conf").write_text("[Network]\nIPv6AcceptRA=no\n")
    (root / "etc/cloud/cloud.cfg.d/99-rehearsal.cfg").write_text(CLOUD_CONFIG)
    (root / "etc/cvstack").mkdir(parents=True, exist_ok=True)
    (root / "etc/cvstack/aws.env").write_text(f"AWS_ENDPOINT_URL={moto_url(ROUTER_ADDRESS)}\n")
    run(
        [
            "systemctl",
            f"--root={root}",
            "--quiet",
            "enable",
            "systemd-networkd.service",
            "systemd-networkd-wait-online.service",
        ]
    )


@dataclass
class UnitTimes:
    """One unit's activation, in seconds since the machine was started (None: did not run)."""

    unit: str
    started: float | None
    finished: float | None
    result: str
    state: str
    restarts: int


class Boot:
    """One boot of the machine: systemd-nspawn with systemd as PID 1, its console in a file."""

    def __init__(self, root: Path, docker_root: Path, console: Path) -> None:
        self.root = root
        self.console = console
        self.t0 = time.monotonic()
        with console.open("wb") as handle:
            self.process = subprocess.Popen(
                [
                    "systemd-nspawn",
                    f"--directory={root}",
                    f"--machine={MACHINE}",
                    "--boot",
                    "--register=no",
                    "--keep-unit",
                    f"--network-namespace-path=/run/netns/{INSTANCE_NETNS}",
                    "--console=read-only",
                    # An EC2 instance's root holds every capability (Docker needs NET_ADMIN
                    # for its bridge, SYS_RESOURCE for the memlock limit of Triton's container).
                    "--capability=all",
                    "--system-call-filter=@keyring bpf",
                    f"--bind={docker_root}:/var/lib/docker",
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"},
                start_new_session=True,
            )
        _remember_pid(self.process.pid)
        self.init_pid = self._find_init()

    def _find_init(self, timeout_s: float = 10) -> int:
        """The container's PID 1 (systemd), as the host sees it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RehearsalError(f"systemd-nspawn exited: {self.console_text()[-3000:]}")
            for pid in _descendants(self.process.pid):
                with contextlib.suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    nspid = re.search(r"^NSpid:\s+(.*)$", status, re.MULTILINE)
                    if nspid and nspid.group(1).split()[-1] == "1":
                        return pid
            time.sleep(0.05)
        raise RehearsalError("the machine's systemd did not start")

    def since_start(self, monotonic_us: int) -> float | None:
        return None if monotonic_us == 0 else monotonic_us / 1e6 - self.t0

    def exec(self, command: list[str], timeout: float = 60, check: bool = True) -> str:
        """Run a command inside the machine (all its namespaces)."""
        full = ["nsenter", "-t", str(self.init_pid), "-a", *command]
        if check:
            return run(full, timeout=timeout)
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
        return result.stdout + result.stderr

    def wait_started(self, timeout_s: float) -> str:
        """`systemctl is-system-running --wait`: running, or degraded (a failed unit)."""
        return self.exec(
            ["timeout", str(int(timeout_s)), "systemctl", "is-system-running", "--wait"],
            timeout=timeout_s + 10,
            check=False,
        ).strip()

    def unit_times(self, units: list[str]) -> dict[str, UnitTimes]:
        properties = [
            "Id",
            "InactiveExitTimestampMonotonic",
            "ActiveEnterTimestampMonotonic",
            "ExecMainStartTimestampMonotonic",
            "ExecMainExitTimestampMonotonic",
            "Result",
            "ActiveState",
            "NRestarts",
        ]
        text = self.exec(["systemctl", "show", f"--property={','.join(properties)}", *units])
        times: dict[str, UnitTimes] = {}
        for block in text.strip().split("\n\n"):
            values = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            unit = values["Id"]
            started = int(values.get("InactiveExitTimestampMonotonic") or 0)
            finished = int(values.get("ActiveEnterTimestampMonotonic") or 0)
            main_exit = int(values.get("ExecMainExitTimestampMonotonic") or 0)
            if unit.endswith(".service") and not finished and main_exit:
                finished = main_exit  # a oneshot without RemainAfterExit (the heartbeat)
            times[unit] = UnitTimes(
                unit,
                self.since_start(started),
                self.since_start(finished),
                values.get("Result", ""),
                values.get("ActiveState", ""),
                int(values.get("NRestarts") or 0),
            )
        return times

    def raise_on_trouble(self) -> None:
        """Fail fast, with the journal, once a unit failed or a cvstack unit had to restart."""
        text = self.exec(["systemctl", "show", "--property=Id,NRestarts", "cvstack-*"])
        blocks = [
            dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            for block in text.strip().split("\n\n")
        ]
        restarted = [b["Id"] for b in blocks if int(b.get("NRestarts") or 0) > 0]
        troubled = self.failed_units() + restarted
        if troubled:
            journals = "\n".join(f"--- {unit}\n{self.journal(unit)}" for unit in troubled)
            raise RehearsalError(f"units failed or restarted: {troubled}\n{journals}")

    def failed_units(self) -> list[str]:
        text = self.exec(["systemctl", "list-units", "--failed", "--plain", "--no-legend"])
        return [line.split()[0] for line in text.splitlines() if line.strip()]

    def journal(self, unit: str, lines: int = 60) -> str:
        return self.exec(
            [
                "journalctl",
                "--boot",
                "--no-pager",
                "-o",
                "short-monotonic",
                "-n",
                str(lines),
                "-u",
                unit,
            ],
            check=False,
        )

    def console_text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.is_file() else ""

    def halt(self, timeout_s: float = 90) -> float:
        """Power off as EC2's stop does (SIGTERM to nspawn: systemd shuts down); seconds taken."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise RehearsalError(f"the machine did not power off in {timeout_s} s") from None
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    queue = [pid]
    while queue:
        current = queue.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                found.extend(int(child) for child in children)
                queue.extend(int(child) for child in children)
    return found


def instance_tls_context(root: Path, timeout_s: float = 120) -> ssl.SSLContext:
    """Trust exactly the certificate the instance made for itself at boot (tls-setup.sh).
    It names localhost and 127.0.0.1, so the host name is not checked."""
    certificate = root / "etc/cvstack/tls/fullchain.pem"
    deadline = time.monotonic() + timeout_s
    while not certificate.is_file():
        if time.monotonic() > deadline:
            raise RehearsalError(f"no {certificate} after {timeout_s} s (cvstack-tls.service)")
        time.sleep(0.1)
    context = ssl.create_default_context(cadata=certificate.read_text())
    context.check_hostname = False
    return context


def wait_ready(boot: Boot, timeout_s: float) -> float:
    """Poll `https://<instance>/ready` through nginx; seconds from start to the first 200."""
    context = instance_tls_context(boot.root, timeout_s)
    deadline = boot.t0 + timeout_s
    url = f"https://{INSTANCE_ADDRESS}/ready"
    checked = time.monotonic()
    while time.monotonic() < deadline:
        if boot.process.poll() is not None:
            raise RehearsalError("the machine stopped before /ready answered")
        if time.monotonic() - checked > 2:
            checked = time.monotonic()
            boot.raise_on_trouble()
        with (
            contextlib.suppress(urllib.error.HTTPError, OSError),
            urllib.request.urlopen(url, timeout=2, context=context) as response,
        ):
            if response.status == 200:
                return time.monotonic() - boot.t0
        time.sleep(0.2)
    raise RehearsalError(f"{url} did not answer 200 within {timeout_s} s of the boot")


def decode_user_data(value: str) -> str:
    """User data as cloud-init gets it (the template's Fn::Base64 is already unwrapped)."""
    with contextlib.suppress(ValueError):
        decoded = base64.b64decode(value, validate=True).decode()
        if decoded.startswith(("#cloud-config", "#!", "Content-Type")):
            return decoded
    return value


# --- one rehearsal: setup and teardown -----------------------------------------------------


RUN_DIR = Path("/dev/shm/cvstack-rehearsal")  # tmpfs: the disk is slow at many small files


class Rehearsal:
    """Everything around the machine, built on enter and torn down on exit (also on failure)."""

    def __init__(self) -> None:
        self.timer = Timer()
        self.logs = STATE_DIR / "logs"
        self.network = Network()
        self.services: list[Service] = []
        self.boots: list[Boot] = []
        self.root = RUN_DIR / "machine"
        self.docker_root = RUN_DIR / "docker"
        self.session_secret = base64.urlsafe_b64encode(os.urandom(36)).decode()
        # What CloudFront sends in X-Cvstack-Origin-Secret: alphanumerics, like the stack's.
        self.origin_secret = secrets.token_hex(24)
        self.settings_parameter = ""
        self.settings: dict[str, str] = {}
        self.cloud: CloudResources | None = None
        self.started = time.monotonic()

    def __enter__(self) -> Rehearsal:
        try:
            self._prepare()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prepare(self) -> None:
        stop_leftovers()
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True)
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        RUN_DIR.mkdir(parents=True)
        background = {
            "rootfs": self._spawn(["bash", str(AMI_REHEARSAL / "rootfs.sh"), str(STATE_DIR)]),
            "wheelhouse": self._spawn(
                [
                    "bash",
                    str(AMI_REHEARSAL / "wheelhouse.sh"),
                    str(STATE_DIR),
                    str(VENV_BIN / "pip"),
                    str(REPO_ROOT / "pyproject.toml"),
                ]
            ),
            "models": self._spawn(
                [
                    str(VENV_BIN / "cvstack"),
                    "models",
                    "prepare",
                    "--random-weights",
                    "--skip-existing",
                    "--models-dir",
                    str(STATE_DIR / "models"),
                ]
            ),
        }
        with self.timer.step("network, moto_server, fake IMDS"):
            self.network.up()
            self.services.append(
                Service(
                    "moto",
                    [str(VENV_BIN / "moto_server"), "-H", "0.0.0.0", "-p", str(MOTO_PORT)],
                    self.logs / "moto_server.log",
                )
            )
            wait_for_url(f"{moto_url()}/moto-api/", 20)
            self.cloud = self._create_cloud_resources()
            self.services.append(
                Service(
                    "imds",
                    [
                        str(VENV_BIN / "python"),
                        "-m",
                        "tests.rehearsal.fake_imds",
                        "--instance-id",
                        self.cloud.instance_id,
                        "--region",
                        REGION,
                        "--log",
                        str(self.logs / "imds.jsonl"),
                        "--outage-file",
                        str(self.logs / "imds-outage"),
                        "--lifecycle-state-file",
                        str(self.logs / "imds-lifecycle-state"),
                        "--tags-dir",
                        str(self.logs / "imds-tags"),
                    ],
                    self.logs / "imds.log",
                )
            )
        with self.timer.step("synthesize the stack, resolve user data and settings"):
            template = synthesized_template()
            self._create_secrets(template)
            resolver = TemplateResolver(template, self.cloud)
            self.user_data = decode_user_data(resolver.instance_user_data())
            match = re.search(r"CVSTACK_SETTINGS_PARAMETER=(\S+)", self.user_data)
            if match is None:
                raise RehearsalError(
                    "the template's user data names no CVSTACK_SETTINGS_PARAMETER:\n"
                    + self.user_data
                )
            self.settings_parameter = match.group(1)
            self.settings = json.loads(resolver.parameter(self.settings_parameter))
            self.put_settings(self.settings)
        with self.timer.step("wait: rootfs, wheelhouse, models"):
            outputs = {name: self._finish(name, process) for name, process in background.items()}
        self._upload_models(STATE_DIR / "models")
        rootfs = Path(outputs["rootfs"].strip())
        with self.timer.step("source tree"):
            tree = stage_source_tree(RUN_DIR / "source")
        with self.timer.step("images (docker build, layer cache)"):
            self._log_run(
                "images",
                [
                    "bash",
                    str(AMI_REHEARSAL / "images.sh"),
                    str(rootfs),
                    str(tree),
                    str(STATE_DIR),
                    str(self.docker_root),
                ],
            )
        with self.timer.step("extract rootfs (tmpfs)"):
            self.root.mkdir()
            run(["tar", "--numeric-owner", "-C", str(self.root), "-xf", str(rootfs)], timeout=300)
        with self.timer.step("install image (provision.sh steps)"):
            self._log_run(
                "install-image",
                [
                    "bash",
                    str(AMI_REHEARSAL / "install-image.sh"),
                    str(self.root),
                    str(tree),
                    str(STATE_DIR / "nginx-site"),
                ],
            )
        seed_instance(self.root, self.user_data, self.cloud.instance_id)

    def _spawn(self, command: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"},
        )

    def _finish(self, name: str, process: subprocess.Popen[str]) -> str:
        stdout, stderr = process.communicate(timeout=600)
        (self.logs / f"{name}.log").write_text(stdout + stderr)
        if process.returncode != 0:
            raise RehearsalError(f"{name} failed:\n{stdout[-2000:]}\n{stderr[-3000:]}")
        return stdout

    def _log_run(self, name: str, command: list[str]) -> None:
        process = self._spawn(command)
        self._finish(name, process)

    def _create_cloud_resources(self) -> CloudResources:
        s3 = aws_client("s3")
        bucket = "cvstack-rehearsal-models"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        ec2 = aws_client("ec2")
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instance = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge"
        )["Instances"][0]["InstanceId"]
        return CloudResources(bucket=bucket, instance_id=instance, secret_arns={})

    def _create_secrets(self, template: dict[str, Any]) -> None:
        """One moto secret per secret in the template, with the value its role needs."""
        assert self.cloud is not None
        values = {"SessionSecret": self.session_secret, "OriginSecret": self.origin_secret}
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::SecretsManager::Secret":
                continue
            role = next((r for r in values if logical_id.startswith(r)), None)
            if role is None:
                raise RehearsalError(f"the rehearsal has no value for the secret {logical_id}")
            created = aws_client("secretsmanager").create_secret(
                Name=f"cvstack-rehearsal-{role}", SecretString=values[role]
            )
            self.cloud.secret_arns[logical_id] = created["ARN"]

    def _upload_models(self, models: Path) -> None:
        assert self.cloud is not None
        s3 = aws_client("s3")
        prefix = self.settings["CVSTACK_MODELS_S3_URI"].removeprefix(f"s3://{self.cloud.bucket}/")
        for path in sorted(models.iterdir()):
            if path.is_file():
                s3.upload_file(str(path), self.cloud.bucket, f"{prefix}{path.name}")

    def put_settings(self, settings: dict[str, str]) -> None:
        """Write the settings parameter (as `cdk deploy` does when cdk.json changes)."""
        self.settings = dict(settings)
        aws_client("ssm").put_parameter(
            Name=self.settings_parameter,
            Value=json.dumps(settings),
            Type="String",
            Overwrite=True,
        )

    def boot(self, name: str) -> Boot:
        self.network.new_instance_namespace()
        boot = Boot(self.root, self.docker_root, self.logs / f"console-{name}.log")
        self.boots.append(boot)
        return boot

    def s3_downloads(self, after_line: int = 0) -> tuple[list[str], int]:
        """Objects the instance fetched from the model bucket (moto_server's request log),
        from line `after_line` on; and the log's line count, for the next call."""
        assert self.cloud is not None
        lines = (self.logs / "moto_server.log").read_text(errors="replace").splitlines()
        pattern = re.compile(
            rf'^{re.escape(INSTANCE_ADDRESS)} .*"GET /{re.escape(self.cloud.bucket)}/([^ ?]+)'
        )
        keys = [m.group(1) for line in lines[after_line:] if (m := pattern.match(line))]
        return keys, len(lines)

    def imds_outage(self, requests: int) -> None:
        """Answer the next `requests` credential requests with 404, as IMDS can early in a boot."""
        (self.logs / "imds-outage").write_text(str(requests))

    def target_lifecycle_state(self, state: str) -> None:
        """IMDS's `autoscaling/target-lifecycle-state` from now on, as Auto Scaling sets it for
        an instance of its group (none until the first call: an instance outside a group)."""
        path = self.logs / "imds-lifecycle-state"
        partial = path.with_name(f"{path.name}.partial")
        partial.write_text(state)
        partial.replace(path)  # IMDS reads the old state or the new one, never an empty file

    def instance_tag(self, key: str, value: str | None) -> None:
        """Set (or with None remove) one of the instance's tags, as IMDS serves them with
        instance-metadata tags on (start_server tags the instance it boots)."""
        tags = self.logs / "imds-tags"
        tags.mkdir(exist_ok=True)
        if value is None:
            (tags / key).unlink(missing_ok=True)
            return
        partial = tags.with_name(f"{key}.partial")
        partial.write_text(value)
        partial.replace(tags / key)

    def failed_aws_calls(self) -> int:
        """Calls from the instance that moto_server answered 500 (what it answers for an action
        it lacks), in its request log (lines may carry colour codes)."""
        lines = (self.logs / "moto_server.log").read_text(errors="replace").splitlines()
        pattern = re.compile(rf'^{re.escape(INSTANCE_ADDRESS)} .*POST / HTTP/[0-9.]+\S*" 500 ')
        return sum(1 for line in lines if pattern.match(line))

    def imds_requests(self) -> list[dict[str, Any]]:
        log = self.logs / "imds.jsonl"
        if not log.is_file():
            return []
        return [json.loads(line) for line in log.read_text().splitlines() if line]

    def close(self) -> None:
        for boot in self.boots:
            with contextlib.suppress(RehearsalError):
                if boot.process.poll() is None:
                    boot.halt(60)
            boot.kill()
        for service in self.services:
            service.stop()
        self.network.down()
        quietly(["umount", "-R", str(self.root)])  # nothing should be left; be sure
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            PID_FILE.unlink()
