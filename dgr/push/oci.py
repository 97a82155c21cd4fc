"""Push the OCI layout of a build to a registry with skopeo (SPEC §10).

`skopeo copy oci:<target>/oci:<tag> docker://<registry>[/<namespace>]/<path>:<tag>`,
where `<path>` is the image name without its domain (`aci.example.com/group/app` →
`group/app`) and `<tag>` its version as an OCI tag (dgr.names.oci_tag: `1.0+b1` → `1.0_b1`).
skopeo speaks the distribution API, including the bearer-token dance that a registry asks
for in `WWW-Authenticate`.

- Credentials reach skopeo in an auth.json that exists in memory only (a memfd, read by
  skopeo as /proc/self/fd/N), never in its arguments nor on disk: a killed dgr leaves no
  credentials behind. Without configured credentials, skopeo gets the containers auth file
  that `podman login` wrote (`containers_auth_file`), and without that `--dest-no-creds`,
  so that it picks up no other credentials of the host. A configured `authFile` is checked
  first (its entry for the registry must be base64 of `user:password`).
- Before skopeo runs, the registry must answer `GET /v2/` within ANSWER_TIMEOUT seconds (or
  the target's timeout, when shorter): one that accepts connections but never answers fails
  in seconds, not after the whole push's timeout.
- One skopeo run is one attempt, ended after the target's timeout; a network failure
  (unreachable, timed out, HTTP 5xx) is a NetworkError, which `dgr.push` tries again.
- TLS: `--dest-tls-verify=true` unless the registry's host is opted out in `insecureOptions`
  (`tls:HOST[:PORT]` or `http:HOST[:PORT]`). skopeo has one switch for both: when it is off,
  skopeo accepts plain HTTP *and* unchecked certificates for that registry.
- Our own trust policy (accept anything): the source is this host's own build.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from dgr.config import Config
from dgr.discovery import host_policy
from dgr.log import log
from dgr.names import ImageName, oci_tag
from dgr.oci import REPOSITORY_COMPONENT, SKOPEO_POLICY, TAG
from dgr.process import require_tool, run
from dgr.push.targets import (
    NetworkError,
    PushError,
    Target,
    auth_file_json,
    containers_auth_file,
    credentials_from_auth_file,
)

# skopeo's words for failures that another attempt may not meet: the network, HTTP 5xx.
TRANSIENT = re.compile(
    r"connection refused|connection reset|i/o timeout|timeout|no route to host|\beof\b|\b50[0234]\b"
)
SERVER_ERROR = re.compile(r"(?:status code from registry|status:?) (5\d\d)(?: \(([^)]*)\))?", re.IGNORECASE)
ANSWER_TIMEOUT = 10.0  # seconds the registry has to answer GET /v2/ before the push starts


@dataclass(frozen=True)
class OciPush:
    """The outcome of one OCI push."""

    reference: str  # registry/path:tag
    digest: str  # of the image manifest, as the registry stores it


def repository(name: ImageName, target: Target) -> str:
    """`<registry>[/<namespace>]/<name without domain>` (PushError for a name OCI refuses)."""
    path = "/".join(p for p in (target.namespace, name.short_name) if p)
    for component in path.split("/"):
        if not REPOSITORY_COMPONENT.match(component):
            raise PushError(
                f"cannot push {name.name} to a registry: {component!r} is not a valid OCI repository "
                "path component",
                key=f"{target.key}.namespace",
                hint="OCI names take lower case letters and digits separated by '.', '_', '__' or '-'",
            )
    return f"{target.registry}/{path}"


def tag(name: ImageName) -> str:
    """The registry tag of `name`: its version mapped to an OCI tag (dgr.names.oci_tag)."""
    mapped = oci_tag(name.version)
    if not TAG.match(mapped):
        raise PushError(
            f"cannot push {name}: version {name.version!r} is not a valid OCI tag",
            hint="tags take letters, digits, '_', '.' and '-' (at most 128)",
        )
    return mapped


def tls_verify(target: Target, config: Config) -> bool:
    """False when the registry host is opted out (tls:HOST or http:HOST in insecureOptions)."""
    policy = host_policy(config)
    url = f"https://{target.registry}/"
    return not (policy.allows("tls", url) or policy.allows("http", url))


class _LogLines(io.StringIO):
    """A text sink that logs each complete line (skopeo's progress: one line per step)."""

    def __init__(self, prefix: str, secret: str | None = None) -> None:
        super().__init__()
        self.prefix = prefix
        self.secret = secret
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if self.secret:
                line = line.replace(self.secret, "***")
            if line.strip() and not line.startswith("time="):  # errors are reported once, below
                log.info("%s%s", self.prefix, line.strip())
        return len(text)


def skopeo_arguments(
    layout: Path,
    layout_tag: str,
    destination: str,
    *,
    verify: bool,
    auth_file: Path | None,
    policy: Path,
    digest_file: Path,
) -> list[str]:
    """The skopeo command line (it holds no secret: credentials are in `auth_file`)."""
    args = [
        require_tool("skopeo"),
        "--policy",
        str(policy),
        "copy",
        f"--dest-tls-verify={'true' if verify else 'false'}",
        "--digestfile",
        str(digest_file),
    ]
    args += ["--dest-authfile", str(auth_file)] if auth_file is not None else ["--dest-no-creds"]
    return [*args, f"oci:{layout}:{layout_tag}", f"docker://{destination}"]


def push_oci(layout: Path, name: ImageName, target: Target, config: Config) -> OciPush:
    """Push the OCI layout `layout` (tagged with `name`'s version) of image `name` to `target`."""
    if not (layout / "index.json").is_file():
        raise PushError(f"no OCI layout in {layout}", hint="build the image first (dgr build)")
    destination = f"{repository(name, target)}:{tag(name)}"
    verify = tls_verify(target, config)
    if target.auth_file is not None:
        credentials_from_auth_file(target.auth_file, target.registry)  # a clear error before skopeo's
    login_file = containers_auth_file() if target.auth_file is None and target.credentials is None else None
    if login_file is not None:
        log.debug("credentials for %s: %s", target.registry, login_file)
    check_answers(target, verify)
    with ExitStack() as files:
        policy = files.enter_context(memory_file("policy.json", json.dumps(SKOPEO_POLICY)))
        digest_file = files.enter_context(memory_file("digest", ""))
        auth_file = target.auth_file or login_file
        if target.credentials is not None:
            text = auth_file_json(target.registry, target.credentials)
            auth_file = files.enter_context(memory_file("auth.json", text))
        secret = target.credentials.password if target.credentials is not None else None
        log.info("Pushing %s to %s%s", name, destination, "" if verify else " (TLS not verified)")
        result = run(
            skopeo_arguments(
                layout,
                tag(name),
                destination,
                verify=verify,
                auth_file=auth_file,
                policy=policy,
                digest_file=digest_file,
            ),
            timeout=target.step_timeout,
            check=False,
            log_file=_LogLines("  skopeo: ", secret),
            error=NetworkError,
            what=f"push to {destination}",
            pass_fds=[int(p.name) for p in (policy, digest_file, auth_file) if p and p.parent == FD_DIR],
        )
        if result.returncode != 0:
            output = result.output
            if target.credentials is not None:  # skopeo does not print it; make sure
                output = output.replace(target.credentials.password, "***")
            raise _skopeo_error(output, destination, target)
        digest = digest_file.read_text().strip()
    log.info("Pushed %s to %s (%s)", name, destination, digest or "no digest reported")
    return OciPush(destination, digest)


FD_DIR = Path("/proc/self/fd")


@contextmanager
def memory_file(name: str, text: str) -> Iterator[Path]:
    """A file holding `text` in memory only (a memfd), as the path a child process given its
    descriptor (run's `pass_fds`) opens it by: /proc/self/fd/N. Gone when the block ends, or
    when every process holding it dies (a SIGKILL included): nothing on disk."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.write(fd, text.encode("utf-8"))
        yield FD_DIR / str(fd)
    finally:
        os.close(fd)


def check_answers(target: Target, verify: bool) -> None:
    """NetworkError when the registry accepts connections but does not answer `GET /v2/`
    within ANSWER_TIMEOUT (or the target's shorter timeout). Any answer will do, even a
    refusal or a failed TLS handshake (skopeo reports those); no credential is sent. A
    registry opted out of TLS checks is asked over plain HTTP (skopeo falls back to it)."""
    import requests

    timeout = min(ANSWER_TIMEOUT, target.step_timeout)
    url = f"{'https' if verify else 'http'}://{target.registry}/v2/"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning: nothing is sent
            requests.get(url, timeout=timeout, verify=False, allow_redirects=False)
    except requests.Timeout:
        raise NetworkError(
            f"push to {target.registry} failed: it accepts connections but did not answer "
            f"within {timeout:g}s",
            key=target.key,
            hint="check that the registry is running and not overloaded",
        ) from None
    except requests.RequestException:
        pass


def _skopeo_error(output: str, destination: str, target: Target) -> PushError:
    """skopeo's failure as one message with a hint (the tail of its output as details)."""
    text = output.lower()
    host = target.registry
    details = "\n".join(output.rstrip().splitlines()[-15:])
    where = f"{target.key}"
    if "http response to https client" in text:
        return PushError(
            f"push to {destination} failed: {host} speaks plain HTTP, not HTTPS",
            key=where,
            details=details,
            hint=f"if you trust this network, add http:{host} to insecureOptions in config.yml",
        )
    if "x509" in text or "certificate" in text:
        return PushError(
            f"push to {destination} failed: the TLS certificate of {host} is not trusted",
            key=where,
            details=details,
            hint=f"install the registry's CA, or add tls:{host} to insecureOptions",
        )
    if any(
        s in text
        for s in (
            "unauthorized",
            "authentication required",
            "denied",
            "status 401",
            "status 403",
            "invalid username/password",
        )
    ):
        how = (
            "with the configured credentials"
            if target.credentials or target.auth_file
            else "anonymously (no credentials configured)"
        )
        return PushError(
            f"push to {destination} failed: {host} refused access {how}",
            key=where,
            details=details,
            hint=f"check username/password or authFile of {where} in config.yml, or podman login {host}",
        )
    if "getting username and password" in text or "error getting credentials" in text:
        source = f"the auth file {target.auth_file}" if target.auth_file else "the containers auth file"
        return PushError(
            f"push to {destination} failed: cannot read the credentials for {host} from {source}",
            key=where,
            details=details,
            hint=f"fix the entry for {host} (auths: base64 of user:password, or a working credHelpers)",
        )
    server = SERVER_ERROR.search(output)
    if server is not None:
        said = f"HTTP {server.group(1)}" + (f" ({server.group(2)})" if server.group(2) else "")
        return NetworkError(
            f"push to {destination} failed: {host} answered {said}",
            key=where,
            details=details,
            hint="the registry failed: check its logs or try later",
        )
    if "no such host" in text:
        return PushError(
            f"push to {destination} failed: cannot resolve {host}",
            key=where,
            details=details,
            hint="check the registry address",
        )
    if TRANSIENT.search(text):
        return NetworkError(
            f"push to {destination} failed: cannot reach {host} or it failed to answer",
            key=where,
            details=details,
            hint="check the registry address and that it is running",
        )
    return PushError(f"push to {destination} failed (skopeo)", key=where, details=details)
