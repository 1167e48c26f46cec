"""Results of one benchmark run: one row per variant, the printed table and the JSON document."""

from __future__ import annotations

from dataclasses import dataclass, field

from .variants import REFERENCE, VARIANTS

THIS_RUN = "this run"
REFERENCE_SOURCE = "reference, not this run"
NOT_RUN = "not run"


@dataclass
class Health:
    """Probes of one host at one moment (before or after hardening)."""

    ssh_login: bool | None = None  # a fresh SSH connection (no multiplexing) as the Ansible user
    sudo: bool | None = None  # `sudo -n true` in that session
    ssh_error: str = ""
    sshd_config_ok: bool | None = None  # `sshd -t` on the host
    failed_units: list[str] | None = None
    service_ok: bool | None = None  # TLS login as the app role + a query, on the host through its address
    service_detail: str = ""
    network_ok: bool | None = None  # PostgreSQL answers an SSLRequest from the controller
    via: str = ""  # how the root probes ran: "ssh+sudo" or "nsenter (...)"

    @property
    def ssh_text(self) -> str:
        if self.ssh_login is None:
            return "-"
        if not self.ssh_login:
            return "NO"
        return "yes" if self.sudo else "login only, sudo -n refused"

    @property
    def service_text(self) -> str:
        if self.service_ok is None:
            return "-"
        return "yes" if self.service_ok else "NO"


@dataclass
class VariantResult:
    variant: str
    label: str
    source: str = NOT_RUN  # THIS_RUN, REFERENCE_SOURCE or NOT_RUN
    host: str = ""
    status: str = ""  # untouched | applied | failed | not run | reference
    note: str = ""  # one line for the table's notes, e.g. why it was not run or where it failed
    overrides: list[dict[str, object]] = field(default_factory=list)
    harden_seconds: float | None = None
    harden_rc: int | None = None
    failure: dict[str, object] | None = None
    recap: dict[str, int] = field(default_factory=dict)
    hardening_index: int | None = None
    warnings: int | None = None
    suggestions: int | None = None
    warning_ids: dict[str, int] = field(default_factory=dict)
    suggestion_ids: dict[str, int] = field(default_factory=dict)
    lynis_version: str = ""
    lynis_seconds: float | None = None
    lynis_error: str = ""
    before: Health | None = None
    after: Health | None = None
    scap: dict[str, object] = field(default_factory=dict)
    log: str = ""


def reference_row(variant: str, why: str) -> VariantResult:
    ref = REFERENCE[variant]
    return VariantResult(
        variant=variant,
        label=ref.label,
        source=REFERENCE_SOURCE,
        status="reference",
        note=why,
        hardening_index=ref.hardening_index,
    )


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _failed_units_cell(result: VariantResult) -> str:
    if result.after is None or result.after.failed_units is None:
        return "-"
    after = len(result.after.failed_units)
    before = result.before.failed_units if result.before else None
    if before is None or len(before) == after:
        return str(after)
    return f"{after} ({after - len(before):+d})"


COLUMNS = (
    ("variant", 10),
    ("source", 23),
    ("hardening index", 15),
    ("warnings", 8),
    ("suggestions", 11),
    ("services healthy", 16),
    ("SSH still works", 27),
    ("failed units", 12),
    ("wall time s", 11),
)


def row_cells(result: VariantResult) -> list[str]:
    after = result.after
    return [
        result.variant,
        result.source,
        _fmt(result.hardening_index),
        _fmt(result.warnings),
        _fmt(result.suggestions),
        after.service_text if after else "-",
        after.ssh_text if after else "-",
        _failed_units_cell(result),
        _fmt(result.harden_seconds),
    ]


def render_table(results: list[VariantResult]) -> str:
    """The one table: a row per variant in VARIANTS order, fixed columns, `-` where nothing was measured."""
    order = {name: index for index, name in enumerate(VARIANTS)}
    rows = sorted(results, key=lambda r: order.get(r.variant, len(order)))
    widths = [max(width, len(title)) for title, width in COLUMNS]
    for result in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row_cells(result), strict=True)]
    head = "  ".join(title.ljust(w) for (title, _), w in zip(COLUMNS, widths, strict=True)).rstrip()
    lines = [head, "-" * len(head)]
    for result in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row_cells(result), widths, strict=True)).rstrip())
    return "\n".join(lines)


def notes(results: list[VariantResult]) -> list[str]:
    """One line per thing the table cannot say: what each row is, failures, units, refusals."""
    out = []
    order = {name: index for index, name in enumerate(VARIANTS)}
    for r in sorted(results, key=lambda r: order.get(r.variant, len(order))):
        out.append(f"{r.variant}: {r.label}")
        if r.note:
            out.append(f"  {r.note}")
        if r.lynis_error:
            out.append(f"  Lynis: {r.lynis_error}")
        after, before = r.after, r.before
        if before and before.service_ok is False:
            out.append(f"  service was already unhealthy BEFORE hardening: {before.service_detail}")
        if after:
            if after.service_ok is False:
                out.append(f"  service after hardening: {after.service_detail}")
            if after.network_ok is False:
                out.append("  PostgreSQL does not answer the controller on 5432 any more (firewall?)")
            if after.ssh_login is False:
                out.append(f"  fresh SSH login as the Ansible user failed: {after.ssh_error}")
            if after.sshd_config_ok is False:
                out.append("  `sshd -t` fails: the next sshd restart would not come up")
            if after.failed_units:
                new = sorted(set(after.failed_units) - set(before.failed_units or [] if before else []))
                out.append(
                    "  failed units: " + ", ".join(after.failed_units) + (f" (new: {', '.join(new)})" if new else "")
                )
            if after.via and after.via != "ssh+sudo":
                out.append(f"  probes and Lynis ran via {after.via}")
    return out


def health_dict(health: Health | None) -> dict[str, object] | None:
    if health is None:
        return None
    data = dict(health.__dict__)
    data["ssh"] = health.ssh_text
    return data
