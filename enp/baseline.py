"""Controller side of known-good baselines for the enp CLI: key and store paths, the lab signing key, signing.

The format, the comparison and the ssh-keygen calls live in plugins/module_utils/enp_baseline.py, because the
enp_baseline_compare module (run by playbooks/baseline_verify.yml, also from AWX) must verify signatures too.
This module loads that same file, so the CLI and the playbooks sign and verify with one piece of code; what it
adds is only what an operator at the controller needs: where things are, creating the lab key (never a
production one), and (re-)signing manifests in the store.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

_MODULE_NAME = "ansible.module_utils.enp_baseline"
_MODULE_FILE = Path(__file__).resolve().parents[1] / "plugins" / "module_utils" / "enp_baseline.py"

KEY_COMMENT = "enp-baseline signing key"


def core() -> ModuleType:
    """plugins/module_utils/enp_baseline.py, loaded under the name the Ansible modules import it by."""
    module = sys.modules.get(_MODULE_NAME)
    if module is None:
        spec = importlib.util.spec_from_file_location(_MODULE_NAME, _MODULE_FILE)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {_MODULE_FILE}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[_MODULE_NAME] = module
        spec.loader.exec_module(module)
    return module


class BaselineRefusal(Exception):
    """Something the operator must fix first (missing production key, tampered manifest); the message says how."""


@dataclass(frozen=True)
class BaselinePaths:
    store: Path
    signing_key: Path
    allowed_signers: Path
    reports: Path
    lab: bool
    """True when the key is the lab's default one, which enp may create; a production key is never created."""

    def extravars(self, report_dir: Path | None = None) -> dict[str, str]:
        """What playbooks/baseline_capture.yml and baseline_verify.yml take from enp."""
        return {
            "enp_baseline_store": str(self.store),
            "enp_baseline_signing_key": str(self.signing_key),
            "enp_baseline_allowed_signers": str(self.allowed_signers),
            "enp_baseline_report_dir": str(report_dir or self.reports),
        }


def lab_dir(project_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    value = environ.get("ENP_LAB_DIR")
    return Path(value).expanduser() if value else project_dir / ".lab"


def is_production_inventory(inventory: Path) -> bool:
    """Production inventories are named so (inventories/production, production-example, ...)."""
    return any("production" in part for part in inventory.parts)


def resolve_paths(
    project_dir: Path,
    inventory: Path,
    *,
    store: Path | None = None,
    signing_key: Path | None = None,
    allowed_signers: Path | None = None,
    need_key: bool = True,
    environ: Mapping[str, str] | None = None,
) -> BaselinePaths:
    """Lab defaults under .lab/baseline/; a production inventory must name its store and key (or, to verify
    only, its allowed_signers) explicitly, so a production run never signs with or trusts the lab's key."""
    environ = os.environ if environ is None else environ
    signing_key = signing_key or (
        Path(environ["ENP_BASELINE_SIGNING_KEY"]) if environ.get("ENP_BASELINE_SIGNING_KEY") else None
    )
    base = lab_dir(project_dir, environ) / "baseline"
    if is_production_inventory(inventory):
        missing = []
        if signing_key is None and (need_key or allowed_signers is None):
            missing.append("--signing-key PATH (or ENP_BASELINE_SIGNING_KEY)" if need_key else "--allowed-signers PATH")
        if store is None:
            missing.append("--store DIR")
        if missing:
            raise BaselineRefusal(
                f"inventory {inventory} is a production one: name {' and '.join(missing)} on the controller; the lab "
                "defaults are never used for production (docs/baselines.md, 'Signing and key handling')"
            )
    lab = signing_key is None and not is_production_inventory(inventory)
    if signing_key is None and allowed_signers is not None and not lab:
        key = allowed_signers.expanduser().absolute().parent / "signing_key"  # not read: verify needs no key
    else:
        key = (signing_key or base / "signing_key").expanduser().absolute()
    store_dir = (store or base / "store").expanduser().absolute()
    return BaselinePaths(
        store=store_dir,
        signing_key=key,
        allowed_signers=(allowed_signers or key.parent / "allowed_signers").expanduser().absolute(),
        reports=store_dir.parent / "reports",
        lab=lab,
    )


def _write_private(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def ensure_signing_key(paths: BaselinePaths) -> list[str]:
    """Make sure the signing key and allowed_signers exist; create them for the lab only. Returns what was done."""
    done: list[str] = []
    key = paths.signing_key
    if not key.exists():
        if not paths.lab:
            raise BaselineRefusal(
                f"the baseline signing key {key} does not exist, and enp never creates a production key. On the "
                f"controller (and only there): ssh-keygen -t ed25519 -C '{KEY_COMMENT}' -f {key}; keep it off the "
                f"managed hosts, back it up offline, then write its public half to {paths.allowed_signers} as: "
                f'enp-baseline namespaces="enp-baseline" <contents of {key}.pub>'
            )
        key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        proc = subprocess.run(  # noqa: S603 - fixed argument list, no shell
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{KEY_COMMENT} (lab)", "-f", str(key)],  # noqa: S607 - OpenSSH's own tool from PATH
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BaselineRefusal(f"ssh-keygen could not create the lab signing key {key}: {proc.stderr.strip()}")
        done.append(f"created the lab baseline signing key {key}")
    if not paths.allowed_signers.exists():
        public = key.with_name(key.name + ".pub")
        if not paths.lab or not public.exists():
            raise BaselineRefusal(
                f"allowed signers file {paths.allowed_signers} does not exist; write the public half of {key} to it "
                f'as: enp-baseline namespaces="enp-baseline" <contents of {public}>'
            )
        paths.allowed_signers.parent.mkdir(parents=True, exist_ok=True)
        line = core().allowed_signers_line(public.read_text(encoding="utf-8"))
        _write_private(paths.allowed_signers, line.encode("utf-8"))
        done.append(f"wrote {paths.allowed_signers}")
    return done


def manifest_path(paths: BaselinePaths, host: str) -> Path:
    return paths.store / f"{host}.json"


def stored_hosts(paths: BaselinePaths) -> list[str]:
    if not paths.store.is_dir():
        return []
    return sorted(p.stem for p in paths.store.glob("*.json"))


def check_stored(paths: BaselinePaths, host: str) -> tuple[bool, str]:
    """(ok, detail) for one stored manifest: signature good, format and host right."""
    mu = core()
    path = manifest_path(paths, host)
    try:
        manifest, confirmation = mu.read_signed_manifest(str(path), str(paths.allowed_signers))
        if manifest["host"] != host:
            raise mu.ManifestError(
                f"{path} says it is the baseline of {manifest['host']!r}, not {host!r}: files were swapped; restore "
                "the store from the mirror's copy"
            )
    except (mu.ManifestError, mu.SignatureError) as exc:
        return False, str(exc)
    return True, confirmation


def sign_manifest(paths: BaselinePaths, host: str, *, force: bool = False) -> str:
    """Rewrite a stored manifest canonically, sign it, check the new signature; returns ssh-keygen's confirmation.

    A manifest whose existing signature does not verify may be evidence of tampering: it is refused unless
    ``force`` (the operator has checked where it came from).
    """
    mu = core()
    path = manifest_path(paths, host)
    signature = path.with_name(path.name + ".sig")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BaselineRefusal(
            f"no manifest for {host} in {paths.store} ({exc.strerror}); run enp baseline capture"
        ) from None
    if signature.exists() and not force:
        try:
            mu.verify_bytes(data, signature.read_bytes(), str(paths.allowed_signers), source=str(path))
        except mu.SignatureError as exc:
            raise BaselineRefusal(
                f"{exc}. enp will not re-sign a manifest whose signature fails (that would bless a tampered baseline); "
                "recapture it from a known-good host, or pass --force if you have checked where it came from"
            ) from None
    try:
        manifest = mu.load_manifest(data, source=str(path))
    except mu.ManifestError as exc:
        raise BaselineRefusal(str(exc)) from None
    if manifest["host"] != host:
        raise BaselineRefusal(f"{path} is the manifest of {manifest['host']!r}, not {host!r}; it will not be signed")
    canonical = mu.canonical_bytes(manifest)
    try:
        signed = mu.sign_bytes(canonical, str(paths.signing_key))
        if canonical != data:
            _write_private(path, canonical)
        _write_private(signature, signed)
        return mu.verify_bytes(canonical, signed, str(paths.allowed_signers), source=str(path))
    except mu.SignatureError as exc:
        raise BaselineRefusal(str(exc)) from None


def new_report_dir(paths: BaselinePaths, now: datetime | None = None) -> Path:
    """A fresh folder per verify run, so a host the run never reached cannot show last night's report."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    return paths.reports / stamp


def load_reports(report_dir: Path, hosts: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """The findings report of each host (None when the run wrote none for it)."""
    reports: dict[str, dict[str, Any] | None] = {}
    for host in hosts:
        try:
            reports[host] = json.loads((report_dir / f"{host}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            reports[host] = None
    return reports
