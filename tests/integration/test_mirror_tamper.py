"""A Debian 12 host configured by roles/apt_baseline refuses a tampered baseline mirror.

No lab needed: the "host" is a throwaway overlay of the golden image (the image itself is the
read-only lower layer and is never written), configured by the real role over Ansible's chroot
connection. The mirror is built by the real enp_mirror_build module from baseline/packages.lock into a
temporary directory with a temporary signing key (fast when the .deb cache is warm), and served on
127.0.0.1 on a free port. Then:

  clean mirror            -> apt-get update succeeds, every locked package resolves and downloads
  tampered Packages       -> refused (hash sum mismatch / unexpected size)
  edited InRelease        -> refused (BADSIG)
  no InRelease/Release.gpg-> refused (not signed)
  signed by another key   -> refused (NO_PUBKEY: Signed-By pins the mirror key)

apt never refetches indexes it already holds for the same InRelease, so /var/lib/apt/lists is
cleared before every attempt.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time

import pytest
import yaml

pytestmark = pytest.mark.integration

PROJECT = pathlib.Path(__file__).resolve().parents[2]
BIN = PROJECT / ".venv" / "bin"
SUITE = "enp-bookworm"
HOST = "baseline-host"


def find_golden_image() -> pathlib.Path | None:
    explicit = os.environ.get("ENP_GOLDEN_IMAGE")
    if explicit:
        return pathlib.Path(explicit) if (pathlib.Path(explicit) / "var/lib/dpkg/status").is_file() else None
    cache = pathlib.Path(os.environ.get("ENP_CACHE_DIR", "~/.cache/enp")).expanduser()
    for rootfs in sorted(cache.glob("images/bookworm-*/rootfs")):
        if (rootfs.parent / "COMPLETE").exists():
            return rootfs
    return None


def missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "needs root (overlay mount, chroot)"
    for tool in ("apt-ftparchive", "gpg", "gpgv", "mount", "chroot"):
        if not shutil.which(tool):
            return f"{tool} is not installed on this machine (make setup)"
    if find_golden_image() is None:
        return "no golden bookworm image in ~/.cache/enp/images (build it with `make lab-up` or set ENP_GOLDEN_IMAGE)"
    return None


if reason := missing_prerequisite():
    pytestmark = [pytest.mark.integration, pytest.mark.skip(reason=reason)]


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(PROJECT / "roles"),
        ANSIBLE_CACHE_PLUGIN="memory",  # keep the throwaway host out of the project's fact cache
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="False",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    return env


def run_module(name: str, args: dict) -> dict:
    proc = subprocess.run(
        [str(BIN / "ansible"), "localhost", "-c", "local", "-o", "-m", name, "-a", json.dumps(args)],
        cwd=PROJECT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("localhost | ")), "")
    if " => " not in line:
        raise AssertionError(f"no result from {name}:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(line.split(" => ", 1)[1])


def apt(root: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["chroot", str(root), "apt-get", "-q", *args],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def clear_lists(root: pathlib.Path) -> None:
    lists = root / "var/lib/apt/lists"
    for path in lists.iterdir():
        if path.is_file() and path.name != "lock":
            path.unlink()
    for path in (lists / "partial").iterdir():
        path.unlink()


def fresh_update(root: pathlib.Path) -> subprocess.CompletedProcess:
    clear_lists(root)
    return apt(root, "update")


def report(case: str, proc: subprocess.CompletedProcess) -> None:
    """apt's verdict, shown by `pytest -rP` as evidence."""
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if x.startswith(("E:", "W:", "Err:"))]
    print(f"[{case}] apt-get update exit {proc.returncode}\n" + "\n".join(lines))


def mirror_lists(root: pathlib.Path) -> list[str]:
    return sorted(p.name for p in (root / "var/lib/apt/lists").iterdir() if "Packages" in p.name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def image_state() -> dict:
    """What a write into the golden image would change: dpkg status, apt state, /etc/apt."""
    image = find_golden_image()
    state = {"status": hashlib.sha256((image / "var/lib/dpkg/status").read_bytes()).hexdigest()}
    for rel in ("var/lib/dpkg", "var/lib/apt/lists", "var/cache/apt/archives", "etc/apt"):
        for path in sorted((image / rel).rglob("*")):
            stat = path.lstat()
            state[str(path.relative_to(image))] = (stat.st_size, stat.st_mtime_ns)
    return state


@pytest.fixture(scope="module")
def image_before() -> dict:
    return image_state()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, image_before: dict) -> dict:
    base = tmp_path_factory.mktemp("mirror")
    started = time.monotonic()
    result = run_module(
        "enp_mirror_build",
        {
            "manifest": str(PROJECT / "baseline/packages.yml"),
            "lock": str(PROJECT / "baseline/packages.lock"),
            "image": str(find_golden_image()),
            "dest": str(base / "mirror"),
            "gnupg_home": str(base / "gnupg"),
            "key_uid": "enp baseline mirror (tamper test) <mirror-test@enp.invalid>",
        },
    )
    if result.get("failed") and "apt-get update" in result.get("msg", ""):
        pytest.skip(f"the .deb cache is cold and the Debian archive is unreachable: {result['msg'][:300]}")
    assert not result.get("failed"), result.get("msg")
    result["build_seconds"] = round(time.monotonic() - started, 1)
    result["gnupg_home"] = str(base / "gnupg")
    return result


@pytest.fixture(scope="module")
def server(mirror: dict) -> str:
    port = free_port()
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", mirror["mirror"], str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def host_root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    base = tmp_path_factory.mktemp("overlay")
    upper, work, merged = base / "upper", base / "work", base / "merged"
    for path in (upper, work, merged):
        path.mkdir()
    image = find_golden_image()
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={image},upperdir={upper},workdir={work}", str(merged)],
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        yield merged
    finally:
        for _attempt in range(20):
            if subprocess.run(["umount", str(merged)], capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.25)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def configured_host(host_root: pathlib.Path, server: str, mirror: dict, tmp_path_factory: pytest.TempPathFactory):
    """Apply roles/apt_baseline to the overlay host; record each run's recap."""
    base = tmp_path_factory.mktemp("play")
    inventory = base / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {
                        HOST: {
                            "ansible_connection": "community.general.chroot",
                            "ansible_host": str(host_root),
                            "ansible_python_interpreter": "/usr/bin/python3",
                        }
                    }
                }
            }
        )
    )
    (base / "vars.json").write_text(
        json.dumps(
            {
                "apt_baseline_url": server,
                "apt_baseline_key": mirror["public_key_armored"],
                "apt_baseline_key_fingerprint": mirror["fingerprint"],
            }
        )
    )
    playbook = base / "site.yml"
    playbook.write_text(
        "- name: Baseline package source\n  hosts: all\n  gather_facts: false\n  roles:\n    - role: apt_baseline\n"
    )

    def play(*extra: str) -> tuple[str, dict[str, int]]:
        proc = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(inventory),
                "-e",
                f"@{base / 'vars.json'}",
                *extra,
                str(playbook),
            ],
            cwd=PROJECT,
            env=ansible_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        recap = next((line for line in proc.stdout.splitlines() if line.startswith(HOST) and "ok=" in line), "")
        counts = {k: int(v) for k, v in (item.split("=") for item in recap.split(":", 1)[1].split())} if recap else {}
        assert proc.returncode == 0, f"role run failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
        return proc.stdout, counts

    runs, seconds = {}, {}
    for name, extra in (("check_first", ("--check",)), ("converge", ()), ("idempotence", ()), ("check", ("--check",))):
        started = time.monotonic()
        runs[name] = play(*extra)
        seconds[name] = round(time.monotonic() - started, 1)
        if name == "check_first":
            untouched = not (host_root / "etc/apt/sources.list.d/enp-baseline.sources").exists()
    return {"root": host_root, "runs": runs, "seconds": seconds, "check_first_untouched": untouched}


@pytest.fixture
def dists(mirror: dict):
    """The suite's index files; restored byte for byte after each test."""
    path = pathlib.Path(mirror["mirror"]) / "dists" / SUITE
    saved = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    yield path
    for p in list(path.rglob("*")):
        if p.is_file() and p not in saved:
            p.unlink()
    for p, data in saved.items():
        p.write_bytes(data)


def test_role_converges_idempotent_and_honest_in_check_mode(configured_host: dict, mirror: dict) -> None:
    runs = configured_host["runs"]
    print(
        f"mirror build {mirror['build_seconds']}s ({mirror['packages']} packages, {mirror['bytes']} bytes, "
        f"downloaded {mirror['downloaded']}); role runs {configured_host['seconds']}; "
        f"changed: { {name: run[1]['changed'] for name, run in runs.items()} }"
    )
    assert runs["check_first"][1]["changed"] > 0 and configured_host["check_first_untouched"]
    assert runs["converge"][1]["changed"] > 0
    assert runs["idempotence"][1]["changed"] == 0, runs["idempotence"][0][-3000:]
    assert runs["check"][1]["changed"] == 0, runs["check"][0][-3000:]
    root = configured_host["root"]
    assert sorted(os.listdir(root / "etc/apt/sources.list.d")) == ["enp-baseline.sources"]
    assert not (root / "etc/apt/sources.list").exists()
    fact = json.loads((root / "etc/ansible/facts.d/enp_baseline.fact").read_text())
    assert fact["key_fingerprint"] == mirror["fingerprint"]
    assert fact["suite"] == SUITE


def test_clean_mirror_is_accepted_and_complete(configured_host: dict, dists: pathlib.Path) -> None:
    root = configured_host["root"]
    proc = fresh_update(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "W:" not in proc.stderr and "E:" not in proc.stderr, proc.stderr
    # Every locked version comes from the mirror and passes apt's own hash checks on download.
    lock = {
        line.split()[0]: line.split()[1]
        for line in (PROJECT / "baseline/packages.lock").read_text().splitlines()
        if line and not line.startswith("#")
    }
    manifest = yaml.safe_load((PROJECT / "baseline/packages.yml").read_text())
    proc = apt(root, "install", "-y", "--download-only", *manifest["packages"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    downloaded = {
        p.name.split("_")[0]: p.name.split("_")[1].replace("%3a", ":")
        for p in (root / "var/cache/apt/archives").glob("*.deb")
    }
    assert downloaded, "nothing was downloaded from the mirror"
    assert all(lock.get(name) == version for name, version in downloaded.items()), downloaded


def test_tampered_packages_is_refused(configured_host: dict, dists: pathlib.Path) -> None:
    root = configured_host["root"]
    index = dists / "main" / "binary-amd64" / "Packages"
    tampered = index.read_bytes().replace(b"Package: nginx\n", b"Package: nginx\nX-Injected: evil\n", 1)
    assert tampered != index.read_bytes()
    index.write_bytes(tampered)
    with gzip.GzipFile(index.with_suffix(".gz"), "wb", mtime=0) as handle:
        handle.write(tampered)
    proc = fresh_update(root)
    output = proc.stdout + proc.stderr
    report("tampered Packages", proc)
    assert proc.returncode != 0, output
    assert "Hash Sum mismatch" in output or "unexpected size" in output, output
    assert mirror_lists(root) == [], "apt kept a tampered index"


def test_edited_inrelease_is_refused(configured_host: dict, dists: pathlib.Path) -> None:
    root = configured_host["root"]
    inrelease = dists / "InRelease"
    edited = inrelease.read_bytes().replace(b"Label: enp baseline", b"Label: enp baselinX", 1)
    assert edited != inrelease.read_bytes()
    inrelease.write_bytes(edited)
    proc = fresh_update(root)
    output = proc.stdout + proc.stderr
    report("edited InRelease", proc)
    assert proc.returncode != 0, output
    assert "BADSIG" in output, output
    assert mirror_lists(root) == []


def test_unsigned_mirror_is_refused(configured_host: dict, dists: pathlib.Path) -> None:
    root = configured_host["root"]
    (dists / "InRelease").unlink()
    (dists / "Release.gpg").unlink()
    proc = fresh_update(root)
    output = proc.stdout + proc.stderr
    report("InRelease and Release.gpg removed", proc)
    assert proc.returncode != 0, output
    assert "is not signed" in output, output
    assert mirror_lists(root) == []


def test_mirror_signed_by_another_key_is_refused(
    configured_host: dict, dists: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    root = configured_host["root"]
    home = tmp_path / "attacker-gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run(
            [*gpg, "--quick-generate-key", "attacker <a@invalid>", "ed25519", "sign", "never"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*gpg, "--yes", "--clearsign", "-o", str(dists / "InRelease"), str(dists / "Release")],
            check=True,
            capture_output=True,
        )
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False)
    (dists / "Release.gpg").unlink()
    proc = fresh_update(root)
    output = proc.stdout + proc.stderr
    report("signed by another key", proc)
    assert proc.returncode != 0, output
    assert "NO_PUBKEY" in output, output
    assert mirror_lists(root) == []


def test_golden_image_untouched(image_before: dict) -> None:
    """Building, locking and the overlay host left the cached golden image exactly as it was."""
    assert image_state() == image_before
