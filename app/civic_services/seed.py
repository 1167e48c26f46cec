"""Deterministic synthetic data for all 413 ULBs: properties, tax demands, payments, water connections,
trade licences, building permissions (with plan images) and birth/death/marriage certificates (with PDFs).

Determinism: every ULB draws from its own generator, ``random.Random(f"civic-seed:{seed}:rows:{code}")``,
using only ``random()`` (the one method Python promises to keep stable across versions); documents come
from docgen (SHAKE-256 noise, no timestamps). Ids are assigned in ULB order. So the same ``--size`` and
``--seed`` give the same rows, the same documents and the same manifest on any machine.

Speed: rows are written as COPY text into per-table buffers; a loader thread COPYs a batch (parents before
children, so foreign keys hold) while the next ULBs are generated. Everything happens in ONE transaction,
committed only after every document is on disk (os.sync), so a failed seed leaves the database as it was.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import os
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING

from civic_services import docgen
from civic_services.store import DocumentStore, StoreError
from civic_services.ulbs import NAGAR_NIGAM, NAGAR_PALIKA_PARISHAD, NAGAR_PARISHAD, ULBS, Ulb

if TYPE_CHECKING:
    from psycopg2.extensions import connection as Connection
    from psycopg2.extensions import cursor as Cursor


@dataclass(frozen=True)
class SizeProfile:
    name: str
    properties: Mapping[str, int]  # base number of properties per ULB, by kind
    plan_bytes: int  # size of one building-plan image
    description: str


SIZES: dict[str, SizeProfile] = {
    "tiny": SizeProfile("tiny", {NAGAR_NIGAM: 12, NAGAR_PALIKA_PARISHAD: 3, NAGAR_PARISHAD: 1}, 4096, "unit tests"),
    "small": SizeProfile(
        "small", {NAGAR_NIGAM: 250, NAGAR_PALIKA_PARISHAD: 40, NAGAR_PARISHAD: 10}, 48 * 1024, "CI, < 1 minute"
    ),
    "large": SizeProfile(
        "large",
        {NAGAR_NIGAM: 25_000, NAGAR_PALIKA_PARISHAD: 4_000, NAGAR_PARISHAD: 1_000},
        96 * 1024,
        "benchmarks: > 1 M properties, several GB of documents",
    ),
}
# Bigger cities have more properties (rough relative sizes, not census figures).
CORPORATION_WEIGHTS = {"Indore": 2.6, "Bhopal": 2.3, "Jabalpur": 1.7, "Gwalior": 1.6, "Ujjain": 0.9}
DEFAULT_CORPORATION_WEIGHT = 0.6
DOCUMENT_WRITERS = 8
MAX_PENDING_WRITES = 256
WARDS = {NAGAR_NIGAM: 85, NAGAR_PALIKA_PARISHAD: 30, NAGAR_PARISHAD: 15}

# Tables in load order: a parent always comes before the tables that reference it.
COLUMNS: dict[str, tuple[str, ...]] = {
    "ulbs": ("code", "name", "kind", "district", "on_portal"),
    "documents": ("id", "sha256", "size_bytes", "content_type", "filename", "ulb_code", "kind", "uploaded_at"),
    "properties": (
        "id", "ulb_code", "property_no", "ward", "owner_name", "address", "usage", "plot_area_sqm",
        "annual_rental_value",
    ),
    "tax_demands": ("id", "property_id", "tax", "fiscal_year", "amount", "due_date"),
    "payments": ("id", "receipt_no", "ulb_code", "service", "demand_id", "amount", "method", "payer_name", "paid_at"),
    "water_connections": (
        "id", "connection_no", "ulb_code", "property_id", "connection_type", "pipe_size_mm", "status", "applied_on",
        "connected_on",
    ),
    "trade_licences": (
        "id", "licence_no", "ulb_code", "property_id", "business_name", "trade", "owner_name", "status", "issued_on",
        "valid_until", "fee",
    ),
    "building_permissions": (
        "id", "application_no", "ulb_code", "property_id", "applicant_name", "floors", "built_up_area_sqm", "status",
        "applied_on", "decided_on", "plan_document_id",
    ),
    "certificates": (
        "id", "certificate_no", "ulb_code", "kind", "person_name", "second_person_name", "event_date",
        "registered_on", "document_id",
    ),
}  # fmt: skip
TABLES = tuple(COLUMNS)

FIRST_NAMES = (
    "Aarti", "Abhishek", "Ajay", "Akash", "Amit", "Anil", "Anita", "Anjali", "Arjun", "Asha", "Deepak", "Dinesh",
    "Geeta", "Gopal", "Hemant", "Imran", "Jyoti", "Kailash", "Kamla", "Kavita", "Lakshmi", "Mahesh", "Manoj",
    "Meena", "Mohan", "Nandini", "Naresh", "Neha", "Pooja", "Pradeep", "Prakash", "Priya", "Rahul", "Rajesh",
    "Rakesh", "Ramesh", "Rani", "Ravi", "Rekha", "Ritu", "Rohit", "Salma", "Sandeep", "Sanjay", "Santosh",
    "Saroj", "Shabnam", "Shankar", "Sheela", "Shivani", "Sunil", "Sunita", "Suresh", "Usha", "Vandana", "Vijay",
    "Vikas", "Vinod", "Yogesh", "Zubair",
)  # fmt: skip
LAST_NAMES = (
    "Ahirwar", "Bhadoria", "Chouhan", "Dangi", "Dubey", "Gond", "Gupta", "Jain", "Joshi", "Kushwaha", "Khan",
    "Lodhi", "Malviya", "Meena", "Mishra", "Namdev", "Pandey", "Patel", "Patidar", "Qureshi", "Rajput", "Rathore",
    "Sahu", "Saxena", "Sen", "Sharma", "Shrivastava", "Singh", "Soni", "Thakur", "Tiwari", "Tomar", "Vishwakarma",
    "Verma", "Yadav",
)  # fmt: skip
LOCALITIES = (
    "Gandhi Chowk", "Shanti Nagar", "Subhash Nagar", "Nehru Colony", "Station Road", "Sadar Bazar", "Indira Nagar",
    "Ambedkar Nagar", "Shivaji Nagar", "Tilak Nagar", "Civil Lines", "Azad Nagar", "Rajiv Nagar", "Patel Nagar",
    "Krishna Colony", "Ram Nagar", "Kasturba Nagar", "Jawahar Chowk", "Mandi Road", "Bus Stand Road",
    "Kotwali Marg", "Naya Mohalla", "Purana Bazar", "Vikas Nagar",
)  # fmt: skip
TRADES = (
    ("General Store", 1200), ("Medical Store", 2500), ("Hotel and Restaurant", 6000), ("Tailoring", 800),
    ("Hardware", 2000), ("Dairy", 1000), ("Sweet Shop", 1500), ("Mobile Repair", 900), ("Flour Mill", 1800),
    ("Auto Garage", 3000), ("Cloth Merchant", 2200), ("Jewellers", 5000),
)  # fmt: skip
USAGES = (("residential", 78), ("commercial", 12), ("mixed", 5), ("industrial", 3), ("institutional", 2))
METHODS = (("upi", 45), ("cash", 25), ("netbanking", 15), ("card", 10), ("cheque", 5))
FISCAL_YEARS = (("2022-23", "2022-09-30", 0), ("2023-24", "2023-09-30", 1))
ATTACK_DAY = date(2023, 12, 20)  # data stops the day before the December 2023 attack
DAY0 = date(2018, 1, 1)
NULL = "\\N"  # COPY text format
DATES = tuple((DAY0 + timedelta(days=d)).isoformat() for d in range((ATTACK_DAY - DAY0).days + 1))


def _day(d: date) -> int:
    return (d - DAY0).days


D_FY22, D_FY23, D_FY24_END = _day(date(2022, 6, 1)), _day(date(2023, 6, 1)), _day(ATTACK_DAY)
D_2019 = _day(date(2019, 1, 1))
PAY_WINDOWS = ((D_FY22, D_FY23), (D_FY23, D_FY24_END))  # days in which demands of FY 2022-23 / 2023-24 are paid


def receipt_no(ulb_code: str, payment_id: int) -> str:
    """Receipt numbers for seeded and API payments alike."""
    return f"{ulb_code}-R{payment_id:010d}"


def _weighted(pairs: Iterable[tuple[str, int]]) -> tuple[list[str], list[int], int]:
    names, cum, total = [], [], 0
    for name, weight in pairs:
        total += weight
        names.append(name)
        cum.append(total)
    return names, cum, total


def _money(paise: int) -> str:
    return f"{paise // 100}.{paise % 100:02d}"


def property_count(ulb: Ulb, profile: SizeProfile, seed: int) -> int:
    weight = CORPORATION_WEIGHTS.get(ulb.town, DEFAULT_CORPORATION_WEIGHT) if ulb.kind == NAGAR_NIGAM else 1.0
    jitter = 0.85 + 0.3 * random.Random(f"civic-seed:{seed}:count:{ulb.code}").random()  # noqa: S311 - test data
    return max(1, round(profile.properties[ulb.kind] * weight * jitter))


def planned_properties(profile: SizeProfile, seed: int) -> int:
    return sum(property_count(u, profile, seed) for u in ULBS)


@dataclass
class Ids:
    """Next id per table; ids follow generation order, so they are deterministic too."""

    next: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 1))

    def take(self, table: str) -> int:
        value = self.next[table]
        self.next[table] = value + 1
        return value


DocumentSink = Callable[[bytes], tuple[str, int]]


def generate_ulb(
    ulb: Ulb, profile: SizeProfile, seed: int, ids: Ids, out: Mapping[str, list[str]], put_document: DocumentSink
) -> None:
    """Append the COPY lines of one ULB to out[table]; documents go through put_document (-> sha256, size)."""
    rnd = random.Random(f"civic-seed:{seed}:rows:{ulb.code}").random  # noqa: S311 - deterministic test data
    code, town = ulb.code, ulb.town
    usages, usage_cum, usage_total = _weighted(USAGES)
    methods, method_cum, method_total = _weighted(METHODS)
    wards = WARDS[ulb.kind]
    rate = {NAGAR_NIGAM: 60, NAGAR_PALIKA_PARISHAD: 35, NAGAR_PARISHAD: 20}[ulb.kind]  # ARV rupees per sqm
    water_rate = {NAGAR_NIGAM: 1800, NAGAR_PALIKA_PARISHAD: 1200, NAGAR_PARISHAD: 900}[ulb.kind]
    o_doc, o_prop, o_dem, o_pay = out["documents"], out["properties"], out["tax_demands"], out["payments"]
    o_wat, o_lic, o_bp, o_cert = (
        out["water_connections"],
        out["trade_licences"],
        out["building_permissions"],
        out["certificates"],
    )

    def below(n: int) -> int:
        return int(rnd() * n)

    def name() -> str:
        return f"{FIRST_NAMES[below(len(FIRST_NAMES))]} {LAST_NAMES[below(len(LAST_NAMES))]}"

    def stamp(day_lo: int, day_hi: int) -> str:
        sec = below(12 * 3600) + 9 * 3600  # office hours, IST
        return f"{DATES[day_lo + below(day_hi - day_lo)]} {sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}+05:30"

    def pay(service: str, demand_id: str, paise: int, payer: str, day_lo: int, day_hi: int) -> None:
        pid = ids.take("payments")
        method = methods[bisect.bisect(method_cum, rnd() * method_total)]
        o_pay.append(
            f"{pid}\t{receipt_no(code, pid)}\t{code}\t{service}\t{demand_id}\t{_money(paise)}\t{method}\t{payer}\t"
            f"{stamp(day_lo, day_hi)}\n"
        )

    def document(data: bytes, content_type: str, filename: str, kind: str, day: int) -> int:
        sha, size = put_document(data)
        did = ids.take("documents")
        o_doc.append(f"{did}\t{sha}\t{size}\t{content_type}\t{filename}\t{code}\t{kind}\t{DATES[day]} 11:00:00+05:30\n")
        return did

    for k in range(property_count(ulb, profile, seed)):
        prop_id = ids.take("properties")
        ward = 1 + below(wards)
        owner = name()
        usage = usages[bisect.bisect(usage_cum, rnd() * usage_total)]
        area = (4000 + below(56000)) if usage != "industrial" else (30000 + below(470000))  # paise-like: sqm*100
        arv = area * rate * (3 if usage in ("commercial", "mixed", "industrial") else 1)  # rupees*100
        property_no = f"{code}-W{ward:02d}-{k + 1:06d}"
        o_prop.append(
            f"{prop_id}\t{code}\t{property_no}\t{ward}\t{owner}\t{1 + below(400)}, "
            f"{LOCALITIES[below(len(LOCALITIES))]}, Ward {ward}, {town}\t{usage}\t{_money(area)}\t{_money(arv)}\n"
        )
        for fiscal_year, due, fy in FISCAL_YEARS:
            demand = ids.take("tax_demands")
            paise = arv * (105 if fy else 100) // 100 * 6 // 100  # 6 % of ARV, +5 % ARV revision in 2023-24
            o_dem.append(f"{demand}\t{prop_id}\tproperty_tax\t{fiscal_year}\t{_money(paise)}\t{due}\n")
            if rnd() < (0.55 if fy else 0.85):
                part = paise // 2 if rnd() < 0.08 else paise
                if part:
                    pay("property_tax", str(demand), part, owner, *PAY_WINDOWS[fy])
        # water connection
        if rnd() < (0.7 if usage != "residential" else 0.5):
            wid = ids.take("water_connections")
            commercial = usage != "residential"
            status_roll = rnd()
            status = "connected" if status_roll < 0.9 else "disconnected" if status_roll < 0.95 else "sanctioned"
            applied = below(D_FY24_END - 60)
            connected = DATES[applied + 15 + below(30)] if status != "sanctioned" else NULL
            o_wat.append(
                f"{wid}\t{code}-WC-{wid:07d}\t{code}\t{prop_id}\t{'commercial' if commercial else 'domestic'}\t"
                f"{(25, 40)[below(2)] if commercial else (15, 20)[below(2)]}\t{status}\t{DATES[applied]}\t{connected}\n"
            )
            if applied >= D_FY22:
                pay("water_connection", NULL, 300000 if commercial else 150000, owner, applied, applied + 10)
            if status == "connected":
                for fiscal_year, due, fy in FISCAL_YEARS:
                    demand = ids.take("tax_demands")
                    paise = water_rate * 100 * (3 if commercial else 1)
                    o_dem.append(f"{demand}\t{prop_id}\twater_tax\t{fiscal_year}\t{_money(paise)}\t{due}\n")
                    if rnd() < (0.5 if fy else 0.8):
                        pay("water_tax", str(demand), paise, owner, *PAY_WINDOWS[fy])
        # trade licence for shops
        if usage in ("commercial", "mixed") and rnd() < 0.6:
            lid = ids.take("trade_licences")
            trade, fee = TRADES[below(len(TRADES))]
            issued = D_2019 + below(D_FY24_END - D_2019 - 30)
            roll = rnd()
            status = "active" if roll < 0.8 else "expired" if roll < 0.95 else "suspended"
            o_lic.append(
                f"{lid}\t{code}-TL-{lid:07d}\t{code}\t{prop_id}\t{owner.split()[1]} {trade}\t{trade}\t{owner}\t"
                f"{status}\t{DATES[issued]}\t{(DAY0 + timedelta(days=issued + 365)).isoformat()}\t{fee}.00\n"
            )
            if status != "suspended":
                pay("trade_licence", NULL, fee * 100, owner, issued, issued + 1)
        # building permission with a plan image
        if rnd() < 0.03:
            bid = ids.take("building_permissions")
            application_no = f"{code}-BP-{bid:07d}"
            floors = 1 + below(8 if ulb.kind == NAGAR_NIGAM else 3)
            built = area * 6 // 10 * floors
            applied = D_2019 + below(D_FY24_END - D_2019 - 90)
            roll = rnd()
            status = "approved" if roll < 0.7 else "rejected" if roll < 0.8 else "submitted"
            decided = DATES[applied + 20 + below(60)] if status != "submitted" else NULL
            plan = docgen.plan_png(f"{seed}:{application_no}", profile.plan_bytes)
            doc_id = document(plan, "image/png", f"{application_no}-plan.png", "building_plan", applied)
            o_bp.append(
                f"{bid}\t{application_no}\t{code}\t{prop_id}\t{owner}\t{floors}\t{_money(built)}\t{status}\t"
                f"{DATES[applied]}\t{decided}\t{doc_id}\n"
            )
            if status == "approved":
                pay("building_permission", NULL, built * 20, owner, applied, applied + 5)

    # certificates, with a PDF each: births, deaths, marriages in proportion to the town's size
    n_props = property_count(ulb, profile, seed)
    for kind, letter, per_100 in (("birth", "B", 8), ("death", "D", 3), ("marriage", "M", 4)):
        for _ in range(max(1, n_props * per_100 // 100)):
            cid = ids.take("certificates")
            person = name()
            second = name() if kind == "marriage" else None
            event = D_2019 + below(D_FY24_END - D_2019 - 31)
            registered = event + 1 + below(30)
            number = f"{code}-{letter}-{DATES[event][:4]}-{cid:07d}"
            lines = [
                f"Certificate no.: {number}",
                f"{'Name' if kind != 'marriage' else 'Spouse'}: {person}",
                *([f"Spouse: {second}"] if second else []),
                f"Date of {kind}: {DATES[event]}",
                f"Registered on: {DATES[registered]}",
                f"Registrar: {ulb.name}, district {ulb.district}",
            ]
            pdf = docgen.certificate_pdf(
                f"{kind.capitalize()} certificate - {ulb.name}",
                lines,
                "Issued under the Registration of Births and Deaths Act, 1969 / MP marriage registration rules. "
                "SYNTHETIC TEST DATA.",
            )
            doc_id = document(pdf, "application/pdf", f"{number}.pdf", "certificate", registered)
            o_cert.append(
                f"{cid}\t{number}\t{code}\t{kind}\t{person}\t{second or NULL}\t{DATES[event]}\t"
                f"{DATES[registered]}\t{doc_id}\n"
            )
            if rnd() < 0.3:
                pay(f"{kind}_certificate", NULL, 5000, person, registered, registered + 1)


def ulb_lines() -> list[str]:
    return [f"{u.code}\t{u.name}\t{u.kind}\t{u.district}\t{'t' if u.on_portal else 'f'}\n" for u in ULBS]


# -- loading -----------------------------------------------------------------------------------------------


class SeedError(Exception):
    """Seeding cannot start or failed (rolled back); the message says what to do."""


class SeedRefused(SeedError):
    """The database already holds data and --replace was not given."""


@dataclass
class SeedResult:
    size: str
    seed: int
    rows: dict[str, int]
    documents: int
    document_bytes: int
    seconds: dict[str, float]


ProgressFn = Callable[[str], None]


def _copy(cur: Cursor, table: str, lines: list[str]) -> None:
    from psycopg2 import sql  # lazy: this module imports without psycopg2

    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS[table])
    )
    cur.copy_expert(statement, io.StringIO("".join(lines)), size=1 << 20)


def seed_database(
    conn: Connection,
    store: DocumentStore,
    *,
    size: str,
    seed: int,
    replace: bool = False,
    progress: ProgressFn | None = None,
    batch_chars: int = 32 << 20,
    write_documents: bool = True,
) -> SeedResult:
    """Load the synthetic estate into conn (schema owner) and store (a DocumentStore) in one transaction.

    write_documents=False only hashes the documents (the rows still reference them): the database host of an
    estate does not hold the document store; each app server writes its copy with seed_documents().
    """
    from civic_services import migrate  # lazy: psycopg2 only when seeding for real

    profile = SIZES[size]
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    conn.autocommit = False
    with conn.cursor() as cur:
        latest = migrate.latest_version()
        try:
            current = migrate.schema_version(cur)
        except Exception as exc:
            raise SeedError(f"cannot read the schema version: {exc}".strip()) from exc
        if current < latest:
            raise SeedError(f"database schema is at version {current}, this release needs {latest}: run migrate")
        cur.execute("SELECT EXISTS (SELECT 1 FROM ulbs)")
        if cur.fetchone()[0]:
            if not replace:
                conn.rollback()
                raise SeedRefused(
                    "the database already holds civic-services data; seeding would mix two estates. "
                    "Use --replace to wipe it and seed again (documents already in the store are kept)."
                )
            say("replacing existing data (TRUNCATE)")
            from psycopg2 import sql

            cur.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in TABLES)
                )
            )
        _copy(cur, "ulbs", ulb_lines())

    rows = dict.fromkeys(TABLES, 0)
    rows["ulbs"] = len(ULBS)
    docs = {"count": 0, "bytes": 0}
    batches: queue.Queue[dict[str, list[str]] | None] = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def loader() -> None:
        try:
            with conn.cursor() as cur:
                while (batch := batches.get()) is not None:
                    for table in TABLES[1:]:
                        if batch[table]:
                            _copy(cur, table, batch[table])
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
            while batches.get() is not None:  # drain so the producer never blocks
                pass

    # Documents are hashed here and written by a thread pool: creating many small files is syscall-bound
    # and scales with threads. At most MAX_PENDING_WRITES are in flight; a write error surfaces at once.
    bulk = DocumentStore(store.root, cache_dirs=True)
    writer = ThreadPoolExecutor(max_workers=DOCUMENT_WRITERS, thread_name_prefix="seed-docs")
    pending: deque[Future[tuple[str, int]]] = deque()

    def put_document(data: bytes) -> tuple[str, int]:
        sha = hashlib.sha256(data).hexdigest()
        if write_documents:
            pending.append(writer.submit(bulk.put_bytes, data, durable=False, sha256=sha))
        while len(pending) > MAX_PENDING_WRITES:
            pending.popleft().result()
        docs["count"] += 1
        docs["bytes"] += len(data)
        return sha, len(data)

    thread = threading.Thread(target=loader, name="seed-copy", daemon=True)
    thread.start()
    ids = Ids()
    buffer: dict[str, list[str]] = {t: [] for t in TABLES}
    buffered = 0
    last_report = time.monotonic()
    try:
        for i, ulb in enumerate(ULBS, start=1):
            before = {t: len(buffer[t]) for t in TABLES}
            generate_ulb(ulb, profile, seed, ids, buffer, put_document)
            for t in TABLES:
                added = len(buffer[t]) - before[t]
                rows[t] += added
                if added:
                    buffered += sum(len(line) for line in buffer[t][before[t] :])
            if buffered >= batch_chars or i == len(ULBS):
                if failure:
                    break
                batches.put(buffer)
                buffer = {t: [] for t in TABLES}
                buffered = 0
            if time.monotonic() - last_report > 5 or i == len(ULBS):
                last_report = time.monotonic()
                say(
                    f"generated {i}/{len(ULBS)} ULBs: {rows['properties']:,} properties, {rows['payments']:,} "
                    f"payments, {docs['count']:,} documents ({docs['bytes'] / 1e6:,.0f} MB)"
                )
        while pending:
            pending.popleft().result()
    except StoreError as exc:
        failure.append(exc)
    finally:
        batches.put(None)
        thread.join()
        writer.shutdown(wait=True, cancel_futures=True)
    timings["generate_and_copy"] = time.monotonic() - t0
    if failure:
        conn.rollback()
        raise SeedError(f"loading failed and was rolled back: {failure[0]}".strip()) from failure[0]

    with conn.cursor() as cur:
        for table in TABLES[1:]:
            cur.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, false)",
                (table, ids.next[table]),
            )
    t1 = time.monotonic()
    os.sync()  # every blob on disk before any row that references it is committed
    conn.commit()
    timings["sync_and_commit"] = time.monotonic() - t1
    t2 = time.monotonic()
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")
    conn.autocommit = False
    timings["analyze"] = time.monotonic() - t2
    timings["total"] = time.monotonic() - t0
    return SeedResult(size, seed, rows, docs["count"], docs["bytes"], timings)


def seed_documents(store: DocumentStore, *, size: str, seed: int, progress: ProgressFn | None = None) -> SeedResult:
    """Write only the documents of the data set that seed_database(size, seed) loads, without a database.

    Generation is deterministic, so every app server of an estate can fill its own document store with
    exactly the blobs the seeded rows reference (same sha256s), instead of copying gigabytes around.
    """
    profile = SIZES[size]
    say = progress or (lambda _msg: None)
    t0 = time.monotonic()
    bulk = DocumentStore(store.root, cache_dirs=True)
    docs = {"count": 0, "bytes": 0}
    pending: deque[Future[tuple[str, int]]] = deque()
    ids = Ids()
    last_report = time.monotonic()
    with ThreadPoolExecutor(max_workers=DOCUMENT_WRITERS, thread_name_prefix="seed-docs") as writer:

        def put_document(data: bytes) -> tuple[str, int]:
            sha = hashlib.sha256(data).hexdigest()
            pending.append(writer.submit(bulk.put_bytes, data, durable=False, sha256=sha))
            while len(pending) > MAX_PENDING_WRITES:
                pending.popleft().result()
            docs["count"] += 1
            docs["bytes"] += len(data)
            return sha, len(data)

        for i, ulb in enumerate(ULBS, start=1):
            generate_ulb(ulb, profile, seed, ids, {t: [] for t in TABLES}, put_document)
            if time.monotonic() - last_report > 5 or i == len(ULBS):
                last_report = time.monotonic()
                say(f"generated {i}/{len(ULBS)} ULBs: {docs['count']:,} documents ({docs['bytes'] / 1e6:,.0f} MB)")
        while pending:
            pending.popleft().result()
    os.sync()
    total = time.monotonic() - t0
    return SeedResult(size, seed, {}, docs["count"], docs["bytes"], {"generate_and_write": total, "total": total})
