"""The `embedded` image of the repository's Dockerfile, built and served for real.

Run by `make test-container` (and so by `.ci/run`), never by `make test`: it
needs root, podman and minutes. Outside root, or without podman and apt-get
to install it, it fails with one line saying what is missing; it never skips.

What it does, with podman:

1. A base image standing in for `python:3.11-slim` (which cannot be pulled
   here): `debootstrap --variant=minbase` of the host's Debian release from
   the host's own Debian mirror, plus python3, python3-venv, python3-pip,
   python-is-python3 and ca-certificates, `podman import`ed as
   `BASE_IMAGE`. Made once: kept while an image of that name carries this
   recipe's label.
2. An export made quickly on the host (`rnnserve train charlm`, a few seconds
   of training) inside a copy of the build context, passed as `EXPORT_DIR`.
3. `podman build --target embedded`, then `podman run` as the image's own
   user with the ports published on 127.0.0.1 only; REST status and a
   `generate_text` predict, gRPC `rnnserve status` and `generate` from the
   host; `podman top` shows uid 10001. The container is removed whatever
   happens. The images stay, tagged BUILD_TAG and IMAGE_TAG, as the next
   run's build cache (a run replaces the previous run's images, so the cache
   does not grow); with the sources unchanged, only the export is rebuilt.

Settings this machine needed, each seen failing without it (all in the
test's own containers.conf via CONTAINERS_CONF, or on the command line; the
machine's /etc/containers is never touched):

- runtime runc: crun 1.8 says "cgroups in hybrid mode not supported"
  (this machine has a cgroup v1/v2 hybrid). runc is named in the apt-get
  install, so apt satisfies podman's `crun | runc` with it.
- `default_ulimits` nofile/nproc no higher than the hard limits podman itself
  runs with (podman's defaults are 1048576: runc fails with "error setting
  rlimit type 7 / type 6: operation not permitted"). podman 4.3 lowers its
  own RLIMIT_NPROC to the kernel's pid_max at start, so nproc is capped by
  that too.
- `netns = "slirp4netns"` and `--network host` for the build: podman's
  default bridge network (netavark) adds iptables/nft rules and turns on
  ip_forward on the host, which must not happen here.
- `--format docker`: the OCI format ignores `SHELL`, and the RUN steps lose
  `pipefail`.
- the host's CA bundle mounted read-only into the build, named by
  `PIP_CERT`: egress goes through a TLS-intercepting proxy whose CA only the
  host's bundle has; without it pip finds "no versions" of anything. The
  host's pip configuration is not passed in: its extra indexes and
  find-links are file:// paths under /opt that do not exist in the build,
  and pip inside reaches PyPI directly.

`podman top NAME uid` would exec ps(1), which the image does not have;
`huser`/`user` are podman's own descriptors.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from fnmatch import fnmatch

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = "charlm"
IMAGE_USER = "10001"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
BASE_IMAGE = "localhost/rnnserve-python-base"
# Kept between runs as the build cache (~5 GB with the base); `podman rmi` them to free it.
BUILD_TAG = "localhost/rnnserve-build:test"
IMAGE_TAG = "localhost/rnnserve-embedded:test"
RECIPE_LABEL = "org.rnnserve.base-recipe"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HOST_PACKAGES = ("podman", "runc", "slirp4netns", "uidmap", "fuse-overlayfs", "debootstrap")
BUILD_TIMEOUT = 1800
AVAILABLE_TIMEOUT = 180
PROMPT = "The "

pytestmark = pytest.mark.container


def fail(message):
    """One line, no traceback: what is missing and how to get it."""
    pytest.fail(message, pytrace=False)


def run(args, *, env=None, timeout=600, check=True, **kwargs):
    """`subprocess.run` capturing text; a failure shows the command and the end of its output."""
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        output = (result.stdout[-3000:] + "\n" + result.stderr[-3000:]).strip()
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}:\n{output}")
    return result


# -- the host ---------------------------------------------------------------


def ensure_host_tools():
    """podman and friends, installed with apt-get when missing (root only)."""
    if os.geteuid() != 0:
        fail("the container test needs root (podman build/run, debootstrap): run `sudo make test-container`")
    missing = [tool for tool in ("podman", "runc", "slirp4netns", "debootstrap") if not shutil.which(tool)]
    if not missing:
        return
    if not shutil.which("apt-get"):
        fail(f"the container test needs {', '.join(missing)} and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "update", "-q"], env=env, timeout=600)
        # runc named explicitly: podman's first choice, crun, fails on this cgroup layout.
        run(["apt-get", "install", "-y", "-q", *HOST_PACKAGES], env=env, timeout=1200)
    except AssertionError as error:
        fail(f"could not install {' '.join(HOST_PACKAGES)} with apt-get: {str(error).splitlines()[-1]}")


def hard_limit(kind, fallback):
    hard = resource.getrlimit(kind)[1]
    return fallback if hard == resource.RLIM_INFINITY else hard


def read_int(path, default):
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


def containers_conf(path):
    """The test's own containers.conf (see the module docstring for why each line is there)."""
    nofile = hard_limit(resource.RLIMIT_NOFILE, read_int("/proc/sys/fs/nr_open", 1048576))
    pid_max = read_int("/proc/sys/kernel/pid_max", 32768)
    nproc = min(hard_limit(resource.RLIMIT_NPROC, pid_max), pid_max)
    path.write_text(
        "# Written by tests/container/test_image.py; used through CONTAINERS_CONF only.\n"
        "[containers]\n"
        'netns = "slirp4netns"\n'
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "\n"
        "[engine]\n"
        'runtime = "runc"\n',
        encoding="utf-8",
    )
    return path


def os_release():
    values = {}
    with open("/etc/os-release", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            values[key] = value.strip('"')
    return values


def apt_sources():
    """(types, uris, suites) of every enabled entry of the host's apt sources, both formats."""
    entries = []
    for path in sorted(glob.glob("/etc/apt/sources.list") + glob.glob("/etc/apt/sources.list.d/*.list")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if words and words[0] in ("deb", "deb-src"):
                    if len(words) > 1 and words[1].startswith("["):  # [options]
                        while words and not words[1].endswith("]"):
                            del words[1]
                        del words[1]
                    if len(words) >= 3:
                        entries.append(([words[0]], [words[1]], [words[2]]))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path, encoding="utf-8") as f:
            paragraphs = f.read().split("\n\n")
        for paragraph in paragraphs:
            fields = {}
            for line in paragraph.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
            if fields.get("enabled", ["yes"])[0].lower() == "no":
                continue
            if "uris" in fields and "suites" in fields:
                entries.append((fields.get("types", ["deb"]), fields["uris"], fields["suites"]))
    return entries


def debian_mirrors(codename):
    """{suite: mirror URI} for codename, codename-updates and codename-security, from the host's apt sources."""
    found = {}
    for types, uris, suites in apt_sources():
        if "deb" not in types:
            continue
        for suite in suites:
            if suite in (codename, f"{codename}-updates", f"{codename}-security"):
                found.setdefault(suite, next(u for u in uris if u.startswith(("http://", "https://"))))
    if codename not in found:
        fail(
            f"no http(s) apt source for Debian {codename} in /etc/apt/sources.list*: debootstrap needs a mirror"
        )
    return found


# -- the base image ------------------------------------------------------------


def base_image(podman, workdir):
    """BASE_IMAGE:<codename>, made (debootstrap + apt-get + podman import) unless it exists with this recipe."""
    release = os_release()
    if release.get("ID") != "debian" or not release.get("VERSION_CODENAME"):
        fail(
            f"the base image is debootstrapped from the host's Debian release; this host is {release.get('ID')}"
        )
    codename = release["VERSION_CODENAME"]
    mirrors = debian_mirrors(codename)
    recipe = json.dumps({"variant": "minbase", "mirrors": mirrors, "packages": BASE_PACKAGES}, sort_keys=True)
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    image = f"{BASE_IMAGE}:{codename}"
    if podman("image", "exists", image, check=False).returncode == 0:
        labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", image).stdout) or {}
        if labels.get(RECIPE_LABEL) == digest:
            return image
    root = workdir / "rootfs"
    run(["debootstrap", "--variant=minbase", codename, str(root), mirrors[codename]], timeout=1200)
    sources = [f"deb {mirrors[suite]} {suite} main" for suite in sorted(mirrors)]
    (root / "etc/apt/sources.list").write_text("\n".join(sources) + "\n", encoding="utf-8")
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}
    run(["chroot", str(root), "apt-get", "update", "-q"], env=env, timeout=600)
    run(
        ["chroot", str(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", *BASE_PACKAGES],
        env=env,
        timeout=1200,
    )
    run(["chroot", str(root), "apt-get", "clean"], env=env)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
    (root / "etc/resolv.conf").write_text("", encoding="utf-8")  # podman provides its own
    archive = workdir / "rootfs.tar"
    run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(archive), "."], timeout=600)
    podman(
        "import",
        "--change", f"LABEL {RECIPE_LABEL}={digest}",
        "--change", "ENV LANG=C.UTF-8",
        "--change", 'CMD ["python3"]',
        str(archive), image,
        timeout=600,
    )  # fmt: skip
    shutil.rmtree(root)
    archive.unlink()
    return image


# -- the build context and the export -------------------------------------------


def dockerignore_patterns():
    """(patterns for any depth, patterns for the top level) of .dockerignore, plus what is never copied."""
    with open(os.path.join(REPO_ROOT, ".dockerignore"), encoding="utf-8") as f:
        patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    anywhere = [p.removeprefix("**/") for p in patterns if p.startswith("**/")] + ["*.egg-info"]
    top = [p for p in patterns if not p.startswith("**/")] + [".git", ".venv", "exports"]
    return anywhere, top


def build_context(path):
    """The repository minus .dockerignore (mtimes kept, so the build cache holds), plus a fresh export."""
    anywhere, top = dockerignore_patterns()

    def ignore(directory, names):
        patterns = anywhere + top if os.path.samefile(directory, REPO_ROOT) else anywhere
        return [name for name in names if any(fnmatch(name, pattern) for pattern in patterns)]

    shutil.copytree(REPO_ROOT, path, ignore=ignore, symlinks=True)
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run(
        [sys.executable, "-m", "rnnserve", "train", MODEL, "--time-budget", "10", "--epochs", "1",
         "--units", "32", "--verbose", "0", "--out", str(path.parent / "run"),
         "--export-base", str(path / "exports" / MODEL)],
        env=env, cwd=REPO_ROOT, timeout=900,
    )  # fmt: skip
    return f"exports/{MODEL}"


# -- talking to the container ------------------------------------------------------


def image_id(podman, reference):
    result = podman("image", "inspect", "--format", "{{.Id}}", reference, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest(port, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_available(podman, name, port):
    deadline = time.monotonic() + AVAILABLE_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        if state != "running":
            logs = podman("logs", name, check=False)
            raise AssertionError(
                f"container {state} before the model was AVAILABLE:\n{(logs.stdout + logs.stderr)[-3000:]}"
            )
        try:
            status = rest(port, f"/v1/models/{MODEL}")
            if [v["state"] for v in status["model_version_status"]] == ["AVAILABLE"]:
                return status
            last = status
        except (urllib.error.URLError, ConnectionError, OSError) as error:
            last = error
        time.sleep(0.5)
    logs = podman("logs", name, check=False)
    raise AssertionError(
        f"not AVAILABLE after {AVAILABLE_TIMEOUT} s (last: {last}):\n{(logs.stdout + logs.stderr)[-3000:]}"
    )


def host_firewall():
    """The host's nftables ruleset (iptables-nft writes there too), or None without nft."""
    nft = shutil.which("nft")
    return run([nft, "list", "ruleset"]).stdout if nft else None


# -- the test -------------------------------------------------------------------------


@contextlib.contextmanager
def timed(times, step):
    start = time.monotonic()
    yield
    times[step] = time.monotonic() - start


def test_embedded_image_builds_and_serves_as_its_own_user(tmp_path):
    ensure_host_tools()
    env = {**os.environ, "CONTAINERS_CONF": str(containers_conf(tmp_path / "containers.conf"))}

    def podman(*args, timeout=600, check=True):
        return run(["podman", *args], env=env, timeout=timeout, check=check)

    firewall = host_firewall()
    name = f"rnnserve-embedded-test-{os.getpid()}"
    grpc_port, rest_port = free_port(), free_port()
    times = {}
    try:
        with timed(times, "base image"):
            base = base_image(podman, tmp_path)
        with timed(times, "export"):
            context = tmp_path / "context"
            export_dir = build_context(context)
        with timed(times, "build"):
            build = ["build", "--format", "docker", "--network", "host", "--pull=never",
                     "--build-arg", f"PYTHON_IMAGE={base}", "--build-arg", f"EXPORT_DIR={export_dir}"]  # fmt: skip
            if os.path.exists(HOST_CA_BUNDLE):
                build += ["--volume", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
                          "--build-arg", f"PIP_CERT={HOST_CA_BUNDLE}"]  # fmt: skip
            # Both stages tagged, so their layers stay as the next run's cache (the
            # venv, ~2.3 GB, is rebuilt only when the sources change); the previous
            # run's images are removed once replaced, so the cache does not grow.
            for target, tag in (("build", BUILD_TAG), ("embedded", IMAGE_TAG)):
                previous = image_id(podman, tag)
                podman(*build, "--target", target, "--tag", tag, str(context), timeout=BUILD_TIMEOUT)
                if previous not in (None, image_id(podman, tag)):
                    podman("rmi", previous, check=False)
        with timed(times, "until AVAILABLE"):
            podman("run", "--detach", "--name", name, "--network", "slirp4netns",
                   "--publish", f"127.0.0.1:{grpc_port}:8500", "--publish", f"127.0.0.1:{rest_port}:8501",
                   IMAGE_TAG)  # fmt: skip
            status = wait_available(podman, name, rest_port)

        assert status["model_version_status"][0]["status"]["error_code"] == "OK"
        ports = [line for line in podman("port", name).stdout.splitlines() if line]
        assert sorted(ports) == [f"8500/tcp -> 127.0.0.1:{grpc_port}", f"8501/tcp -> 127.0.0.1:{rest_port}"]

        sampling = {"max_new_tokens": 16, "temperature": 0.8, "top_k": 0, "seed": 7}
        body = {"signature_name": "generate_text", "inputs": {"prompt": [PROMPT], **sampling}}
        (text,) = rest(rest_port, f"/v1/models/{MODEL}:predict", body)["outputs"]
        assert isinstance(text, str) and text

        client_env = {**os.environ, "PYTHONPATH": REPO_ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
        server = ["--server", f"127.0.0.1:{grpc_port}", "--model", MODEL]
        grpc_status = run([sys.executable, "-m", "rnnserve", "status", *server], env=client_env)
        assert grpc_status.stdout.strip().lower() == "version 1: available", grpc_status.stdout
        generated = run(
            [sys.executable, "-m", "rnnserve", "generate", *server, "--prompt", PROMPT, "--chunk", "16",
             "--max-new-tokens", "16", "--temperature", "0.8", "--top-k", "0", "--seed", "7"],
            env=client_env,
        )  # fmt: skip
        # One chunk with the same seed: the gRPC stream and the REST call sample the same text.
        assert generated.stdout.rstrip("\n") == PROMPT + text

        # psgo's own descriptors: the image has no ps(1), which `podman top NAME uid` would exec.
        rows = [line.split() for line in podman("top", name, "huser", "user", "hpid").stdout.splitlines()[1:]]
        assert rows and all(row[0] == IMAGE_USER for row in rows), rows
        assert (
            podman("inspect", "--format", "{{.Config.User}}", name).stdout.strip()
            == f"{IMAGE_USER}:{IMAGE_USER}"
        )
    finally:
        podman("rm", "--force", "--time", "5", name, check=False)
        print("\ncontainer test:", ", ".join(f"{step} {seconds:.1f} s" for step, seconds in times.items()))
    if firewall is not None:
        assert host_firewall() == firewall, (
            "the host's firewall rules changed: a container used the bridge network"
        )
