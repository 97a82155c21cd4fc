"""Bad inputs of a project, its configuration and the command line: one clear error each.

Each case breaks a project that built fine and checks what harness.py lists: exit code, one
message naming the file and line (or the key, or the reference), no traceback, nothing
written outside the target and the store, previous outputs intact, nothing left to clean,
and that the next run, once the input is fixed, succeeds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.harness import BASE_MANIFEST, NAME, Case, Env, Link, Result

pytestmark = pytest.mark.integration

M = "aci-manifest.yml"
SH = "#!/dgr/bin/busybox sh\n"


def manifest(text: str) -> dict[str, str]:
    return {M: BASE_MANIFEST + text}


def make_dir(rel: str) -> Callable[[Env], None]:
    def setup(env: Env) -> None:
        (env.project / rel).mkdir(parents=True, exist_ok=True)

    return setup


OTHER_DEPENDS_ON_FAULT = f"name: example.com/aci-other:1\naci: {{dependencies: [{NAME}:1]}}\n"

MANIFEST = [
    Case("name-is-a-number", r"aci-manifest.yml:1: name must be a string, not a number", {M: "name: 5\n"}),
    Case("name-missing", r"aci-manifest.yml: name is mandatory in manifest", {M: "aci: {}\n"}),
    Case("name-invalid", r"aci-manifest.yml.*Example.com/App", {M: "name: Example.com/App\n"}),
    Case("unknown-key", r"aci-manifest.yml:3: unknown key 'aci.apps'", manifest("aci:\n  apps: {}\n")),
    Case("yaml-syntax", r"aci-manifest.yml:3: invalid YAML", manifest("aci: [\n")),
    Case("not-a-mapping", r"aci-manifest.yml.*manifest must be a mapping", {M: "- name: x\n"}),
    Case("template-syntax", r"aci-manifest.yml:1: template error", {M: "name: {{ version \n"}),
    Case(
        "name-from-build-attribute",
        r"aci-manifest.yml.*name depends on an attribute.*\(key: name\)",
        {M: "name: example.com/{{ app }}:1\n"},
    ),
    Case(
        "dependencies-not-a-list",
        r"aci-manifest.yml:3: aci.dependencies must be a list",
        manifest("aci:\n  dependencies: example.com/base\n"),
    ),
    Case(
        "exec-not-a-list",
        r"aci-manifest.yml:4: aci.app.exec must be a list",
        manifest("aci:\n  app:\n    exec: {a: 1}\n"),
    ),
    Case(
        "port-out-of-range",
        r"aci-manifest.yml:4: aci.app.ports\[0\].port must be in 1-65535",
        manifest("aci:\n  app:\n    ports: [{name: http, port: 70000}]\n"),
    ),
    Case(
        "relative-working-directory",
        r"aci-manifest.yml:4: aci.app.workingDirectory must be an absolute path",
        manifest("aci:\n  app:\n    workingDirectory: srv\n"),
    ),
    Case(
        "environment-without-name",
        r"aci-manifest.yml:4: aci.app.environment\[0\].name is mandatory",
        manifest("aci:\n  app:\n    environment: [{value: x}]\n"),
    ),
    Case(
        "readiness-unknown-kind",
        r"aci-manifest.yml:4: unknown readiness check kind 'ping'",
        manifest("tester:\n  readiness:\n    ping: 1\n"),
    ),
    Case(
        "timeout-negative",
        r"aci-manifest.yml:3: build.timeout must be a positive number",
        manifest("build:\n  timeout: -1\n"),
    ),
    Case(
        "depends-on-itself",
        r"aci-manifest.yml:3: dependency cycle: example.com/aci-fault depends on itself",
        manifest(f"aci:\n  dependencies:\n    - {NAME}\n"),
    ),
    Case(
        "projects-depend-on-each-other",
        r"aci-manifest.yml: dependency cycle: example.com/aci-fault -> example.com/aci-other -> ",
        {
            **manifest("aci:\n  dependencies: [example.com/aci-other:1]\n"),
            "../aci-other/aci-manifest.yml": OTHER_DEPENDS_ON_FAULT,
        },
    ),
    Case(
        "dependency-not-found",
        r"aci-manifest.yml: dependency example.test/nothere:1 not found",
        manifest("aci:\n  dependencies: [example.test/nothere:1]\n"),
        # discovery of example.test goes to a closed local port: refused at once
        config="discovery: {hosts: {example.test: '127.0.0.1:9'}, retries: 0}\ninsecureOptions: [http]\n",
    ),
]

ATTRIBUTES = [
    Case("bad-yaml", r"attributes/a.yml:3: invalid YAML", {"attributes/a.yml": "default:\n  a: [1\n"}),
    Case("not-a-map", r"attributes/a.yml: the top level must be a map", {"attributes/a.yml": "- 1\n- 2\n"}),
    Case(
        "default-a-list",
        r"attributes/a.yml: 'default:' must be a map.*\(key: default\)",
        {"attributes/a.yml": "default: [1]\n"},
    ),
    Case(
        "override-a-string",
        r"attributes/a.yml: 'override:' must be a map",
        {"attributes/a.yml": "override: x\n"},
    ),
    Case("not-utf8", r"attributes/a.yml: invalid YAML", {"attributes/a.yml": b"default:\n  a: \xff\xfe\n"}),
    Case(
        "value-template-syntax",
        r"attributes/a.yml: template syntax error in the attribute value",
        {"attributes/a.yml": 'default:\n  a: "{{ b"\n'},
    ),
    Case(
        "symlink-out",
        r"attributes/x.yml: a symlink to '/etc/shadow', outside the project",
        {"attributes/x.yml": Link("/etc/shadow")},
    ),
    Case(
        "dangling-symlink",
        r"attributes/x.yml: a symlink to 'nowhere.yml', which does not exist",
        {"attributes/x.yml": Link("nowhere.yml")},
    ),
    Case(
        "folder-links-out",
        r"attributes: a symlink to '/etc', outside the project",
        {"attributes": Link("/etc")},
    ),
]

TEMPLATES = [
    Case(
        "syntax",
        r"templates/etc/app.conf.tmpl:2: template syntax error",
        {"templates/etc/app.conf.tmpl": "a\n{{ b \n"},
    ),
    Case(
        "partial-syntax",
        r"templates/m.partial:1: template syntax error",
        {"templates/m.partial": "{% if %}\n"},
    ),
    Case("not-utf8", r"templates/x.tmpl: cannot read template", {"templates/x.tmpl": b"\xff\xfe{{ a }}\n"}),
    Case(
        "same-output-twice",
        r"templates/.*both render to a.conf",
        {"templates/a.tmpl.conf": "1\n", "templates/a.conf.tmpl": "2\n"},
    ),
    Case(
        "symlink-out-at-build",
        r"templates/x.tmpl: a symlink to '/etc/shadow', outside the project",
        {"templates/x.tmpl": Link("/etc/shadow")},
    ),
    Case(
        "symlink-out-at-try",
        r"templates/x.tmpl: a symlink to '/etc/shadow', outside the project",
        {"templates/x.tmpl": Link("/etc/shadow")},
        command=("try",),
    ),
    Case(
        "link-loop",
        r"templates/loop: a symlink to a folder that holds it",
        {"templates/x.tmpl": "x\n", "templates/loop": Link(".")},
    ),
    Case(
        "missing-attribute-at-try",
        r"templates/x.tmpl:2: missing attribute 'dns.servers'",
        {"templates/x.tmpl": "a\n{{ dns.servers }}\n", "attributes/a.yml": "default:\n  dns: {}\n"},
        command=("try",),
    ),
    Case(
        "missing-include-at-try",
        r"templates/x.tmpl:1: included template not found: nope.partial",
        {"templates/x.tmpl": '{% include "nope.partial" %}\n'},
        command=("try",),
    ),
]

CFG = [
    Case(
        "mode-banana",
        r"templates/x.tmpl.cfg: mode must be octal digits.*\(key: mode\)",
        {"templates/x.tmpl": "x\n", "templates/x.tmpl.cfg": "mode: banana\n"},
    ),
    Case(
        "uid-negative",
        r"templates/x.tmpl.cfg: uid must be a number \(0 or more\), not -5",
        {"templates/x.tmpl": "x\n", "templates/x.tmpl.cfg": "uid: -5\n"},
    ),
    Case(
        "unknown-key",
        r"templates/x.tmpl.cfg: unknown key\(s\) owner",
        {"templates/x.tmpl": "x\n", "templates/x.tmpl.cfg": "owner: 1\n"},
    ),
    Case(
        "not-a-map",
        r"templates/x.tmpl.cfg: a template .cfg must be a map",
        {"templates/x.tmpl": "x\n", "templates/x.tmpl.cfg": "- 1\n"},
    ),
    Case(
        "check-cmd-not-a-string",
        r"templates/x.tmpl.cfg: checkCmd must be a shell command",
        {"templates/x.tmpl": "x\n", "templates/x.tmpl.cfg": "checkCmd: [a, b]\n"},
    ),
    Case(
        "bad-yaml",
        r"templates/x.tmpl.cfg:2: invalid YAML",
        {"templates/x.tmpl": "x\n", "templates/x.tmpl.cfg": "mode: [\n"},
    ),
]

RUNLEVELS = [
    Case(
        "build-script-fails",
        r"runlevel build failed: script /dgr/aci-home/runlevels/build/10.fail.sh \(exit 3\)",
        {"runlevels/build/10.fail.sh": SH + "echo broken >&2\nexit 3\n"},
    ),
    Case(
        "builder-script-fails",
        r"runlevel builder failed: script .*/10.fail.sh \(exit 4\)",
        {"runlevels/builder/10.fail.sh": "#!/bin/sh\nexit 4\n"},
    ),
    Case(
        "build-late-script-fails",
        r"runlevel build-late failed: script .*/10.fail.sh \(exit 5\)",
        {"runlevels/build-late/10.fail.sh": SH + "exit 5\n"},
    ),
    Case(
        "build-script-symlink-out",
        r"runlevels/build/10.x.sh: a symlink to '/bin/true', outside the project",
        {"runlevels/build/10.x.sh": Link("/bin/true")},
    ),
    Case(
        "prestart-script-symlink-out",
        r"runlevels/prestart-early/10.x.sh: a symlink to '/usr/bin/env', outside the project",
        {"runlevels/prestart-early/10.x.sh": Link("/usr/bin/env")},
    ),
    Case(
        "build-script-dangling",
        r"runlevels/build/10.x.sh: a symlink to 'missing.sh', which does not exist",
        {"runlevels/build/10.x.sh": Link("missing.sh")},
    ),
    Case(
        "inherit-script-dangling",
        r"runlevels/inherit-build-early/10.x.sh: a symlink to '../gone.sh', which does not exist",
        {"runlevels/inherit-build-early/10.x.sh": Link("../gone.sh")},
    ),
    Case(
        "script-timeout",
        r"runlevel build failed: script .*/10.hang.sh timed out \(after 1s\)",
        {
            "runlevels/build/10.hang.sh": SH + "/dgr/bin/busybox sleep 600\n",
            M: BASE_MANIFEST + "build: {scriptTimeout: 1}\n",
        },
    ),
    Case(
        "build-timeout",
        r"aci-manifest.yml: the build timed out after 1s, in runlevel build \(key: build.timeout\)",
        {
            "runlevels/build/10.hang.sh": SH + "/dgr/bin/busybox sleep 600\n",
            M: BASE_MANIFEST + "build: {timeout: 1}\n",
        },
    ),
    Case(
        "script-not-executable-format",
        r"runlevel build failed: script .*/10.garbage \(exit 12[67]\)",
        {"runlevels/build/10.garbage": b"\x7fELF\x00garbage"},
    ),
]

FILES_AND_MOUNTS = [
    Case(
        "files-folder-links-out", r"files: a symlink to '/etc', outside the project", {"files": Link("/etc")}
    ),
    Case(
        "files-folder-dangling", r"files: a symlink to 'gone', which does not exist", {"files": Link("gone")}
    ),
    Case(
        "mount-source-missing",
        r"aci-manifest.yml:5: mount point source 'cache' does not exist.*key: build.mountPoints.0..from",
        manifest("build:\n  mountPoints:\n    - to: /var/cache\n      from: cache\n"),
    ),
    Case(
        "mount-source-missing-in-home",
        r"aci-manifest.yml:3: mount point source '~/dgr-fault-nothere' does not exist",
        manifest("builder:\n  mountPoints: [{from: ~/dgr-fault-nothere, to: /x}]\n"),
    ),
    Case(
        "mount-target-relative",
        r"aci-manifest.yml:3: build.mountPoints\[0\].to must be an absolute path",
        manifest("build:\n  mountPoints: [{from: cache, to: var/cache}]\n"),
    ),
    Case(
        "mount-optional-not-a-boolean",
        r"aci-manifest.yml:3: build.mountPoints\[0\].optional must be true or false",
        manifest("build:\n  mountPoints: [{from: cache, to: /c, optional: maybe}]\n"),
    ),
]

CONFIG = [
    Case("yaml-syntax", r"home/config.yml:\d+: invalid YAML", config="storePath: [\n"),
    Case("unknown-key", r"config.yml: unknown key 'stroePath' in configuration", config="stroePath: /x\n"),
    Case(
        "limits-size",
        r"config.yml: limits.imageSize must be a size in bytes.*\(key: limits.imageSize\)",
        manifest("aci:\n  dependencies: [example.test/base:1]\n"),
        config="limits: {imageSize: banana}\n",
    ),
    Case(
        "discovery-retries",
        r"config.yml: discovery.retries must be a whole number.*\(key: discovery.retries\)",
        manifest("aci:\n  dependencies: [example.test/base:1]\n"),
        config="discovery: {retries: -1}\n",
    ),
    Case(
        "push-not-a-list",
        r"config.yml: push must be a list of targets .*\(key: push\)",
        command=("push",),
        config="push: 5\n",
        rerun=("build",),
    ),
    Case(
        "auth-file-missing",
        r"auth.json: auth file does not exist",
        command=("push",),
        config="push: [{type: oci, registry: '127.0.0.1:9', authFile: auth.json}]\n",
        rerun=("build",),
    ),
]

CLI = [
    Case(
        "unknown-command",
        r"invalid choice: 'biuld'; did you mean 'build'",
        command=("biuld",),
        code=2,
        rerun=("build",),
    ),
    Case(
        "timeout-zero",
        r"--timeout: '0' is not a positive number",
        command=("build", "--timeout", "0"),
        code=2,
        rerun=("build",),
    ),
    Case("log-level", r"unknown log level: loud", command=("-L", "loud", "build"), code=2, rerun=("build",)),
    Case(
        "set-env",
        r"--set-env 'X': environment variable must be specified as name=value",
        command=("--set-env", "X", "build"),
        code=2,
        rerun=("build",),
    ),
    Case(
        "cp-escape",
        r"cp: '/../etc/shadow' is not a path inside the image",
        command=("cp", "/../etc/shadow", "out"),
        rerun=("build",),
    ),
    Case("run-volume", r"volume 'data': use MOUNT=HOSTDIR", command=("run", "-v", "data"), rerun=("build",)),
    Case(
        "aci-version-not-an-aci",
        r"aci-manifest.yml: .*(not|cannot).*",
        command=("aci-version", "aci-manifest.yml"),
        rerun=("build",),
    ),
]

CASES = [
    *(("manifest", c) for c in MANIFEST),
    *(("attributes", c) for c in ATTRIBUTES),
    *(("templates", c) for c in TEMPLATES),
    *(("cfg", c) for c in CFG),
    *(("runlevels", c) for c in RUNLEVELS),
    *(("files-mounts", c) for c in FILES_AND_MOUNTS),
    *(("config", c) for c in CONFIG),
    *(("cli", c) for c in CLI),
]


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[f"{area}-{c.id}" for area, c in CASES])
def test_bad_input(case: Case, run_case: Callable[[Case], Result]) -> None:
    run_case(case)
