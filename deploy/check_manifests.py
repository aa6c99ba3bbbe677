#!/usr/bin/env python3
"""Checks the deployment files under deploy/ and extracts what must agree with the real binaries.

    python3 deploy/check_manifests.py OUTDIR

Parses every YAML and JSON file, validates each kind against its schema where the validator is
installed (Kubernetes: kubernetes-validate; ECS: botocore's API model; Compose: docker-compose;
Dockerfiles: hadolint; see deploy/check-deps.sh), checks the properties the deployment guide
promises (hostPID, probes, read-only socket mounts, grace periods, ...), and writes every config
bundle it finds (a psstd.toml and its policy, as a container or host would see them) under
OUTDIR/bundles/. The Rust test tests/tests/deploy.rs runs it and checks the rest against the
real psstd and psst: every command line, every config (psstd check-config), every socket path.

Output, one record per line, fields separated by tabs:

    socket     WHERE  PATH                   a socket path: server.socket, PSST_SOCKET, ListenStream
    socketdir  WHERE  DIR                    a directory shared as the socket directory
    bundle     ID     HOSTDIR  MOUNTDIR      config files that a deployment shows at MOUNTDIR
    render     ID     HOSTDIR  MOUNTDIR      a psst render config and its templates, shown at
                                             MOUNTDIR; then one `dest ID DIR` per directory the
                                             deployment gives it (a tmpfs) for its files
    command    WHERE  BUNDLE   ARGV          a psst or psstd command line (ARGV joined by \\x1f);
                                             BUNDLE is the config bundle it runs with (for
                                             psst render: its render bundle), or -
    skip       CHECK  REASON                 a check that could not run here, and why
    error      WHERE  MESSAGE                a problem (the exit status is then 1)
"""

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
# Kubernetes version the manifests are validated against: native sidecars (an init container
# with restartPolicy: Always) are on by default from 1.29.
KUBERNETES_VERSION = "1.29.0"
INSTALL_DIR = "/usr/local/bin"
SOCKET_VOLUME = "psst-socket"
PSST_BINARIES = ("psst", "psstd")

# Every file the checker knows. A new file under these directories must be added here (and
# checked), so that nothing in deploy/ escapes the test.
KNOWN_FILES = {
    "systemd/psstd.service",
    "systemd/psstd.socket",
    "systemd/psst.sysusers",
    "systemd/psst-render@.service",
    "systemd/psstd-aws-agent-api.conf",
    "kubernetes/daemonset.yaml",
    "kubernetes/app.yaml",
    "kubernetes/sidecar.yaml",
    "kubernetes/render.yaml",
    "ecs/Dockerfile",
    "ecs/daemon-task.json",
    "ecs/daemon-service.json",
    "ecs/app-task.json",
    "ecs/sidecar-task.json",
    "ecs/render-task.json",
    "ecs/config/psstd.toml",
    "ecs/config/policy.toml",
    "ecs/config/sidecar.toml",
    "ecs/config/sidecar-policy.toml",
    "compose/compose.yaml",
    "compose/config/psstd.toml",
    "compose/config/policy.toml",
    "container/Dockerfile",
    "container/Dockerfile.dockerignore",
    "container/psstd.toml",
    "container/policy.toml",
    "render/README.md",
    "render/nginx.toml",
    "render/orders.toml",
    "render/nginx-tls.crt.tmpl",
    "render/nginx-tls.key.tmpl",
    "render/pgpass.tmpl",
    "render/application.properties.tmpl",
    "aws/feed.yaml",
    "aws/README.md",
}
CHECKED_DIRS = ("systemd", "kubernetes", "ecs", "compose", "container", "render", "aws")
# Where the ECS image puts deploy/render/ (deploy/ecs/Dockerfile) and the VM install guide too.
RENDER_DIR = "/etc/psst/render"
# The instance deploy/systemd/psst-render@.service is checked as (deploy/render/nginx.toml).
RENDER_INSTANCE = "nginx"


class Report:
    def __init__(self, out):
        self.out = out
        self.errors = 0
        self.bundles = {}  # id -> (hostdir, mountdir)

    def record(self, *fields):
        for f in fields:
            if "\t" in str(f) or "\n" in str(f):
                raise ValueError(f"field with a tab or newline: {f!r}")
        print("\t".join(str(f) for f in fields))

    def error(self, where, message):
        self.errors += 1
        self.record("error", where, message.replace("\n", " | ").replace("\t", " "))

    def skip(self, check, reason):
        self.record("skip", check, reason)

    def socket(self, where, path):
        self.record("socket", where, path)

    def socketdir(self, where, path):
        self.record("socketdir", where, path)

    def command(self, where, bundle, argv):
        self.record("command", where, bundle or "-", "\x1f".join(argv))

    def render_bundle(self, bundle_id, files, mountdir, dest_dirs):
        """A psst render config and its templates (name -> text) under OUTDIR/render/ID, and the
        memory-backed directories the deployment gives it for its files."""
        hostdir = self.out / "render" / bundle_id
        hostdir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (hostdir / name).write_text(text)
        self.record("render", bundle_id, hostdir, mountdir)
        for d in sorted(dest_dirs):
            self.record("dest", bundle_id, d)
        return bundle_id

    def bundle(self, bundle_id, files, mountdir):
        """Writes `files` (name -> text) under OUTDIR/bundles/ID and records it."""
        hostdir = self.out / "bundles" / bundle_id
        hostdir.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (hostdir / name).write_text(text)
        self.bundles[bundle_id] = (hostdir, mountdir)
        self.record("bundle", bundle_id, hostdir, mountdir)
        return bundle_id


# === helpers ===


def rel(path):
    return str(Path(path).relative_to(REPO))


def duration_seconds(text):
    """A humantime duration as psstd writes them ("10s", "500ms", "2m", "1h")."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*(ms|s|m|h)", text):
        total += int(number) * units[unit]
    if not total and text.strip() not in ("0s", "0"):
        raise ValueError(f"unreadable duration {text!r}")
    return total


def load_bundle_config(report, where, bundle_id):
    """The parsed psstd.toml-like files of a bundle: {name: dict}."""
    hostdir, _ = report.bundles[bundle_id]
    configs = {}
    for path in sorted(hostdir.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            report.error(where, f"{path.name} is not valid TOML: {e}")
            continue
        if "backend" in data or "server" in data:
            configs[path.name] = data
    return configs


def check_bundle_configs(report, where, bundle_id):
    """Records each config's socket; returns the largest grace period (seconds)."""
    grace = 0.0
    configs = load_bundle_config(report, where, bundle_id)
    if not configs:
        report.error(where, f"bundle {bundle_id} holds no psstd config")
    for name, data in configs.items():
        server = data.get("server", {})
        if "socket" not in server:
            report.error(
                f"{where}:{name}", "server.socket must be set explicitly in deployment configs"
            )
        else:
            report.socket(f"{where}:{name}", server["socket"])
        grace = max(grace, duration_seconds(server.get("grace_period", "10s")))
    return grace


def shell_commands(script):
    """The simple commands of a `sh -c` script: split on ; && || | & and newlines, with
    redirections dropped. Enough for the one-liners in these manifests, which avoid $(...)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    commands, current, skip_next = [], [], False
    for token in lexer:
        if skip_next:
            skip_next = False
            continue
        if token in (";", "&&", "||", "|", "&", ";;"):
            if current:
                commands.append(current)
            current = []
        elif set(token) <= set("<>&") and token:
            skip_next = True  # the redirection's target
        else:
            current.append(token)
    if current:
        commands.append(current)
    if "$(" in script or "`" in script:
        raise ValueError("command substitution is not checked: keep manifest scripts simple")
    return commands


def psst_invocations(argv):
    """Every psst or psstd command line in a container's argv (direct or through sh -c)."""
    if not argv:
        return []
    if Path(argv[0]).name in ("sh", "bash") and len(argv) >= 3 and argv[1] == "-c":
        return [c for c in shell_commands(argv[2]) if Path(c[0]).name in PSST_BINARIES]
    if Path(argv[0]).name in PSST_BINARIES:
        return [argv]
    return []


def check_invocation(report, where, argv, bundle):
    name = Path(argv[0]).name
    if argv[0] != f"{INSTALL_DIR}/{name}":
        report.error(where, f"call {name} as {INSTALL_DIR}/{name} (where the image installs it), not {argv[0]}")
    report.command(where, bundle if name == "psstd" or "render" in argv[1:] else None, argv)


def render_config(argv):
    """The --config of a `psst render` command line, else None."""
    args = argv[1:]
    if "render" not in args:
        return None
    if "--config" not in args[args.index("render"):]:
        return None
    i = args.index("--config")
    return args[i + 1] if i + 1 < len(args) else None


def check_render(report, where, argv, files, mountdir, memory_dirs, bundle_id):
    """A psst render command line with its config `files` (name -> text) shown at `mountdir`:
    the config names templates that are there and destinations in `memory_dirs` (the
    deployment's tmpfs mounts). Records the render bundle; returns its id (or None)."""
    config = render_config(argv)
    if config is None:
        report.error(where, "psst render in a deployment takes its templates from --config FILE")
        return None
    if str(Path(config).parent) != mountdir:
        report.error(where, f"--config {config} is not in the directory the deployment shows at {mountdir}")
        return None
    name = Path(config).name
    if name not in files:
        report.error(where, f"--config {config}: no {name} at {mountdir}")
        return None
    try:
        data = tomllib.loads(files[name])
    except tomllib.TOMLDecodeError as e:
        report.error(where, f"{name} is not valid TOML: {e}")
        return None
    dest_dirs = set()
    for i, template in enumerate(data.get("template", [])):
        source = template.get("source")
        if source is not None and source not in files:
            report.error(where, f"{name} template {i + 1}: source {source} is not beside it at {mountdir}")
        dest = Path(template.get("destination", ""))
        if str(dest.parent) not in memory_dirs:
            report.error(where, f"{name} template {i + 1}: {dest} is not in a memory-backed mount ({sorted(memory_dirs)}): the secrets would be on disk")
        dest_dirs.add(str(dest.parent))
    if not data.get("template"):
        report.error(where, f"{name} renders no template")
    if "--allow-disk" in argv or data.get("allow_disk"):
        report.error(where, "deployments keep rendered secrets in memory: no --allow-disk / allow_disk")
    return report.render_bundle(bundle_id, files, mountdir, dest_dirs)


def render_files():
    """deploy/render/, as the ECS image and the VM guide install it."""
    return {p.name: p.read_text() for p in sorted((DEPLOY / "render").iterdir()) if p.is_file()}


def is_health_probe(argv):
    return argv == [f"{INSTALL_DIR}/psst", "health"]


# === parsing every file ===


def parse_all(report):
    for sub in CHECKED_DIRS:
        for path in sorted((DEPLOY / sub).rglob("*")):
            if path.is_file() and str(path.relative_to(DEPLOY)) not in KNOWN_FILES:
                report.error(rel(path), "unknown deploy file: add it to check_manifests.py and check it")
    for name in sorted(KNOWN_FILES):
        if not (DEPLOY / name).is_file():
            report.error(f"deploy/{name}", "missing")
    import yaml  # PyYAML: required (deploy/check-deps.sh)

    for sub in CHECKED_DIRS:
        for path in sorted((DEPLOY / sub).rglob("*")):
            # The test follows --config; an environment override would go unchecked.
            if path.is_file() and "PSST_CONFIG" in path.read_text():
                report.error(rel(path), "pass the config with --config, not PSST_CONFIG")

    for path in sorted(DEPLOY.rglob("*")):
        try:
            if path.suffix in (".yaml", ".yml") and path.parent.name == "aws":
                # CloudFormation: its short forms (!Ref, !Sub, ...) are tags.
                list(yaml.load_all(path.read_text(), Loader=cfn_loader()))
            elif path.suffix in (".yaml", ".yml"):
                list(yaml.safe_load_all(path.read_text()))
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".toml":
                tomllib.loads(path.read_text())
        except Exception as e:  # noqa: BLE001 - any parse failure is the finding
            report.error(rel(path), f"does not parse: {e}")


# === Dockerfiles ===


def dockerfile_instructions(path):
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        lines.append((word.upper(), rest.strip()))
        current = ""
    return lines


def exec_form(text, report, where):
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        report.error(where, f"use the exec (JSON) form, not: {text}")
        return []
    return value


def hadolint(report, path):
    exe = shutil.which("hadolint")
    if not exe:
        report.skip("hadolint", f"hadolint is not installed: {rel(path)} was not linted (deploy/check-deps.sh installs it)")
        return
    result = subprocess.run([exe, str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        report.error(rel(path), f"hadolint: {result.stdout.strip()} {result.stderr.strip()}")


def check_container_image(report):
    """deploy/container/Dockerfile. Returns the image's default argv (ENTRYPOINT + CMD)."""
    path = DEPLOY / "container/Dockerfile"
    where = rel(path)
    hadolint(report, path)
    steps = dockerfile_instructions(path)
    args = {k: v for i, a in steps if i == "ARG" and "=" in a for k, _, v in [a.partition("=")]}
    toolchain = tomllib.loads((REPO / "rust-toolchain.toml").read_text())["toolchain"]["channel"]
    if args.get("RUST_VERSION") != toolchain:
        report.error(where, f"ARG RUST_VERSION={args.get('RUST_VERSION')} but rust-toolchain.toml pins {toolchain}")
    froms = [a for i, a in steps if i == "FROM"]
    if len(froms) < 2 or " AS " not in froms[0].upper():
        report.error(where, "expected a multi-stage build: a named builder stage, then the runtime")
    # The last stage is the image.
    last = max(n for n, (i, _) in enumerate(steps) if i == "FROM")
    final = steps[last:]
    users = [a for i, a in final if i == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        report.error(where, "the runtime stage must end with a non-root USER")
    copies = " ".join(a for i, a in final if i == "COPY")
    for name in PSST_BINARIES:
        if not re.search(rf"/{name}\b", copies) or f"{INSTALL_DIR}/" not in copies:
            report.error(where, f"the runtime stage must copy {name} to {INSTALL_DIR}/")
    m = re.search(r"COPY (deploy/container/psstd\.toml) (deploy/container/policy\.toml) (/etc/psst/)", "COPY " + " ".join(a for i, a in final if i == "COPY" and "deploy/container" in a))
    if not m:
        report.error(where, "the runtime stage must copy deploy/container/psstd.toml and policy.toml to /etc/psst/")
    bundle = report.bundle(
        "container-image",
        {n: (DEPLOY / "container" / n).read_text() for n in ("psstd.toml", "policy.toml")},
        "/etc/psst",
    )
    check_bundle_configs(report, where, bundle)
    health = [a for i, a in final if i == "HEALTHCHECK"]
    if not health:
        report.error(where, "no HEALTHCHECK")
    for h in health:
        cmd = exec_form(h[h.index("CMD") + 3 :].strip(), report, where) if "CMD" in h else []
        if not is_health_probe(cmd):
            report.error(where, f"HEALTHCHECK must run {INSTALL_DIR}/psst health, not {cmd}")
        check_invocation(report, f"{where}:HEALTHCHECK", cmd, None)
    entrypoint = [exec_form(a, report, where) for i, a in final if i == "ENTRYPOINT"]
    cmd = [exec_form(a, report, where) for i, a in final if i == "CMD"]
    argv = (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else [])
    if argv[:1] != [f"{INSTALL_DIR}/psstd"]:
        report.error(where, f"ENTRYPOINT must start psstd, got {argv}")
    else:
        check_invocation(report, f"{where}:ENTRYPOINT+CMD", argv, bundle)
    run_dirs = re.findall(r"install -d [^&]*?(/run/[\w.-]+)", " ".join(a for i, a in final if i == "RUN"))
    if not run_dirs:
        report.error(where, "the image must create the socket directory under /run for its user")
    for d in run_dirs:
        report.socketdir(f"{where}:RUN", d)
    ignore = DEPLOY / "container/Dockerfile.dockerignore"
    if "target" not in ignore.read_text():
        report.error(rel(ignore), "exclude target/ from the build context")
    return argv


def check_ecs_image(report):
    """deploy/ecs/Dockerfile: bakes deploy/ecs/config into /etc/psst."""
    path = DEPLOY / "ecs/Dockerfile"
    hadolint(report, path)
    steps = dockerfile_instructions(path)
    copies = [a.split() for i, a in steps if i == "COPY"]
    if ["deploy/ecs/config/", "/etc/psst/"] not in copies:
        report.error(rel(path), "expected COPY deploy/ecs/config/ /etc/psst/")
    files = {p.name: p.read_text() for p in sorted((DEPLOY / "ecs/config").glob("*.toml"))}
    return report.bundle("ecs-image", files, "/etc/psst")


# === systemd ===


def unit_directives(path):
    directives = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        directives.setdefault((section, key.strip()), []).append(value.strip())
    return directives


def check_systemd(report):
    service_path = DEPLOY / "systemd/psstd.service"
    socket_path = DEPLOY / "systemd/psstd.socket"
    service = unit_directives(service_path)
    socket = unit_directives(socket_path)
    where = rel(service_path)
    # The unit installs the reference config: deploy/config/ goes to /etc/psst.
    bundle = report.bundle(
        "systemd",
        {n: (DEPLOY / "config" / n).read_text() for n in ("psstd.toml", "policy.toml")},
        "/etc/psst",
    )
    grace = check_bundle_configs(report, where, bundle)
    required = {
        "Type": "notify",
        "User": "psst",
        "RuntimeDirectory": "psst",
        "StateDirectory": "psst",
        "ConfigurationDirectory": "psst",
        "ProtectSystem": "strict",
        "ProtectHome": "true",
        "PrivateTmp": "true",
        "NoNewPrivileges": "true",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "true",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "LimitCORE": "0",
        "RuntimeDirectoryPreserve": "yes",
    }
    for key, want in required.items():
        got = service.get(("Service", key))
        if got is None or got[-1] != want:
            report.error(where, f"[Service] {key}={want} expected, found {got}")
    if ("Service", "LimitMEMLOCK") not in service:
        report.error(where, "[Service] LimitMEMLOCK must be set (and its value explained)")
    stop = service.get(("Service", "TimeoutStopSec"), ["90s"])[-1]
    if duration_seconds(stop) <= grace:
        report.error(where, f"TimeoutStopSec={stop} must exceed the config's grace period ({grace}s)")
    reload = service.get(("Service", "ExecReload"), [])
    if "/bin/kill -HUP $MAINPID" not in reload:
        report.error(where, "ExecReload=/bin/kill -HUP $MAINPID expected (SIGHUP reloads the policy)")
    for key in ("ExecStart", "ExecReload"):
        for line in service.get(("Service", key), []):
            argv = shlex.split(line.lstrip("-@:+!"))
            if Path(argv[0]).name in PSST_BINARIES:
                check_invocation(report, f"{where}:{key}", argv, bundle)
    runtime = service.get(("Service", "RuntimeDirectory"), [""])[-1]
    report.socketdir(f"{where}:RuntimeDirectory", f"/run/{runtime}")

    where = rel(socket_path)
    for listen in socket.get(("Socket", "ListenStream"), []):
        report.socket(f"{where}:ListenStream", listen)
    if not socket.get(("Socket", "ListenStream")):
        report.error(where, "no ListenStream")
    if socket.get(("Socket", "SocketMode"), [""])[-1] != "0666":
        report.error(where, "SocketMode=0666 expected (the policy decides, as with server.socket_mode)")
    if socket.get(("Socket", "Accept"), ["no"])[-1] != "no":
        report.error(where, "Accept=no expected: one psstd serves every connection")
    check_render_unit(report)
    check_aws_agent_dropin(report)


def check_aws_agent_dropin(report):
    """deploy/systemd/psstd-aws-agent-api.conf: psstd in the AWS Secrets Manager Agent's place
    (README, "Migrating from the AWS Secrets Manager Agent"): the token where the AWS agent reads
    it, the group that may read it, and netlink for the TCP caller lookup, added to the unit's."""
    path = DEPLOY / "systemd/psstd-aws-agent-api.conf"
    dropin = unit_directives(path)
    where = rel(path)
    if "AWS_TOKEN=file:///var/run/awssmatoken" not in dropin.get(("Service", "Environment"), []):
        report.error(where, "[Service] Environment=AWS_TOKEN=file:///var/run/awssmatoken expected (the AWS agent's token)")
    if dropin.get(("Service", "SupplementaryGroups"), [""])[-1] != "awssmatokenreader":
        report.error(where, "[Service] SupplementaryGroups=awssmatokenreader expected (the token file's group)")
    if dropin.get(("Service", "RestrictAddressFamilies"), [""])[-1] != "AF_NETLINK":
        report.error(where, "[Service] RestrictAddressFamilies=AF_NETLINK expected (added to the unit's list)")
    for key in ("User", "ExecStart", "CapabilityBoundingSet", "ProtectSystem"):
        if ("Service", key) in dropin:
            report.error(where, f"[Service] {key} must stay the unit's: the drop-in only adds")


def check_render_unit(report):
    """deploy/systemd/psst-render@.service, as the instance deploy/render/nginx.toml serves."""
    path = DEPLOY / "systemd/psst-render@.service"
    where = rel(path)
    unit = unit_directives(path)
    runtime = unit.get(("Service", "RuntimeDirectory"), [""])[-1]
    if runtime != "psst-render/%i":
        report.error(where, f"RuntimeDirectory=psst-render/%i expected (the files' tmpfs), found {runtime!r}")
    for key, want in {"ProtectSystem": "strict", "NoNewPrivileges": "true", "UMask": "0077", "LimitCORE": "0"}.items():
        got = unit.get(("Service", key))
        if got is None or got[-1] != want:
            report.error(where, f"[Service] {key}={want} expected, found {got}")
    starts = unit.get(("Service", "ExecStart"), [])
    if len(starts) != 1:
        report.error(where, "one ExecStart expected")
        return
    argv = [a.replace("%i", RENDER_INSTANCE) for a in shlex.split(starts[0])]
    if argv[1:3] != ["render", "--watch"]:
        report.error(where, "ExecStart must run psst render --watch")
    memory_dirs = {f"/run/{runtime.replace('%i', RENDER_INSTANCE)}"}
    bundle = check_render(report, f"{where}:ExecStart", argv, render_files(), RENDER_DIR, memory_dirs, "systemd-render")
    check_invocation(report, f"{where}:ExecStart", argv, bundle)


# === Kubernetes ===


def kube_validate(report, path, docs):
    try:
        import kubernetes_validate
    except ImportError:
        report.skip(
            "kubernetes-schema",
            f"kubernetes-validate is not installed: {rel(path)} parsed but was not schema-checked (deploy/check-deps.sh installs it)",
        )
        return
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except Exception as e:  # noqa: BLE001 - the validator's errors are the finding
            message = str(e).splitlines()[0]
            report.error(f"{rel(path)}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}", f"Kubernetes {KUBERNETES_VERSION} schema: {message}")


def pod_containers(spec):
    for c in spec.get("initContainers", []):
        yield c, True
    for c in spec.get("containers", []):
        yield c, False


def check_kubernetes(report, image_argv):
    import yaml

    all_docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        kube_validate(report, path, docs)
        all_docs[path] = docs
    configmaps = {
        (d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for docs in all_docs.values()
        for d in docs
        if d["kind"] == "ConfigMap"
    }
    service_accounts = [d for docs in all_docs.values() for d in docs if d["kind"] == "ServiceAccount"]
    for sa in service_accounts:
        arn = sa["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "")
        if not arn.startswith("arn:aws:iam::"):
            report.error(f"ServiceAccount/{sa['metadata']['name']}", "needs the IRSA annotation eks.amazonaws.com/role-arn")

    for path, docs in all_docs.items():
        for doc in docs:
            if doc["kind"] not in ("DaemonSet", "Deployment", "Pod", "Job", "StatefulSet"):
                continue
            spec = doc["spec"]["template"]["spec"] if doc["kind"] != "Pod" else doc["spec"]
            namespace = doc["metadata"].get("namespace")
            where = f"{rel(path)}:{doc['kind']}/{doc['metadata']['name']}"
            check_pod(report, where, doc, spec, namespace, configmaps, image_argv)


def check_pod(report, where, workload, spec, namespace, configmaps, image_argv):
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    socket_volume = volumes.get(SOCKET_VOLUME)
    runs_agent = False
    for container, is_init in pod_containers(spec):
        cwhere = f"{where}/{container['name']}"
        argv = container.get("command", []) + container.get("args", [])
        if not container.get("command") and "psst" in container["image"].rsplit("/", 1)[-1]:
            argv = image_argv[:1] + container.get("args", image_argv[1:])
        invocations = psst_invocations(argv)
        mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        if "PSST_SOCKET" in env:
            report.socket(f"{cwhere}:env", env["PSST_SOCKET"])
        agent = any(Path(i[0]).name == "psstd" for i in invocations)
        probes = [container.get(p) for p in ("startupProbe", "readinessProbe", "livenessProbe")]
        probes = [p for p in probes if p]
        if agent:
            runs_agent = True
            check_agent_container(report, cwhere, workload, spec, container, is_init, probes, mounts, volumes, namespace, configmaps, invocations)
        for probe in probes:
            cmd = probe.get("exec", {}).get("command")
            if cmd is None:
                report.error(cwhere, "psst probes must exec `psst health`: a kubelet gRPC probe cannot reach a Unix socket")
                continue
            if not is_health_probe(cmd):
                report.error(cwhere, f"probe runs {cmd}, expected {INSTALL_DIR}/psst health")
            check_invocation(report, f"{cwhere}:probe", cmd, None)
        for inv in invocations:
            if Path(inv[0]).name == "psst":
                bundle = None
                if "render" in inv[1:]:
                    bundle = check_pod_render(report, cwhere, container, is_init, inv, mounts, volumes, namespace, configmaps)
                check_invocation(report, f"{cwhere}:command", inv, bundle)
        if invocations or probes or "PSST_SOCKET" in env:
            mount = mounts.get(SOCKET_VOLUME)
            if not mount:
                report.error(cwhere, f"talks to the agent but does not mount the {SOCKET_VOLUME} volume")
                continue
            report.socketdir(f"{cwhere}:mount", mount["mountPath"])
            if not agent and not mount.get("readOnly"):
                report.error(cwhere, f"mount {SOCKET_VOLUME} readOnly: a writable socket directory lets the app replace the socket")
    if socket_volume and "hostPath" in socket_volume:
        report.socketdir(f"{where}:hostPath", socket_volume["hostPath"]["path"])
    if socket_volume is None and any(True for _ in pod_containers(spec)):
        report.error(where, f"no {SOCKET_VOLUME} volume")
    if workload["kind"] == "DaemonSet" and runs_agent and spec.get("hostPID") is not True:
        report.error(where, "the DaemonSet agent needs hostPID: true to identify callers in other pods")


def check_pod_render(report, where, container, is_init, argv, mounts, volumes, namespace, configmaps):
    """psst render in a pod: --once in an init container, --watch in a native sidecar, the
    config from a ConfigMap, the files in an emptyDir with medium: Memory."""
    if "--watch" in argv and not (is_init and container.get("restartPolicy") == "Always"):
        report.error(where, "psst render --watch runs as a native sidecar: an init container with restartPolicy: Always")
    if "--watch" not in argv and not (is_init and "restartPolicy" not in container):
        report.error(where, "psst render --once runs as an init container, so the app starts with its files")
    config = render_config(argv)
    mount = next((m for m in mounts.values() if config and str(Path(config).parent) == m["mountPath"]), None)
    cm_name = volumes.get(mount["name"], {}).get("configMap", {}).get("name") if mount else None
    cm = configmaps.get((namespace, cm_name))
    if cm is None:
        report.error(where, f"psst render --config {config}: not in a ConfigMap of deploy/kubernetes/ mounted at its directory")
        return None
    for name, text in cm["data"].items():
        example = DEPLOY / "render" / name
        if name.endswith(".tmpl") and (not example.is_file() or example.read_text() != text):
            report.error(where, f"ConfigMap {cm_name}: {name} differs from deploy/render/{name}")
    memory_dirs = {
        m["mountPath"]
        for m in mounts.values()
        if volumes.get(m["name"], {}).get("emptyDir", {}).get("medium") == "Memory" and not m.get("readOnly")
    }
    return check_render(report, where, argv, cm["data"], mount["mountPath"], memory_dirs, f"k8s-{namespace}-{cm_name}")


def check_agent_container(report, where, workload, spec, container, is_init, probes, mounts, volumes, namespace, configmaps, invocations):
    if workload["kind"] != "DaemonSet":
        # A sidecar: a native one, in a pod that shares its PID namespace.
        if not (is_init and container.get("restartPolicy") == "Always"):
            report.error(where, "a psstd sidecar must be a native sidecar: an init container with restartPolicy: Always")
        if spec.get("shareProcessNamespace") is not True:
            report.error(where, "a psstd sidecar needs shareProcessNamespace: true (else callers are known by uid only)")
        if not any(container.get(p) for p in ("startupProbe",)):
            report.error(where, "a psstd sidecar needs a startupProbe, so the app starts once the agent serves")
    elif not (container.get("livenessProbe") and container.get("readinessProbe")):
        report.error(where, "the agent needs liveness and readiness probes")
    if not container.get("resources", {}).get("limits", {}).get("memory"):
        report.error(where, "set a memory limit for the agent")
    config = next((m for m in mounts.values() if volumes.get(m["name"], {}).get("configMap")), None)
    if config is None:
        report.error(where, "the agent mounts no ConfigMap with its config")
        return
    cm_name = volumes[config["name"]]["configMap"]["name"]
    cm = configmaps.get((namespace, cm_name))
    if cm is None:
        report.error(where, f"ConfigMap {namespace}/{cm_name} is not in deploy/kubernetes/")
        return
    bundle = report.bundle(f"k8s-{namespace}-{cm_name}", cm["data"], config["mountPath"])
    grace = check_bundle_configs(report, where, bundle)
    if spec.get("terminationGracePeriodSeconds", 30) <= grace:
        report.error(where, f"terminationGracePeriodSeconds must exceed the grace period ({grace}s)")
    for inv in invocations:
        if Path(inv[0]).name == "psstd":
            check_invocation(report, f"{where}:command", inv, bundle)


# === ECS ===


def check_ecs(report, bundle):
    try:
        import botocore.session
        from botocore.validate import ParamValidator

        model = botocore.session.get_session().get_service_model("ecs")
    except ImportError:
        model = None
        report.skip("ecs-schema", "botocore is not installed: the ECS files parsed but were not checked against the ECS API model")
    grace = check_bundle_configs(report, "deploy/ecs/config", bundle)
    for name, operation in (
        ("daemon-task.json", "RegisterTaskDefinition"),
        ("app-task.json", "RegisterTaskDefinition"),
        ("sidecar-task.json", "RegisterTaskDefinition"),
        ("render-task.json", "RegisterTaskDefinition"),
        ("daemon-service.json", "CreateService"),
    ):
        path = DEPLOY / "ecs" / name
        data = json.loads(path.read_text())
        if model is not None:
            result = ParamValidator().validate(data, model.operation_model(operation).input_shape)
            if result.has_errors():
                report.error(rel(path), f"ECS {operation}: {result.generate_report()}")
        if operation == "RegisterTaskDefinition":
            check_task(report, rel(path), data, bundle, grace)
    service = json.loads((DEPLOY / "ecs/daemon-service.json").read_text())
    if service.get("schedulingStrategy") != "DAEMON":
        report.error("deploy/ecs/daemon-service.json", "schedulingStrategy must be DAEMON")


def check_task(report, where, task, bundle, grace):
    volumes = {v["name"]: v for v in task.get("volumes", [])}
    runs_agent = False
    for c in task["containerDefinitions"]:
        cwhere = f"{where}/{c['name']}"
        argv = c.get("entryPoint", []) + c.get("command", [])
        invocations = psst_invocations(argv)
        env = {e["name"]: e["value"] for e in c.get("environment", [])}
        if "PSST_SOCKET" in env:
            report.socket(f"{cwhere}:env", env["PSST_SOCKET"])
        mounts = {m["sourceVolume"]: m for m in c.get("mountPoints", [])}
        agent = any(Path(i[0]).name == "psstd" for i in invocations)
        health = c.get("healthCheck", {}).get("command")
        if agent:
            runs_agent = True
            if not health:
                report.error(cwhere, "the agent needs a healthCheck running psst health")
            if c.get("stopTimeout", 30) <= grace:
                report.error(cwhere, f"stopTimeout must exceed the grace period ({grace}s)")
        if health:
            if health[:1] != ["CMD"] or not is_health_probe(health[1:]):
                report.error(cwhere, f"healthCheck must be [CMD, {INSTALL_DIR}/psst, health], not {health}")
            check_invocation(report, f"{cwhere}:healthCheck", health[1:], None)
        for inv in invocations:
            if Path(inv[0]).name == "psst" and "render" in inv[1:]:
                memory_dirs = {
                    m["containerPath"]
                    for m in c.get("mountPoints", [])
                    if volumes.get(m["sourceVolume"], {}).get("dockerVolumeConfiguration", {}).get("driverOpts", {}).get("type") == "tmpfs"
                    and not m.get("readOnly")
                }
                render = check_render(report, cwhere, inv, render_files(), RENDER_DIR, memory_dirs, "ecs-render")
                check_invocation(report, f"{cwhere}:command", inv, render)
                continue
            check_invocation(report, f"{cwhere}:command", inv, bundle)
        if invocations or health or "PSST_SOCKET" in env:
            mount = mounts.get(SOCKET_VOLUME)
            if not mount:
                report.error(cwhere, f"talks to the agent but does not mount the {SOCKET_VOLUME} volume")
                continue
            report.socketdir(f"{cwhere}:mount", mount["containerPath"])
            if not agent and not mount.get("readOnly"):
                report.error(cwhere, f"mount {SOCKET_VOLUME} readOnly: a writable socket directory lets the app replace the socket")
    socket_volume = volumes.get(SOCKET_VOLUME)
    if socket_volume is None:
        report.error(where, f"no {SOCKET_VOLUME} volume")
    elif socket_volume.get("host", {}).get("sourcePath"):
        report.socketdir(f"{where}:host", socket_volume["host"]["sourcePath"])
    if runs_agent and socket_volume and socket_volume.get("host", {}).get("sourcePath"):
        if task.get("pidMode") != "host":
            report.error(where, "the daemon agent needs pidMode host to identify callers in other tasks")
    elif runs_agent and task.get("pidMode") != "task":
        report.error(where, "a sidecar agent needs pidMode task (else callers are known by uid only)")


# === Compose ===


def check_compose(report):
    import yaml

    path = DEPLOY / "compose/compose.yaml"
    where = rel(path)
    exe = shutil.which("docker-compose")
    if exe:
        result = subprocess.run([exe, "-f", str(path), "config", "--quiet"], capture_output=True, text=True, cwd=path.parent)
        if result.returncode != 0:
            report.error(where, f"docker-compose config: {result.stderr.strip()}")
    else:
        report.skip("compose-schema", f"docker-compose is not installed: {where} parsed but was not validated (deploy/check-deps.sh installs it)")
    compose = yaml.safe_load(path.read_text())
    services = compose["services"]
    agent_services = []
    for name, svc in services.items():
        swhere = f"{where}:{name}"
        argv = as_list(svc.get("entrypoint")) + as_list(svc.get("command"))
        invocations = psst_invocations(argv)
        env = svc.get("environment", {})
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        if "PSST_SOCKET" in env:
            report.socket(f"{swhere}:env", env["PSST_SOCKET"])
        mounts = [parse_compose_volume(v) for v in svc.get("volumes", [])]
        agent = any(Path(i[0]).name == "psstd" for i in invocations)
        bundle = None
        if agent:
            agent_services.append(name)
            config = next((m for m in mounts if m["target"] == "/etc/psst"), None)
            if config is None:
                report.error(swhere, "the agent needs its config directory bind-mounted at /etc/psst")
            else:
                hostdir = (path.parent / config["source"]).resolve()
                files = {p.name: p.read_text() for p in sorted(hostdir.glob("*.toml"))}
                bundle = report.bundle("compose", files, config["target"])
                grace = check_bundle_configs(report, swhere, bundle)
                stop = duration_seconds(svc.get("stop_grace_period", "10s"))
                if stop <= grace:
                    report.error(swhere, f"stop_grace_period must exceed the grace period ({grace}s)")
            health = svc.get("healthcheck", {}).get("test")
            if not health or health[:1] != ["CMD"] or not is_health_probe(health[1:]):
                report.error(swhere, f"healthcheck.test must be [CMD, {INSTALL_DIR}/psst, health], not {health}")
            else:
                check_invocation(report, f"{swhere}:healthcheck", health[1:], None)
        for inv in invocations:
            check_invocation(report, f"{swhere}:command", inv, bundle)
        if invocations or "PSST_SOCKET" in env:
            mount = next((m for m in mounts if m["source"] == SOCKET_VOLUME), None)
            if mount is None:
                report.error(swhere, f"talks to the agent but does not mount the {SOCKET_VOLUME} volume")
                continue
            report.socketdir(f"{swhere}:mount", mount["target"])
            if not agent and not mount["read_only"]:
                report.error(swhere, f"mount {SOCKET_VOLUME} read-only (:ro): a writable socket directory lets the app replace the socket")
            if not agent and svc.get("pid") != f"service:{agent_services[0] if agent_services else '?'}":
                report.error(swhere, "share the agent's PID namespace (pid: service:psstd), else callers are known by uid only")
    if not agent_services:
        report.error(where, "no service runs psstd")


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else shlex.split(value)


def parse_compose_volume(spec):
    if isinstance(spec, dict):
        return {"source": spec.get("source", ""), "target": spec["target"], "read_only": bool(spec.get("read_only"))}
    parts = spec.split(":")
    return {"source": parts[0], "target": parts[1], "read_only": len(parts) > 2 and "ro" in parts[2].split(",")}


# === deploy/aws: the change feed's CloudFormation template ===

# The event sources, and the Secrets Manager operations, the agent's feed understands
# (agent/src/rotation/feed.rs: SECRET_CHANGES): the template's rules must send nothing else.
FEED_SOURCES = {"aws.ssm", "aws.secretsmanager", "aws.s3"}
FEED_SECRET_CHANGES = {
    "PutSecretValue", "UpdateSecret", "UpdateSecretVersionStage", "RotateSecret",
    "RotationSucceeded", "DeleteSecret", "RestoreSecret", "CreateSecret", "CancelRotateSecret",
    "RotationAbandoned",
}


def cfn_loader():
    """A YAML loader that reads CloudFormation's short forms (!Ref, !Sub, ...) as {tag: value}."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def short_form(loader, suffix, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {suffix: value}

    Loader.add_multi_constructor("!", short_form)
    return Loader


def check_aws(report):
    import yaml

    where = "deploy/aws/feed.yaml"
    path = DEPLOY / "aws/feed.yaml"
    cfn_lint = shutil.which("cfn-lint")
    if cfn_lint:
        run = subprocess.run([cfn_lint, str(path)], capture_output=True, text=True)
        if run.returncode != 0:
            report.error(where, f"cfn-lint: {run.stdout.strip()} {run.stderr.strip()}")
    else:
        report.skip("cfn-lint", "not installed (deploy/check-deps.sh); checking the template's structure only")
    template = yaml.load(path.read_text(), Loader=cfn_loader())
    resources = template.get("Resources", {})
    topics = [n for n, r in resources.items() if r.get("Type") == "AWS::SNS::Topic"]
    if len(topics) != 1:
        report.error(where, f"expected one SNS topic, found {topics}")
        return
    topic = topics[0]
    rules = {n: r["Properties"] for n, r in resources.items() if r.get("Type") == "AWS::Events::Rule"}
    schedules = [n for n, p in rules.items() if "ScheduleExpression" in p]
    if not schedules:
        report.error(where, "no heartbeat: a rule with a ScheduleExpression keeps [feed] heartbeat satisfied")
    for name, props in rules.items():
        targets = props.get("Targets", [])
        if [t.get("Arn") for t in targets] != [{"Ref": topic}]:
            report.error(where, f"rule {name} must target the topic {topic} only")
        pattern = props.get("EventPattern")
        if pattern is None:
            continue
        sources = set(pattern.get("source", []))
        if not sources or not sources <= FEED_SOURCES:
            report.error(where, f"rule {name} sends sources the agent does not read: {sorted(sources)}")
        names = set(pattern.get("detail", {}).get("eventName", []))
        if "aws.secretsmanager" in sources and names != FEED_SECRET_CHANGES:
            report.error(where, f"rule {name}: eventName {sorted(names)} differs from what the agent handles {sorted(FEED_SECRET_CHANGES)}")
    for name, r in resources.items():
        if r.get("Type") == "AWS::SQS::Queue":
            retention = r["Properties"].get("MessageRetentionPeriod")
            if not isinstance(retention, int) or retention > 86400:
                report.error(where, f"queue {name}: retention must be short (at most a day), got {retention}")
    # deploy/iam/feed.json holds the same statements as the template's agent policy.
    policies = [r for r in resources.values() if r.get("Type") == "AWS::IAM::ManagedPolicy"]
    iam = json.loads((DEPLOY / "iam/feed.json").read_text())
    actions = lambda doc: sorted((st["Sid"], tuple(sorted(st["Action"]))) for st in doc["Statement"])
    if len(policies) != 1 or actions(policies[0]["Properties"]["PolicyDocument"]) != actions(iam):
        report.error(where, "the AgentFeedPolicy statements differ from deploy/iam/feed.json")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    if importlib.util.find_spec("yaml") is None:
        report.error("python3", "PyYAML is not installed: pip install PyYAML (deploy/check-deps.sh)")
        sys.exit(1)
    parse_all(report)
    image_argv = check_container_image(report)
    check_systemd(report)
    check_kubernetes(report, image_argv)
    check_ecs(report, check_ecs_image(report))
    check_compose(report)
    check_aws(report)
    sys.exit(1 if report.errors else 0)


if __name__ == "__main__":
    main()
