"""A Debian 12 host configured by roles/apt_baseline refuses a tampered baseline mirror.

No lab needed: the "host" is a throwaway overlay of the golden image (the image itself is the
read-only lower layer and is never written), configured by the real role over Ansible's chroot
connection. Whatever is missing is built first, by the same modules the lab uses: the golden image
by enp_lab_image into the normal cache (~/.cache/enp/images, or $ENP_CACHE_DIR), the mirror by
enp_mirror_build from baseline/packages.lock into a temporary directory with a temporary signing key
(on_stale_lock=relock, effective lock in the temporary directory: a lock Debian has moved past still
proves the tamper refusals; the stale-lock tests below prove the strict default). Nothing here is
skipped except on a non-root machine: a missing tool or an unreachable Debian archive fails.
The mirror is served on 127.0.0.1 on a free port. Then:

  clean mirror            -> apt-get update succeeds, every locked package resolves and downloads
  tampered Packages       -> refused (hash sum mismatch / unexpected size)
  edited InRelease        -> refused (BADSIG)
  no InRelease/Release.gpg-> refused (not signed)
  signed by another key   -> refused (NO_PUBKEY: Signed-By pins the mirror key)

apt never refetches indexes it already holds for the same InRelease, so /var/lib/apt/lists is
cleared before every attempt.

  cold .deb cache         -> exactly the locked files are downloaded and pass the sha256 checks,
                             even against an image that already has every locked version installed
  stale lock (default)    -> refused, naming the version and `make mirror-lock`
  stale lock, relock      -> built from a fresh lock in effective_lock; the repository lock untouched;
                             a second build reuses it without the network
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


MANIFEST = PROJECT / "baseline/packages.yml"
REPO_LOCK = PROJECT / "baseline/packages.lock"
# A version no Debian suite will ever serve: turns any locked package into a stale one.
GONE_VERSION = "0.0.1~enp.gone"

# Root is the one thing a test cannot build for itself (overlay mount, chroot, debootstrap).
if os.geteuid() != 0:
    pytestmark = [pytest.mark.integration, pytest.mark.skip(reason="needs root (overlay mount, chroot, debootstrap)")]


def cache_root() -> pathlib.Path:
    """The lab's cache (roles/lab lab_cache_dir): images and .debs are shared with it."""
    return pathlib.Path(os.environ.get("ENP_CACHE_DIR") or pathlib.Path.home() / ".cache/enp")


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def lock_entries(path: pathlib.Path) -> dict[str, tuple[str, str, str, int]]:
    """file name apt gives each locked .deb -> (name, version, sha256, size)."""
    found = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, version, arch, sha, size = line.split()
            found[f"{name}_{version.replace(':', '%3a')}_{arch}.deb"] = (name, version, sha, int(size))
    return found


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
    status, result = line.split(" => ", 1)
    result = json.loads(result)
    # The one-line callback drops `failed` from the result: the status word is the verdict.
    result["failed"] = "FAILED" in status or "UNREACHABLE" in status
    return result


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


def image_state(image: pathlib.Path) -> dict:
    """What a write into the golden image would change: dpkg status, apt state, /etc/apt."""
    state = {"status": hashlib.sha256((image / "var/lib/dpkg/status").read_bytes()).hexdigest()}
    for rel in ("var/lib/dpkg", "var/lib/apt/lists", "var/cache/apt/archives", "etc/apt"):
        for path in sorted((image / rel).rglob("*")):
            stat = path.lstat()
            state[str(path.relative_to(image))] = (stat.st_size, stat.st_mtime_ns)
    return state


@pytest.fixture(scope="module")
def tools() -> None:
    """Missing tools are a broken set-up, not a reason to skip the proof."""
    missing = [
        tool for tool in ("apt-ftparchive", "gpg", "gpgv", "gpgconf", "mount", "chroot") if not shutil.which(tool)
    ]
    assert not missing, f"{missing} not installed on this machine: run `make setup`"


@pytest.fixture(scope="module")
def golden_image(tools: None) -> pathlib.Path:
    """The lab's golden image: the cached one, or built now exactly as roles/lab builds it."""
    explicit = os.environ.get("ENP_GOLDEN_IMAGE")
    if explicit:
        assert (pathlib.Path(explicit) / "var/lib/dpkg/status").is_file(), f"ENP_GOLDEN_IMAGE={explicit} is no rootfs"
        return pathlib.Path(explicit)
    started = time.monotonic()
    result = run_module("enp_lab_image", {"cache_dir": str(cache_root() / "images")})
    assert not result.get("failed"), f"building the golden image failed: {result.get('msg')}"
    print(
        f"golden image {result['rootfs']} ({'built' if result['changed'] else 'cached'}, "
        f"{round(time.monotonic() - started, 1)}s)"
    )
    return pathlib.Path(result["rootfs"])


@pytest.fixture(scope="module")
def image_before(golden_image: pathlib.Path) -> dict:
    return image_state(golden_image)


@pytest.fixture
def scratch(tmp_path: pathlib.Path) -> pathlib.Path:
    """tmp_path, deleted afterwards: mirrors and caches here hold up to ~80 MB each."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def build_args(lock: pathlib.Path, image: pathlib.Path, base: pathlib.Path, **extra: str) -> dict:
    """Arguments of enp_mirror_build for a throwaway mirror under base (the shared .deb cache unless given)."""
    return {
        "manifest": str(MANIFEST),
        "lock": str(lock),
        "image": str(image),
        "cache_dir": str(cache_root() / "debs"),
        "dest": str(base / "mirror"),
        "gnupg_home": str(base / "gnupg"),
        **extra,
    }


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory, image_before: dict, golden_image: pathlib.Path) -> dict:
    base = tmp_path_factory.mktemp("mirror")
    started = time.monotonic()
    result = run_module(
        "enp_mirror_build",
        build_args(
            REPO_LOCK,
            golden_image,
            base,
            key_uid="enp baseline mirror (tamper test) <mirror-test@enp.invalid>",
            on_stale_lock="relock",
            effective_lock=str(base / "packages.effective.lock"),
        ),
    )
    # No skip on failure: an unreachable archive with a cold cache means the proof did not run.
    assert not result.get("failed"), result.get("msg")
    if result["stale_lock"]:
        print(result["stale_lock_warning"])
    result["build_seconds"] = round(time.monotonic() - started, 1)
    result["gnupg_home"] = str(base / "gnupg")
    yield result
    shutil.rmtree(base, ignore_errors=True)


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
def host_root(tmp_path_factory: pytest.TempPathFactory, golden_image: pathlib.Path) -> pathlib.Path:
    base = tmp_path_factory.mktemp("overlay")
    upper, work, merged = base / "upper", base / "work", base / "merged"
    for path in (upper, work, merged):
        path.mkdir()
    image = golden_image
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


def test_clean_mirror_is_accepted_and_complete(configured_host: dict, dists: pathlib.Path, mirror: dict) -> None:
    root = configured_host["root"]
    proc = fresh_update(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "W:" not in proc.stderr and "E:" not in proc.stderr, proc.stderr
    # Every locked version comes from the mirror and passes apt's own hash checks on download.
    lock = {
        line.split()[0]: line.split()[1]
        for line in pathlib.Path(mirror["lock_used"]).read_text().splitlines()
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


def fake_image_with_everything_installed(golden: pathlib.Path, packages_index: pathlib.Path, root: pathlib.Path) -> int:
    """A copy of the golden image's dpkg status in which every locked package is installed at its locked version.

    The records come from the mirror's own Packages index (Debian's control fields of exactly those .debs),
    so apt takes them for the very versions the archive serves. Resolving `apt-get install <pins>` against
    such an image prints no install line at all: the old build (resolve, then download what apt would
    install) failed with "the lock no longer matches the golden image" here (checked); a build that
    downloads exactly the locked files by pin cannot tell the difference. Returns the number of records.
    """
    index_only = ("Filename", "Size", "MD5sum", "SHA1", "SHA256", "SHA512", "Description-md5")
    installed, names = [], set()
    for stanza in packages_index.read_text().split("\n\n"):
        lines = [x for x in stanza.strip("\n").split("\n") if x and x.split(":", 1)[0] not in index_only]
        if lines:
            names.add(lines[0].removeprefix("Package: "))
            installed.append("\n".join([lines[0], "Status: install ok installed", *lines[1:]]))
    stanzas = [s for s in golden.joinpath("var/lib/dpkg/status").read_text().split("\n\n") if s.strip()]
    kept = [s.strip("\n") for s in stanzas if s.split("\n", 1)[0].removeprefix("Package: ") not in names]
    status = root / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text("\n\n".join(kept + installed) + "\n")
    return len(installed)


def test_cold_cache_downloads_exactly_the_locked_files(
    mirror: dict, golden_image: pathlib.Path, scratch: pathlib.Path
) -> None:
    """An empty .deb cache (a fresh machine) gets exactly the locked files, sha256-checked, whatever the image has."""
    lock = pathlib.Path(mirror["lock_used"])  # the repository lock, or the fresh one if Debian moved past it
    expected = lock_entries(lock)
    image = scratch / "image"
    index = pathlib.Path(mirror["mirror"]) / "dists" / SUITE / "main/binary-amd64/Packages"
    assert fake_image_with_everything_installed(golden_image, index, image) == len(expected)
    cache = scratch / "debs"
    args = build_args(
        lock, image, scratch, cache_dir=str(cache), key_uid="enp baseline mirror (cold test) <mirror-cold@enp.invalid>"
    )
    try:
        started = time.monotonic()
        cold = run_module("enp_mirror_build", args)
        cold_seconds = round(time.monotonic() - started, 1)
        assert not cold.get("failed"), cold.get("msg")
        started = time.monotonic()
        warm = run_module("enp_mirror_build", args)
        warm_seconds = round(time.monotonic() - started, 1)
        print(
            f"cold build {cold_seconds}s ({cold['downloaded']} .debs, {cold['bytes']} bytes downloaded); "
            f"warm rebuild {warm_seconds}s (downloaded {warm['downloaded']}, changed={warm['changed']})"
        )
        assert cold["downloaded"] == cold["packages"] == len(expected)
        assert cold["image_matches_lock"] is False  # a warning, not a failure
        debs = sorted(p.name for p in cache.glob("*.deb"))
        assert debs == sorted(expected), "the cache holds other files than the lock names"
        for filename, (_name, _version, sha, size) in expected.items():
            assert (cache / filename).stat().st_size == size, filename
            assert sha256(cache / filename) == sha, filename
        pool = sorted(p.name for p in (scratch / "mirror/pool/main").iterdir())
        assert pool == debs
        assert not (cache / ".download").exists()
        assert warm["downloaded"] == 0 and warm["changed"] is False
    finally:
        shutil.rmtree(cache, ignore_errors=True)  # ~80 MB, before the scratch folder goes


def stale_copy(lock: pathlib.Path, target: pathlib.Path) -> tuple[str, str]:
    """Copy LOCK with its first entry pinned to a version Debian does not serve; return (name, real version)."""
    lines = lock.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    name, version, rest = lines[index].split(" ", 2)
    lines[index] = f"{name} {GONE_VERSION} {rest}"
    target.write_text("".join(lines))
    return name, version


def test_stale_lock_fails_by_default_naming_the_versions(
    mirror: dict, golden_image: pathlib.Path, scratch: pathlib.Path
) -> None:
    lock = scratch / "packages.lock"
    name, _version = stale_copy(pathlib.Path(mirror["lock_used"]), lock)
    before = sha256(lock)
    result = run_module(
        "enp_mirror_build",
        build_args(lock, golden_image, scratch),
    )
    print(result.get("msg"))
    assert result.get("failed")
    assert f"{name}={GONE_VERSION}" in result["msg"] and "`make mirror-lock`" in result["msg"]
    assert "stale" in result["msg"] and "on_stale_lock=relock" in result["msg"]
    assert sha256(lock) == before
    assert not (scratch / "mirror").exists()


def test_stale_lock_relocks_beside_the_lab_and_leaves_the_repository_lock(
    mirror: dict, golden_image: pathlib.Path, scratch: pathlib.Path
) -> None:
    lock = scratch / "repo" / "packages.lock"
    lock.parent.mkdir()
    name, version = stale_copy(pathlib.Path(mirror["lock_used"]), lock)
    before, repo_before = sha256(lock), sha256(REPO_LOCK)
    effective = scratch / "lab" / "packages.effective.lock"
    args = build_args(lock, golden_image, scratch, on_stale_lock="relock", effective_lock=str(effective))
    result = run_module("enp_mirror_build", args)
    assert not result.get("failed"), result.get("msg")
    print(result["stale_lock_warning"])
    assert result["stale_lock"] is True and result["lock_used"] == str(effective)
    assert result["stale_packages"] == [f"{name}={GONE_VERSION}"]
    assert f"{name} {GONE_VERSION} -> {version}" in result["relock_changes"]
    assert "`make mirror-lock`" in result["stale_lock_warning"] and str(effective) in result["stale_lock_warning"]
    assert sha256(lock) == before and sha256(REPO_LOCK) == repo_before, "a build rewrote a repository lock"
    header = effective.read_text().split("# name version")[0]
    assert "EFFECTIVE lock" in header and f"replaces-lock-sha256: {before}" in header
    served = {p.name for p in (scratch / "mirror/pool/main").iterdir()}
    assert served == set(lock_entries(effective))
    # Reused while the repository lock is unchanged: no network needed (an unreachable archive is given).
    again = run_module("enp_mirror_build", {**args, "debian_mirror": "http://198.18.255.254:9/debian"})
    assert not again.get("failed"), again.get("msg")
    assert again["stale_lock"] is True and again["changed"] is False and again["downloaded"] == 0


def test_golden_image_untouched(image_before: dict, golden_image: pathlib.Path) -> None:
    """Building, locking and the overlay host left the cached golden image exactly as it was."""
    assert image_state(golden_image) == image_before
