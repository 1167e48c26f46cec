"""The WSGI application: a JSON API under /api, a few HTML pages, /health and /version.

Security basics: every SQL statement is a constant with %s parameters (identifiers never come from a
request); request bodies are capped (MAX_CONTENT_LENGTH, HTTP 413); uploads are typed by their magic bytes,
never by the client's Content-Type; no debug mode; errors return a short message, details go to the log;
the database password is never logged. TLS, security headers and rate limits are nginx's job.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.errors
from flask import Flask, abort, jsonify, redirect, render_template, request, send_file, url_for
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from civic_services import NAME, health
from civic_services.config import Config, load_config
from civic_services.db import Database
from civic_services.docgen import sniff_content_type
from civic_services.release import version_info
from civic_services.seed import receipt_no
from civic_services.store import DocumentStore, StoreError, TooLarge
from civic_services.ulbs import KIND_LABELS

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from psycopg2.extensions import cursor as Cursor

log = logging.getLogger("civic_services")

SERVICES = (
    ("property_tax", "Property tax", "See and pay property tax demands of a property"),
    ("water_tax", "Water tax", "See and pay water tax demands"),
    ("water_connection", "Water connection", "New connections and their status"),
    ("bill_payment", "Bill payment", "Pay any demand or fee online and get a receipt"),
    ("trade_licence", "Trade licence", "Licences of shops and businesses"),
    ("building_permission", "Building permission", "Applications with their building plans"),
    ("birth_certificate", "Birth certificate", "Registered births, certificate download"),
    ("death_certificate", "Death certificate", "Registered deaths, certificate download"),
    ("marriage_certificate", "Marriage certificate", "Registered marriages, certificate download"),
)
PAYMENT_METHODS = ("upi", "card", "netbanking", "cash", "cheque")
FEE_SERVICES = (
    "water_connection",
    "trade_licence",
    "building_permission",
    "birth_certificate",
    "death_certificate",
    "marriage_certificate",
)
UPLOAD_KINDS = ("upload", "building_plan")
MAX_AMOUNT = Decimal("10000000.00")
ULB_CODE_RE = re.compile(r"^MP[0-9]{3}$")
FILENAME_BAD = re.compile(r"[^A-Za-z0-9._-]+")

# Listings of one ULB: constant SQL chosen by the URL segment, never built from it.
LISTINGS = {
    "water-connections": "SELECT id, connection_no, property_id, connection_type, pipe_size_mm, status, applied_on, "
    "connected_on FROM water_connections WHERE ulb_code = %s AND id > %s ORDER BY id LIMIT %s",
    "trade-licences": "SELECT id, licence_no, property_id, business_name, trade, owner_name, status, issued_on, "
    "valid_until, fee FROM trade_licences WHERE ulb_code = %s AND id > %s ORDER BY id LIMIT %s",
    "building-permissions": "SELECT id, application_no, property_id, applicant_name, floors, built_up_area_sqm, "
    "status, applied_on, decided_on, plan_document_id FROM building_permissions "
    "WHERE ulb_code = %s AND id > %s ORDER BY id LIMIT %s",
    "certificates": "SELECT id, certificate_no, kind, person_name, second_person_name, event_date, registered_on, "
    "document_id FROM certificates WHERE ulb_code = %s AND id > %s ORDER BY id LIMIT %s",
}
ULB_COUNTS_SQL = (
    "SELECT (SELECT count(*) FROM properties WHERE ulb_code = %(c)s) AS properties, "
    "(SELECT count(*) FROM water_connections WHERE ulb_code = %(c)s) AS water_connections, "
    "(SELECT count(*) FROM trade_licences WHERE ulb_code = %(c)s) AS trade_licences, "
    "(SELECT count(*) FROM building_permissions WHERE ulb_code = %(c)s) AS building_permissions, "
    "(SELECT count(*) FROM certificates WHERE ulb_code = %(c)s) AS certificates, "
    "(SELECT count(*) FROM payments WHERE ulb_code = %(c)s) AS payments"
)
PROPERTY_SEARCH_SQL = (
    "SELECT id, property_no, ward, owner_name, address, usage, plot_area_sqm, annual_rental_value "
    "FROM properties WHERE ulb_code = %(code)s AND id > %(after)s "
    "AND (%(ward)s::int IS NULL OR ward = %(ward)s) "
    "AND (%(q)s::text IS NULL OR property_no LIKE %(q_no)s OR lower(owner_name) LIKE %(q_owner)s) "
    "ORDER BY id LIMIT %(limit)s"
)
DEMANDS_SQL = (
    "SELECT d.id, d.tax, d.fiscal_year, d.amount, d.due_date, coalesce(sum(p.amount), 0) AS paid "
    "FROM tax_demands d LEFT JOIN payments p ON p.demand_id = d.id WHERE d.property_id = %s "
    "GROUP BY d.id ORDER BY d.fiscal_year, d.tax"
)
PAYMENT_SQL = (
    "SELECT p.id, p.receipt_no, p.ulb_code, u.name AS ulb_name, p.service, p.demand_id, p.amount, p.method, "
    "p.payer_name, p.paid_at, d.property_id, d.fiscal_year FROM payments p JOIN ulbs u ON u.code = p.ulb_code "
    "LEFT JOIN tax_demands d ON d.id = p.demand_id WHERE p.receipt_no = %s"
)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _jsonable(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _rows(cur: Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [{n: _jsonable(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _one(cur: Cursor) -> dict[str, Any] | None:
    rows = _rows(cur)
    return rows[0] if rows else None


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}")
    return value


def _amount(raw: object) -> Decimal:
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise ApiError(400, 'amount must be a number of rupees, e.g. "1250.50"') from None
    in_range = value.is_finite() and 0 < value <= MAX_AMOUNT
    if not in_range or value != value.quantize(Decimal("0.01"), ROUND_DOWN):
        raise ApiError(400, f"amount must be more than 0 and at most {MAX_AMOUNT}, with at most 2 decimals")
    return value


def _safe_filename(name: str | None) -> str:
    base = Path(name or "").name
    cleaned = FILENAME_BAD.sub("_", base).strip("._")[:120]
    return cleaned or "upload"


def create_app(config: Config | None = None) -> Flask:
    cfg = config or load_config()
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(cfg.log_level)
    info = version_info()

    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=cfg.max_upload_bytes, DEBUG=False, TESTING=False)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    db = Database(cfg.database, application_name=NAME, pool_max=cfg.pool_max)
    store = DocumentStore(cfg.store_path)
    app.extensions["civic_services"] = {"db": db, "store": store, "config": cfg}
    log.info("%s %s (build %s) ready: %s", NAME, info["version"], info["build_id"], cfg.describe())

    def wants_json() -> bool:
        return request.path.startswith("/api/") or request.path in ("/health", "/version")

    @app.before_request
    def limit_body() -> None:
        # Werkzeug 2.2 enforces MAX_CONTENT_LENGTH only for form data: check every body up front. Bodies
        # without a length (chunked) are refused; nginx buffers requests and always sends one.
        if request.method in ("POST", "PUT", "PATCH"):
            if request.content_length is None and request.headers.get("Transfer-Encoding"):
                abort(411, "send a Content-Length")
            if (request.content_length or 0) > cfg.max_upload_bytes:
                raise RequestEntityTooLarge()

    # -- errors ------------------------------------------------------------------------------------------
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> ResponseReturnValue:
        return jsonify(error=exc.message), exc.status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_exc: RequestEntityTooLarge) -> ResponseReturnValue:
        return jsonify(error=f"request larger than {cfg.max_upload_bytes} bytes"), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        if wants_json():
            return jsonify(error=exc.description or exc.name), exc.code
        return render_template("error.html", status=exc.code, message=exc.description), exc.code

    @app.errorhandler(psycopg2.OperationalError)
    @app.errorhandler(psycopg2.InterfaceError)
    def db_down(exc: Exception) -> ResponseReturnValue:
        log.warning("database unavailable on %s %s: %s", request.method, request.path, health._first_line(exc))
        message = "the database is not available right now; please try again in a minute"
        if wants_json():
            return jsonify(error=message), 503
        return render_template("error.html", status=503, message=message), 503

    @app.errorhandler(StoreError)
    def store_down(exc: StoreError) -> ResponseReturnValue:
        log.error("document store error on %s %s: %s", request.method, request.path, exc)
        return jsonify(error="the document store is not available right now"), 503

    @app.errorhandler(Exception)
    def internal(exc: Exception) -> ResponseReturnValue:
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return jsonify(error="internal error; it has been logged"), 500
        return render_template("error.html", status=500, message="internal error; it has been logged"), 500

    # -- health and version ------------------------------------------------------------------------------
    @app.get("/health")
    def health_view() -> ResponseReturnValue:
        ok, body = health.run_checks(db, store)
        response = jsonify(body)
        response.status_code = 200 if ok else 503
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/version")
    def version_view() -> ResponseReturnValue:
        return jsonify(version_info())

    # -- JSON API ----------------------------------------------------------------------------------------
    @app.get("/api/services")
    def api_services() -> ResponseReturnValue:
        return jsonify(services=[{"id": s, "name": n, "description": d} for s, n, d in SERVICES])

    def get_ulb(cur: Cursor, code: str) -> dict[str, Any]:
        if not ULB_CODE_RE.match(code):
            raise ApiError(404, f"no ULB {code!r}: codes look like MP001")
        cur.execute("SELECT code, name, kind, district, on_portal FROM ulbs WHERE code = %s", (code,))
        ulb = _one(cur)
        if ulb is None:
            raise ApiError(404, f"no ULB {code}")
        return ulb

    @app.get("/api/ulbs")
    def api_ulbs() -> ResponseReturnValue:
        kind = request.args.get("kind") or None
        district = request.args.get("district") or None

        def q(cur: Cursor) -> list[dict[str, Any]]:
            cur.execute(
                "SELECT code, name, kind, district, on_portal FROM ulbs WHERE (%(k)s::text IS NULL OR kind = %(k)s) "
                "AND (%(d)s::text IS NULL OR district = %(d)s) ORDER BY code",
                {"k": kind, "d": district},
            )
            return _rows(cur)

        ulbs = db.run(q)
        return jsonify(count=len(ulbs), ulbs=ulbs)

    @app.get("/api/ulbs/<code>")
    def api_ulb(code: str) -> ResponseReturnValue:
        def q(cur: Cursor) -> dict[str, Any]:
            ulb = get_ulb(cur, code)
            cur.execute(ULB_COUNTS_SQL, {"c": code})
            ulb["counts"] = _one(cur)
            return ulb

        return jsonify(db.run(q))

    def search_properties(code: str, q: str | None, ward: int | None, after: int, limit: int) -> ResponseReturnValue:
        def run(cur: Cursor) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            ulb = get_ulb(cur, code)
            text = (q or "").strip() or None
            cur.execute(
                PROPERTY_SEARCH_SQL,
                {
                    "code": code,
                    "after": after,
                    "ward": ward,
                    "q": text,
                    "q_no": _like_prefix(text or ""),
                    "q_owner": _like_prefix((text or "").lower()),
                    "limit": limit,
                },
            )
            return ulb, _rows(cur)

        return db.run(run)

    @app.get("/api/ulbs/<code>/properties")
    def api_properties(code: str) -> ResponseReturnValue:
        limit = _int_arg("limit", 50, 1, 200)
        _ulb, items = search_properties(
            code,
            request.args.get("q"),
            _int_arg("ward", 0, 0, 999) or None,
            _int_arg("after", 0, 0, 2**62),
            limit,
        )
        return jsonify(items=items, next_after=items[-1]["id"] if len(items) == limit else None)

    @app.get("/api/ulbs/<code>/<listing>")
    def api_listing(code: str, listing: str) -> ResponseReturnValue:
        statement = LISTINGS.get(listing)
        if statement is None:
            raise ApiError(404, f"no listing {listing!r}; one of: properties, {', '.join(LISTINGS)}")
        limit = _int_arg("limit", 50, 1, 200)
        after = _int_arg("after", 0, 0, 2**62)

        def q(cur: Cursor) -> list[dict[str, Any]]:
            get_ulb(cur, code)
            cur.execute(statement, (code, after, limit))
            return _rows(cur)

        items = db.run(q)
        return jsonify(items=items, next_after=items[-1]["id"] if len(items) == limit else None)

    def property_detail(prop_id: int) -> dict[str, Any]:
        def q(cur: Cursor) -> dict[str, Any]:
            cur.execute(
                "SELECT p.id, p.ulb_code, u.name AS ulb_name, p.property_no, p.ward, p.owner_name, p.address, "
                "p.usage, p.plot_area_sqm, p.annual_rental_value FROM properties p JOIN ulbs u ON u.code = p.ulb_code "
                "WHERE p.id = %s",
                (prop_id,),
            )
            prop = _one(cur)
            if prop is None:
                raise ApiError(404, f"no property {prop_id}")
            cur.execute(DEMANDS_SQL, (prop_id,))
            demands = _rows(cur)
            for d in demands:
                d["outstanding"] = str(max(Decimal(d["amount"]) - Decimal(d["paid"]), Decimal("0.00")))
            prop["demands"] = demands
            cur.execute(
                "SELECT p.receipt_no, p.service, p.demand_id, p.amount, p.method, p.paid_at FROM payments p "
                "JOIN tax_demands d ON d.id = p.demand_id WHERE d.property_id = %s ORDER BY p.paid_at, p.id",
                (prop_id,),
            )
            prop["payments"] = _rows(cur)
            cur.execute(
                "SELECT connection_no, connection_type, pipe_size_mm, status, applied_on, connected_on "
                "FROM water_connections WHERE property_id = %s ORDER BY id",
                (prop_id,),
            )
            prop["water_connections"] = _rows(cur)
            return prop

        return db.run(q)

    @app.get("/api/properties/<int:prop_id>")
    def api_property(prop_id: int) -> ResponseReturnValue:
        return jsonify(property_detail(prop_id))

    @app.post("/api/payments")
    def api_pay() -> ResponseReturnValue:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "send a JSON object: {demand_id, amount, method, payer_name[, idempotency_key]}")
        amount = _amount(body.get("amount"))
        method = body.get("method")
        if method not in PAYMENT_METHODS:
            raise ApiError(400, f"method must be one of {', '.join(PAYMENT_METHODS)}")
        payer = body.get("payer_name")
        if not isinstance(payer, str) or not 1 <= len(payer.strip()) <= 120:
            raise ApiError(400, "payer_name must be 1-120 characters")
        key = body.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not 8 <= len(key) <= 64):
            raise ApiError(400, "idempotency_key must be a string of 8-64 characters")
        demand_id = body.get("demand_id")
        service = body.get("service")
        ulb_code = body.get("ulb_code")
        if demand_id is not None:
            if not isinstance(demand_id, int) or isinstance(demand_id, bool) or demand_id <= 0:
                raise ApiError(400, "demand_id must be a positive whole number")
        elif service not in FEE_SERVICES or not isinstance(ulb_code, str):
            raise ApiError(
                400, f"give demand_id (a tax demand), or service (one of {', '.join(FEE_SERVICES)}) with ulb_code"
            )

        def pay(cur: Cursor) -> tuple[int, dict[str, Any]]:
            nonlocal service, ulb_code
            if key is not None:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
                cur.execute("SELECT receipt_no FROM payments WHERE idempotency_key = %s", (key,))
                existing = cur.fetchone()
                if existing:
                    cur.execute(PAYMENT_SQL, (existing[0],))
                    previous = _one(cur)
                    if previous is None or Decimal(previous["amount"]) != amount or previous["demand_id"] != demand_id:
                        raise ApiError(409, "idempotency_key was already used for a different payment")
                    return 200, previous
            if demand_id is not None:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (demand_id,))
                cur.execute(
                    "SELECT d.tax, p.ulb_code, d.amount - coalesce((SELECT sum(amount) FROM payments "
                    "WHERE demand_id = d.id), 0) FROM tax_demands d JOIN properties p ON p.id = d.property_id "
                    "WHERE d.id = %s",
                    (demand_id,),
                )
                row = cur.fetchone()
                if row is None:
                    raise ApiError(404, f"no tax demand {demand_id}")
                service, ulb_code, outstanding = row
                if amount > outstanding:
                    raise ApiError(422, f"amount {amount} is more than the outstanding {outstanding}")
            else:
                get_ulb(cur, ulb_code)
            cur.execute("SELECT nextval(pg_get_serial_sequence('payments', 'id'))")
            (payment_id,) = cur.fetchone()
            number = receipt_no(ulb_code, payment_id)
            cur.execute(
                "INSERT INTO payments (id, receipt_no, ulb_code, service, demand_id, amount, method, payer_name, "
                "idempotency_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (payment_id, number, ulb_code, service, demand_id, amount, method, payer.strip(), key),
            )
            cur.execute(PAYMENT_SQL, (number,))
            return 201, _one(cur)  # type: ignore[return-value]

        status, payment = db.run(pay, write=True)
        response = jsonify(payment=payment, receipt_url=url_for("receipt_page", number=payment["receipt_no"]))
        response.status_code = status
        response.headers["Location"] = url_for("api_payment", number=payment["receipt_no"])
        return response

    @app.get("/api/payments/<number>")
    def api_payment(number: str) -> ResponseReturnValue:
        def q(cur: Cursor) -> dict[str, Any] | None:
            cur.execute(PAYMENT_SQL, (number,))
            return _one(cur)

        payment = db.run(q)
        if payment is None:
            raise ApiError(404, f"no payment with receipt {number}")
        return jsonify(payment)

    @app.get("/api/certificates/<ref>")
    def api_certificate(ref: str) -> ResponseReturnValue:
        def q(cur: Cursor) -> dict[str, Any] | None:
            cur.execute(
                "SELECT c.id, c.certificate_no, c.ulb_code, u.name AS ulb_name, c.kind, c.person_name, "
                "c.second_person_name, c.event_date, c.registered_on, c.document_id, d.sha256, d.size_bytes, "
                "d.content_type FROM certificates c JOIN ulbs u ON u.code = c.ulb_code "
                "LEFT JOIN documents d ON d.id = c.document_id "
                "WHERE c.certificate_no = %(ref)s OR c.id = %(id)s",
                {"ref": ref, "id": int(ref) if ref.isdigit() and len(ref) < 18 else None},
            )
            return _one(cur)

        cert = db.run(q)
        if cert is None:
            raise ApiError(404, f"no certificate {ref}")
        if cert["document_id"] is not None:
            cert["document_url"] = url_for("api_document_content", doc_id=cert["document_id"])
        return jsonify(cert)

    def get_document(doc_id: int) -> dict[str, Any]:
        def q(cur: Cursor) -> dict[str, Any] | None:
            cur.execute(
                "SELECT id, sha256, size_bytes, content_type, filename, ulb_code, kind, uploaded_at "
                "FROM documents WHERE id = %s",
                (doc_id,),
            )
            return _one(cur)

        doc = db.run(q)
        if doc is None:
            raise ApiError(404, f"no document {doc_id}")
        return doc

    @app.get("/api/documents/<int:doc_id>")
    def api_document(doc_id: int) -> ResponseReturnValue:
        doc = get_document(doc_id)
        doc["content_url"] = url_for("api_document_content", doc_id=doc_id)
        return jsonify(doc)

    @app.get("/api/documents/<int:doc_id>/content")
    def api_document_content(doc_id: int) -> ResponseReturnValue:
        doc = get_document(doc_id)
        path = store.path_for(doc["sha256"])
        if not path.is_file():
            log.error("document %s: blob %s missing from %s (restore the store)", doc_id, doc["sha256"], store.root)
            raise ApiError(503, "the document's content is missing from the store; operators have been alerted")
        response = send_file(
            path,
            mimetype=doc["content_type"],
            as_attachment=True,
            download_name=doc["filename"],
            etag=doc["sha256"],
            conditional=True,
            max_age=86400,
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Digest"] = f"sha-256={doc['sha256']}"
        return response

    @app.post("/api/documents")
    def api_upload() -> ResponseReturnValue:
        upload = request.files.get("file")
        if upload is None:
            raise ApiError(400, "send multipart/form-data with a 'file' field (and ulb_code, kind)")
        ulb_code = request.form.get("ulb_code", "")
        kind = request.form.get("kind", "upload")
        if kind not in UPLOAD_KINDS:
            raise ApiError(400, f"kind must be one of {', '.join(UPLOAD_KINDS)}")
        head = upload.stream.read(16)
        upload.stream.seek(0)
        content_type = sniff_content_type(head)
        if content_type is None:
            raise ApiError(415, "only PDF, PNG and JPEG documents are accepted")
        filename = _safe_filename(upload.filename)
        db.run(lambda cur: get_ulb(cur, ulb_code))
        try:
            sha, size, _head = store.put_stream(upload.stream, cfg.max_upload_bytes)
        except TooLarge:
            raise ApiError(413, f"document larger than {cfg.max_upload_bytes} bytes") from None

        def insert(cur: Cursor) -> dict[str, Any]:
            cur.execute(
                "INSERT INTO documents (sha256, size_bytes, content_type, filename, ulb_code, kind) "
                "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id, sha256, size_bytes, content_type, filename, ulb_code, "
                "kind, uploaded_at",
                (sha, size, content_type, filename, ulb_code, kind),
            )
            return _one(cur)  # type: ignore[return-value]

        doc = db.run(insert, write=True)
        doc["content_url"] = url_for("api_document_content", doc_id=doc["id"])
        log.info("document %s stored: %s bytes, sha256 %s, ulb %s", doc["id"], size, sha, ulb_code)
        response = jsonify(document=doc)
        response.status_code = 201
        response.headers["Location"] = url_for("api_document", doc_id=doc["id"])
        return response

    # -- HTML pages --------------------------------------------------------------------------------------
    @app.context_processor
    def globals_for_templates() -> dict[str, Any]:
        return {"kind_labels": KIND_LABELS, "release": info, "services": SERVICES}

    @app.get("/")
    def home_page() -> ResponseReturnValue:
        q = (request.args.get("q") or "").strip()[:60]

        def run(cur: Cursor) -> list[dict[str, Any]]:
            cur.execute(
                "SELECT code, name, kind, district, on_portal FROM ulbs WHERE %(q)s = '' "
                "OR lower(name) LIKE %(like)s OR lower(district) LIKE %(like)s ORDER BY code",
                {"q": q, "like": "%" + _like_prefix(q.lower())},
            )
            return _rows(cur)

        ulbs = db.run(run)
        groups = [(kind, [u for u in ulbs if u["kind"] == kind]) for kind in KIND_LABELS]
        return render_template("home.html", groups=groups, q=q, total=len(ulbs))

    @app.get("/ulbs/<code>")
    def ulb_page(code: str) -> ResponseReturnValue:
        q = (request.args.get("q") or "").strip()[:60]
        ward = request.args.get("ward", "")
        ward_no = int(ward) if ward.isdigit() and len(ward) < 4 else None
        try:
            ulb = db.run(lambda cur: get_ulb(cur, code))
        except ApiError:
            abort(404, f"There is no urban local body with code {code}.")

        def count(cur: Cursor) -> dict[str, Any] | None:
            cur.execute(ULB_COUNTS_SQL, {"c": code})
            return _one(cur)

        counts = db.run(count)
        _u, properties = search_properties(code, q, ward_no, 0, 50) if (q or ward_no) else (ulb, [])
        return render_template("ulb.html", ulb=ulb, counts=counts, properties=properties, q=q, ward=ward)

    @app.get("/properties/<int:prop_id>")
    def property_page(prop_id: int) -> ResponseReturnValue:
        try:
            prop = property_detail(prop_id)
        except ApiError:
            abort(404, f"There is no property {prop_id}.")
        return render_template("property.html", prop=prop)

    @app.get("/receipts/<number>")
    def receipt_page(number: str) -> ResponseReturnValue:
        def q(cur: Cursor) -> dict[str, Any] | None:
            cur.execute(PAYMENT_SQL, (number,))
            return _one(cur)

        payment = db.run(q)
        if payment is None:
            abort(404, f"There is no receipt {number}.")
        return render_template("receipt.html", p=payment)

    @app.get("/certificates")
    def certificate_lookup() -> ResponseReturnValue:
        number = (request.args.get("no") or "").strip()
        if not number:
            return redirect(url_for("home_page"))
        return redirect(url_for("api_certificate", ref=number))

    return app
