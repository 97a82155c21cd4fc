"""Broken registries and bad credentials on `dgr push`: one clear message each.

A registry that answers 500, one that accepts connections and never answers, one that is not
there, one that speaks plain HTTP; auth files that are missing, unreadable or wrong. After
each, the configuration is pointed at a working registry (docker-registry on 127.0.0.1) and
the same push succeeds.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dgr.push import oci as push_oci
from tests.faults.harness import Case, Env, Result
from tests.support.registry import Registry, free_port, running_registry

pytestmark = pytest.mark.integration


class Failing:
    """A registry that answers every request with `status`."""

    def __init__(self, status: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A working registry (per test: the leak check wants no child process between tests;
    outside the case's folder, whose files must not change)."""
    with running_registry(tmp_path_factory.mktemp("registry"), users={"alice": "Right-pw-1"}) as found:
        yield found


@pytest.fixture
def servers(fault_env: Env, registry: Registry) -> Iterator[dict[str, str]]:
    failing = {status: Failing(status) for status in (500, 503)}
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    hosts = {
        "good": registry.host,
        "500": failing[500].host,
        "503": failing[503].host,
        "silent": f"127.0.0.1:{silent.getsockname()[1]}",
        "closed": f"127.0.0.1:{free_port()}",
    }
    fault_env.extra["hosts"] = hosts
    yield hosts
    for server in failing.values():
        server.close()
    silent.close()


def target(host: str, extra: str = "", insecure: bool = True) -> str:
    text = f"push:\n  - type: oci\n    registry: '@{host}@'\n    namespace: faults\n    retries: 0\n{extra}"
    return text + ("insecureOptions: [http]\n" if insecure else "")


def auth_file(content: str) -> Callable[[Env], None]:
    def setup(env: Env) -> None:
        host = hosts_of(env)["good"]
        (env.home / "auth.json").write_text(content.replace("@good@", host))

    return setup


def hosts_of(env: Env) -> dict[str, str]:
    found = env.extra["hosts"]
    assert isinstance(found, dict)
    return found


def fix(env: Env) -> None:
    """Point the push at the working registry, with the right credentials."""
    env.config(target("good", "    username: alice\n    password: Right-pw-1\n"))
    fill_hosts(env)


def fill_hosts(env: Env) -> None:
    config = env.home / "config.yml"
    text = config.read_text()
    for name, host in hosts_of(env).items():
        text = text.replace(f"@{name}@", host)
    config.write_text(text)


def case(id_: str, message: str, config: str, setup: Callable[[Env], None] | None = None) -> Case:
    def prepare(env: Env) -> None:
        fill_hosts(env)
        if setup is not None:
            setup(env)

    return Case(id_, message, command=("push",), config=config, setup=prepare, fix=fix)


AUTH = "    authFile: auth.json\n"
CASES = [
    case(
        "server-error",
        r"push to \S+/faults/aci-fault:1 failed: \S+ answered HTTP 500 \(Internal Server Error\)",
        target("500"),
    ),
    case(
        "server-error-retried",
        r"answered HTTP 503 \(Service Unavailable\) \(after 2 attempts\) \(key: push\[0\]\)",
        target("503").replace("retries: 0", "retries: 1"),
    ),
    case(
        "never-answers",
        r"push to \S+ failed: it accepts connections but did not answer within 1s",
        target("silent"),
    ),
    case("not-there", r"push to \S+ failed: cannot reach \S+ or it failed to answer", target("closed")),
    case(
        "plain-http-not-allowed",
        r"push to \S+ failed: \S+ speaks plain HTTP, not HTTPS \(key: push\[0\]\)",
        target("good", insecure=False),
    ),
    case(
        "wrong-password",
        r"push to \S+ failed: \S+ refused access with the configured credentials",
        target("good", "    username: alice\n    password: wrong\n"),
    ),
    case("auth-file-missing", r"home/auth.json: auth file does not exist", target("good", AUTH)),
    case(
        "auth-file-not-json",
        r"home/auth.json: cannot read the auth file",
        target("good", AUTH),
        auth_file("{auths"),
    ),
    case(
        "auth-file-no-auths",
        r'home/auth.json: the auth file has no "auths" mapping',
        target("good", AUTH),
        auth_file("{}"),
    ),
    case(
        "auth-entry-not-base64",
        r"home/auth.json: the auth entry for \S+ is not base64 of user:password \(key: auths.\S+.auth\)",
        target("good", AUTH),
        auth_file(json.dumps({"auths": {"@good@": {"auth": "!!!"}}})),
    ),
    case(
        "auth-entry-no-colon",
        r"home/auth.json: the auth entry for \S+ is not base64 of user:password",
        target("good", AUTH),
        auth_file(json.dumps({"auths": {"@good@": {"auth": "dXNlcg=="}}})),
    ),
    case(
        "auth-entry-a-string",
        r"home/auth.json: the auth entry for \S+ must be a mapping",
        target("good", AUTH),
        auth_file(json.dumps({"auths": {"@good@": "x"}})),
    ),
    case(
        "credential-helper-fails",
        r"push to \S+ failed: cannot read the credentials for \S+ from the auth file",
        target("good", AUTH),
        auth_file(json.dumps({"auths": {}, "credHelpers": {"@good@": "dgr-faults-nothere"}})),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_broken_registry(
    case: Case, servers: dict[str, str], run_case: Callable[[Case], Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(push_oci, "ANSWER_TIMEOUT", 1.0)  # the default is 10s
    run_case(case)
