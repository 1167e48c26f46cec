"""civic-services over HTTP: Debian's gunicorn serving the source tree on a Unix socket, as the least-privileged
app role, against a throwaway PostgreSQL seeded with the tiny data set."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator

import pytest

from tests.app.civic_harness import (
    APP_DIR,
    APP_ROLE,
    SECRET_PASSWORD,
    Estate,
    Server,
    cluster,
    make_estate,
    requires_runtime,
    serving,
)

pytestmark = requires_runtime


@pytest.fixture(scope="module")
def estate(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Estate:
    base = tmp_path_factory.mktemp("api")
    est = make_estate(cluster(request), base, "civic_api")
    for args in (("migrate", "--grant-to", APP_ROLE), ("seed", "--size", "tiny", "--seed", "4")):
        proc = est.cli(*args)
        assert proc.returncode == 0, proc.stderr
    return est


@pytest.fixture(scope="module")
def server(estate: Estate) -> Iterator[Server]:
    with serving(APP_DIR, estate.app_env(user=APP_ROLE), estate.workdir) as srv:
        yield srv


def test_health_green_with_every_check(server: Server) -> None:
    resp = server.get("/health")
    assert resp.status == 200, resp.text
    body = resp.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database", "schema", "documents"}
    assert body["checks"]["schema"] == {"ok": True, "version": 2, "expected": 2}
    assert resp.headers["cache-control"] == "no-store"


def test_version(server: Server) -> None:
    body = server.get("/version").json()
    assert body == {"name": "civic-services", "version": "1.0.0", "build_id": "dev", "content_sha256": None}


def test_ulbs(server: Server) -> None:
    body = server.get("/api/ulbs").json()
    assert body["count"] == 413
    assert body["ulbs"][0] == {
        "code": "MP001",
        "name": "Nagar Nigam Bhopal",
        "kind": "nagar_nigam",
        "district": "Bhopal",
        "on_portal": False,
    }
    assert server.get("/api/ulbs?kind=nagar_nigam").json()["count"] == 16
    indore = server.get("/api/ulbs/MP002").json()
    assert indore["name"] == "Nagar Nigam Indore" and indore["counts"]["properties"] > 0
    missing = server.get("/api/ulbs/MP999")
    assert missing.status == 404 and missing.json() == {"error": "no ULB MP999"}
    assert server.get("/api/ulbs/..%2Fetc").status == 404


def test_properties_search_and_paging(server: Server) -> None:
    first = server.get("/api/ulbs/MP002/properties?limit=2").json()
    assert len(first["items"]) == 2 and first["next_after"] == first["items"][1]["id"]
    second = server.get(f"/api/ulbs/MP002/properties?limit=2&after={first['next_after']}").json()
    assert second["items"][0]["id"] > first["items"][1]["id"]
    owner = first["items"][0]["owner_name"]
    found = server.get(f"/api/ulbs/MP002/properties?q={owner.split()[0].lower()}").json()["items"]
    assert found and all(p["owner_name"].lower().startswith(owner.split()[0].lower()) for p in found)
    assert server.get("/api/ulbs/MP002/properties?limit=5000").status == 400
    injection = server.get("/api/ulbs/MP002/properties?q=%27%3BDROP%20TABLE%20properties%3B--")
    assert injection.status == 200 and injection.json()["items"] == []
    assert server.get("/api/ulbs/MP002/properties?q=%25").json()["items"] == [], "% is matched literally"
    for listing in ("water-connections", "trade-licences", "building-permissions", "certificates"):
        assert server.get(f"/api/ulbs/MP002/{listing}").status == 200, listing
    assert server.get("/api/ulbs/MP002/secrets").status == 404


def _open_demand(server: Server) -> dict:
    for prop_id in range(1, 200):
        prop = server.get(f"/api/properties/{prop_id}").json()
        for demand in prop["demands"]:
            if float(demand["outstanding"]) > 10:
                return demand
    raise AssertionError("no property with an outstanding demand in the tiny data set")


def test_payment_receipt_and_idempotency(server: Server) -> None:
    demand = _open_demand(server)
    key = uuid.uuid4().hex
    request = {"demand_id": demand["id"], "amount": "10.00", "method": "upi", "payer_name": "Test Payer",
               "idempotency_key": key}  # fmt: skip
    created = server.post_json("/api/payments", request)
    assert created.status == 201, created.text
    payment = created.json()["payment"]
    assert payment["amount"] == "10.00" and payment["service"] == demand["tax"]
    assert created.headers["location"] == f"/api/payments/{payment['receipt_no']}"
    replay = server.post_json("/api/payments", request)
    assert replay.status == 200 and replay.json()["payment"]["receipt_no"] == payment["receipt_no"]
    conflict = server.post_json("/api/payments", {**request, "amount": "11.00"})
    assert conflict.status == 409

    receipt = server.get(f"/receipts/{payment['receipt_no']}")
    assert receipt.status == 200 and payment["receipt_no"] in receipt.text and "10.00" in receipt.text
    assert server.get(f"/api/payments/{payment['receipt_no']}").json()["payer_name"] == "Test Payer"

    too_much = server.post_json("/api/payments", {**request, "idempotency_key": None, "amount": "99999999.00"})
    assert too_much.status in (400, 422)
    over = server.post_json("/api/payments", {**request, "idempotency_key": None, "amount": "9999999.00"})
    assert over.status == 422 and "outstanding" in over.json()["error"]


@pytest.mark.parametrize(
    "body",
    [
        {"demand_id": 1, "amount": "-5", "method": "upi", "payer_name": "x"},
        {"demand_id": 1, "amount": "1.001", "method": "upi", "payer_name": "x"},
        {"demand_id": 1, "amount": "NaN", "method": "upi", "payer_name": "x"},
        {"demand_id": 1, "amount": "5", "method": "bitcoin", "payer_name": "x"},
        {"demand_id": "1; DROP TABLE payments", "amount": "5", "method": "upi", "payer_name": "x"},
        {"amount": "5", "method": "upi", "payer_name": "x"},
        [],
    ],
    ids=["negative", "three-decimals", "nan", "method", "id-string", "no-target", "not-object"],
)
def test_bad_payments_are_refused(server: Server, body: object) -> None:
    resp = server.post_json("/api/payments", body)
    assert resp.status == 400, resp.text
    assert "error" in resp.json()


def test_fee_payment_for_a_service(server: Server) -> None:
    resp = server.post_json(
        "/api/payments",
        {"service": "trade_licence", "ulb_code": "MP010", "amount": 1200, "method": "card", "payer_name": "Shop"},
    )
    assert resp.status == 201, resp.text
    assert resp.json()["payment"]["receipt_no"].startswith("MP010-R")


def test_certificate_with_its_document(server: Server, estate: Estate) -> None:
    number = estate.sql("SELECT certificate_no FROM certificates ORDER BY id LIMIT 1")
    cert = server.get(f"/api/certificates/{number}").json()
    assert cert["certificate_no"] == number and cert["document_url"]
    assert server.get(f"/api/certificates/{cert['id']}").json()["certificate_no"] == number
    pdf = server.get(cert["document_url"])
    assert pdf.status == 200 and pdf.body.startswith(b"%PDF-")
    assert hashlib.sha256(pdf.body).hexdigest() == cert["sha256"]
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["x-content-type-options"] == "nosniff"
    assert "attachment" in pdf.headers["content-disposition"]
    assert server.get("/api/certificates/MP001-X-0000-0000000").status == 404


def test_upload_round_trip(server: Server, estate: Estate) -> None:
    content = b"%PDF-1.4\n" + uuid.uuid4().hex.encode() + b"\n%%EOF\n"
    resp = server.post_file("/api/documents", {"ulb_code": "MP005", "kind": "upload"}, "../../plan (1).pdf", content)
    assert resp.status == 201, resp.text
    doc = resp.json()["document"]
    sha = hashlib.sha256(content).hexdigest()
    assert doc["sha256"] == sha and doc["size_bytes"] == len(content) and doc["content_type"] == "application/pdf"
    assert doc["filename"] == "plan_1_.pdf"
    assert (estate.store / "sha256" / sha[:2] / sha).read_bytes() == content
    back = server.get(doc["content_url"])
    assert back.status == 200 and back.body == content
    assert back.headers["etag"].strip('"') == sha
    assert server.get(f"/api/documents/{doc['id']}").json()["sha256"] == sha


def test_upload_refusals(server: Server) -> None:
    html = server.post_file("/api/documents", {"ulb_code": "MP005"}, "x.pdf", b"<html><script>alert(1)</script>")
    assert html.status == 415
    big = server.post_file("/api/documents", {"ulb_code": "MP005"}, "big.pdf", b"%PDF-" + b"0" * 300_000)
    assert big.status == 413
    assert server.post_file("/api/documents", {"ulb_code": "MP999"}, "x.pdf", b"%PDF-1.4").status == 404
    assert server.post_file("/api/documents", {"ulb_code": "MP005", "kind": "x"}, "x.pdf", b"%PDF-1.4").status == 400


def test_html_pages(server: Server) -> None:
    home = server.get("/")
    assert home.status == 200 and "Nagar Nigam Indore" in home.text and "Property tax" in home.text
    assert "text/html" in home.headers["content-type"]
    filtered = server.get("/?q=gwalior").text
    assert "Nagar Nigam Gwalior" in filtered and "Nagar Nigam Indore" not in filtered
    ulb = server.get("/ulbs/MP002?q=a")
    assert ulb.status == 200 and "Nagar Nigam Indore" in ulb.text and "/properties/" in ulb.text
    assert server.get("/properties/1").status == 200
    assert server.get("/ulbs/MP999").status == 404
    assert "<script>" not in server.get("/?q=<script>").text, "output is escaped"
    assert server.get("/static/style.css").status == 200


def test_secrets_never_logged(server: Server) -> None:
    server.get("/health")
    logs = server.logs()
    assert "ready: database civic_app@" in logs
    assert SECRET_PASSWORD not in logs


def test_health_red_when_the_store_is_gone_then_green_again(server: Server, estate: Estate) -> None:
    moved = estate.store.with_name("store-unmounted")
    shutil.move(estate.store, moved)
    try:
        resp = server.get("/health")
        assert resp.status == 503
        body = resp.json()
        assert body["failed"] == ["documents"] and "does not exist" in body["checks"]["documents"]["error"]
        assert body["checks"]["database"]["ok"] is True
        assert not estate.store.exists(), "health must not create a missing store"
    finally:
        shutil.move(moved, estate.store)
    assert server.get("/health").status == 200


def test_health_red_when_the_store_is_read_only(server: Server, estate: Estate) -> None:
    tmp = estate.store / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.write_text("a file where the staging directory should be")  # fails even for root
    try:
        resp = server.get("/health")
        assert resp.status == 503 and resp.json()["failed"] == ["documents"]
    finally:
        tmp.unlink()
    assert server.get("/health").status == 200


def test_health_red_when_the_database_is_down_and_recovers(server: Server, estate: Estate) -> None:
    assert server.get("/api/ulbs/MP002").status == 200  # a pooled connection exists
    estate.pg.stop()
    try:
        resp = server.get("/health")
        assert resp.status == 503
        body = resp.json()
        assert body["failed"] == ["database"] and body["checks"]["documents"]["ok"] is True
        api = server.get("/api/ulbs/MP002")
        assert api.status == 503 and "database" in api.json()["error"]
        assert server.get("/").status == 503
    finally:
        estate.pg.restart_after()
    assert server.get("/health").status == 200, "reconnects after the database is back"
    assert server.get("/api/ulbs/MP002").status == 200


def test_body_limit(server: Server) -> None:
    resp = server.request("POST", "/api/payments", b"{" + b" " * 400_000 + b"}", {"Content-Type": "application/json"})
    assert resp.status == 413
    assert json.loads(resp.body)["error"].startswith("request larger than")
