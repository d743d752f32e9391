"""A fake EC2 instance metadata service (IMDSv2 only) for the boot rehearsal.

Runs in the rehearsal's own network namespace on 169.254.169.254:80, where the booted
instance's boto3 finds it exactly as on EC2 (the stack sets `require_imdsv2`): a token from
`PUT /latest/api/token` first, then GETs that carry it. A GET without a valid token is refused
with 401, as EC2 does with IMDSv2 required. Every request is logged as one JSON line, so the
test can prove the instance took its identity and credentials from here, with tokens.

`--outage-file`: while it holds a number N > 0, the next N credential requests answer 404 (and
count it down), as IMDS can in the first seconds of a boot before the instance profile is there.

`--lifecycle-state-file`: while it exists, its text is `autoscaling/target-lifecycle-state`
(`InService`, `Terminated`, ...), as for an instance of an Auto Scaling group; the test switches
it by rewriting the file. Without it that item is missing (404), as for an instance outside a
group (single mode).

`--tags-dir`: each file in it is an instance tag (file name = key, text = value), served at
`tags/instance/<key>` and listed at `tags/instance`, as EC2 does with instance-metadata tags on.

    python -m tests.rehearsal.fake_imds --instance-id i-... --region eu-west-1 --log FILE
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TTL_S = 21600
LIFECYCLE_STATE_PATH = "/latest/meta-data/autoscaling/target-lifecycle-state"
TAGS_PATH = "/latest/meta-data/tags/instance"


class Metadata:
    """The instance's metadata tree and the tokens handed out so far."""

    def __init__(
        self,
        instance_id: str,
        region: str,
        role: str,
        log: Path,
        *,
        outage: Path | None = None,
        lifecycle_state: Path | None = None,
        tags: Path | None = None,
    ) -> None:
        zone = f"{region}a"
        now = datetime.now(UTC)
        credentials = {
            "Code": "Success",
            "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            "AccessKeyId": "ASIAREHEARSAL" + secrets.token_hex(4).upper(),
            "SecretAccessKey": secrets.token_urlsafe(30),
            "Token": secrets.token_urlsafe(60),
            "Expiration": (now + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        document = {
            "instanceId": instance_id,
            "region": region,
            "availabilityZone": zone,
            "accountId": "123456789012",
            "instanceType": "g4dn.xlarge",
            "architecture": "x86_64",
        }
        self.paths: dict[str, str] = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/meta-data/placement/region": region,
            "/latest/meta-data/placement/availability-zone": zone,
            "/latest/meta-data/iam/security-credentials/": role,
            f"/latest/meta-data/iam/security-credentials/{role}": json.dumps(credentials),
            "/latest/dynamic/instance-identity/document": json.dumps(document),
        }
        self.tokens: dict[str, datetime] = {}
        self.log = log
        self.outage = outage
        self.lifecycle_state = lifecycle_state
        self.tags = tags
        self.lock = threading.Lock()

    def item(self, path: str) -> str | None:
        """The metadata at `path` (a trailing slash or not); None: no such item."""
        if path.rstrip("/") == LIFECYCLE_STATE_PATH:
            if self.lifecycle_state is None or not self.lifecycle_state.is_file():
                return None
            return self.lifecycle_state.read_text().strip()
        if path.rstrip("/").startswith(TAGS_PATH):
            return self.tag(path.rstrip("/").removeprefix(TAGS_PATH).lstrip("/"))
        return self.paths.get(path) or self.paths.get(path.rstrip("/"))

    def tag(self, key: str) -> str | None:
        """One tag's value, or the keys one per line when `key` is empty; None: no such tag."""
        if self.tags is None or not self.tags.is_dir():
            return None
        if not key:
            return "\n".join(sorted(p.name for p in self.tags.iterdir())) or None
        path = self.tags / key
        return path.read_text() if "/" not in key and path.is_file() else None

    def in_outage(self, path: str) -> bool:
        """Whether this credentials request falls in an injected outage (counted down)."""
        if self.outage is None or "/iam/security-credentials" not in path:
            return False
        with self.lock:
            left = int(self.outage.read_text() or 0) if self.outage.is_file() else 0
            if left <= 0:
                return False
            self.outage.write_text(str(left - 1))
            return True

    def issue(self, ttl_s: int) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = datetime.now(UTC) + timedelta(seconds=ttl_s)
        return token

    def valid(self, token: str | None) -> bool:
        with self.lock:
            expires = self.tokens.get(token or "")
        return expires is not None and expires > datetime.now(UTC)

    def record(self, **entry: Any) -> None:
        with self.lock, self.log.open("a") as handle:
            handle.write(json.dumps(entry) + "\n")


def handler_for(metadata: Metadata) -> type[BaseHTTPRequestHandler]:
    """A request handler bound to one instance's metadata."""

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            if self.path != TOKEN_PATH:
                self._answer(405, "")
                return
            ttl = self.headers.get(TTL_HEADER, "")
            # EC2 refuses token requests that went through a proxy (X-Forwarded-For).
            if not ttl.isdigit() or not 1 <= int(ttl) <= MAX_TTL_S or self._forwarded():
                self._answer(400, "")
                return
            self._answer(200, metadata.issue(int(ttl)))

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if not metadata.valid(self.headers.get(TOKEN_HEADER)):
                self._answer(401, "")
                return
            if metadata.in_outage(path):
                self._answer(404, "")
                return
            body = metadata.item(path)
            self._answer(200 if body is not None else 404, body or "")

        def _forwarded(self) -> bool:
            return self.headers.get("X-Forwarded-For") is not None

        def _answer(self, status: int, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            metadata.record(
                method=self.command,
                path=self.path,
                status=status,
                token=self.headers.get(TOKEN_HEADER) is not None,
                client=self.client_address[0],
            )

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the JSON log is the record."""

    return Handler


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instance-id", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--role", default="cvstack-rehearsal-instance-role")
    parser.add_argument("--address", default="169.254.169.254")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--outage-file", type=Path)
    parser.add_argument("--lifecycle-state-file", type=Path)
    parser.add_argument("--tags-dir", type=Path)
    args = parser.parse_args()
    metadata = Metadata(
        args.instance_id,
        args.region,
        args.role,
        args.log,
        outage=args.outage_file,
        lifecycle_state=args.lifecycle_state_file,
        tags=args.tags_dir,
    )
    server = ThreadingHTTPServer((args.address, args.port), handler_for(metadata))
    server.serve_forever()


if __name__ == "__main__":
    main()
