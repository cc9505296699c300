"""The Syncro sandbox over real HTTP, checked against the reference documents, not our client."""

from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from sync_daemon.sandbox import ALL_PERMISSIONS, SyncroSandbox, SyncroState, demo_syncro_state
from tests.sandbox.conftest import READ_ONLY_TOKEN, TOKEN, FakeClock, MakeSandbox, http_client

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}-05:00")
INVALID_TOKEN = {"error": "Invalid or missing API token."}
NOT_AUTHORIZED = {
    "error": "Not authorized. Please ask account admin to update your group permissions."
}


def seed_customer(state: SyncroState, name: str = "Acme Dental Group", **fields: Any) -> int:
    return int(state.customers.add(business_name=name, **fields)["id"])


def seed_schedule(state: SyncroState) -> tuple[int, int]:
    customer_id = seed_customer(state)
    return customer_id, int(state.schedules.add(customer_id)["id"])


def wait_until(condition: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- auth (syncro-api.md §1.3, §1.4, assumed-shapes §1.1) ----------------------------------------


def test_me_reports_the_token_owner(client: httpx.Client) -> None:
    me = client.get("/me").json()
    assert me["user_id"] == 3001
    assert me["subdomain"] == "acme"
    assert me["admin"] is True
    assert me["permissions"]["customer"] == {"read": True, "write": True, "delete": True}


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, {}),
        ({"Authorization": f"bearer {TOKEN}"}, {}),
        ({"Authorization": TOKEN}, {}),
        ({}, {"api_key": TOKEN}),
    ],
)
def test_all_three_token_forms_are_accepted(
    anonymous: httpx.Client, headers: dict[str, str], params: dict[str, str]
) -> None:
    assert anonymous.get("/customers", headers=headers, params=params).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_missing_or_unknown_token_is_401(anonymous: httpx.Client, headers: dict[str, str]) -> None:
    response = anonymous.get("/customers", headers=headers)
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


def test_token_without_the_permission_is_401_not_authorized(
    anonymous: httpx.Client, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    auth = {"Authorization": f"Bearer {READ_ONLY_TOKEN}"}
    assert anonymous.get(f"/schedules/{schedule_id}", headers=auth).status_code == 200
    response = anonymous.post(
        f"/schedules/{schedule_id}/line_items", headers=auth, json={"name": "x"}
    )
    assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)
    assert state.lines.all(schedule_id) == []
    me = anonymous.get("/me", headers=auth).json()
    assert me["admin"] is False
    assert me["permissions"]["schedule"] == {"read": True, "write": False, "delete": False}


def test_permission_check_uses_the_exact_strings(make_sandbox: MakeSandbox) -> None:
    sandbox = make_sandbox(tokens={"t": ALL_PERMISSIONS - {"Recurring Invoices - Edit"}})
    with http_client(sandbox, "t") as http:
        assert http.get("/schedules").status_code == 200
        assert http.delete("/schedules/4100001/line_items/1").status_code == 401


def test_unknown_route_is_an_empty_404_even_without_token(anonymous: httpx.Client) -> None:
    response = anonymous.get("/nothing/here")
    assert response.status_code == 404
    assert response.content == b""
    assert response.headers["Content-Length"] == "0"


# -- paging (syncro-api.md §3, assumed-shapes §1.5, §1.6) ---------------------------------------


def test_customer_pages_carry_full_meta_and_an_empty_page_past_the_end(
    client: httpx.Client, state: SyncroState
) -> None:
    for n in range(60):
        seed_customer(state, f"Customer {n:02d}")
    first = client.get("/customers").json()
    assert len(first["customers"]) == 25
    assert first["meta"] == {"total_pages": 3, "total_entries": 60, "per_page": 25, "page": 1}
    last = client.get("/customers", params={"page": 3}).json()
    assert last["customers"][0]["business_name"] == "Customer 50"
    assert len(last["customers"]) == 10
    beyond = client.get("/customers", params={"page": 4})
    assert beyond.status_code == 200
    assert beyond.json()["customers"] == []
    assert beyond.json()["meta"]["page"] == 4


def test_products_page_by_25_and_schedules_by_50(client: httpx.Client, state: SyncroState) -> None:
    customer_id = seed_customer(state)
    for n in range(51):
        state.products.add(f"Product {n}")
        state.schedules.add(customer_id, f"Schedule {n}")
    products = client.get("/products", params={"page": 3}).json()
    assert products["meta"] == {"total_pages": 3, "total_entries": 51, "per_page": 25, "page": 3}
    assert len(products["products"]) == 1
    schedules = client.get("/schedules").json()
    assert schedules["meta"] == {"total_pages": 2, "total_entries": 51, "per_page": 50, "page": 1}
    assert len(schedules["schedules"]) == 50
    assert all("lines" not in s for s in schedules["schedules"])


def test_invoices_have_minimal_meta_and_per_page_capped_at_25(
    client: httpx.Client, state: SyncroState
) -> None:
    customer_id = seed_customer(state)
    other_id = seed_customer(state, "Evergreen Law LLP")
    for n in range(30):
        state.invoices.add(customer_id if n % 2 else other_id)
    page = client.get("/invoices", params={"per_page": 100, "customer_id": customer_id}).json()
    assert page["meta"] == {"total_pages": 2, "page": 1}
    assert len(page["invoices"]) == 25  # capped, and customer_id silently ignored
    small = client.get("/invoices", params={"per_page": 10, "page": 3}).json()
    assert (len(small["invoices"]), small["meta"]) == (10, {"total_pages": 3, "page": 3})


# -- customers (assumed-shapes §1.4) ----------------------------------------------------------


def test_customer_create_returns_the_wrapped_record(client: httpx.Client) -> None:
    body = {
        "business_name": "Summit Pediatrics",
        "email": "ap@summitpeds.example",
        "phone": "(555) 318-6650",
    }
    response = client.post("/customers", json=body)
    assert response.status_code == 200
    customer = response.json()["customer"]
    assert 1500001 <= customer["id"] < 1600000
    assert customer["business_then_name"] == "Summit Pediatrics"
    assert TIMESTAMP.fullmatch(customer["created_at"])
    detail = client.get(f"/customers/{customer['id']}").json()["customer"]
    assert detail["phones"][0]["number"] == "5553186650"
    assert detail["contracts"] == detail["addresses"] == []
    listed = client.get("/customers").json()["customers"][0]
    assert "phones" not in listed


def test_customer_422_shapes(client: httpx.Client, state: SyncroState) -> None:
    response = client.post("/customers", json={"email": "bad"})
    assert response.status_code == 422
    assert response.json() == {
        "success": False,
        "message": ["Lastname can't be blank", "Email is not an email"],
        "params": {"email": "bad"},
    }
    customer_id = seed_customer(state)
    update = client.put(f"/customers/{customer_id}", json={"email": "still bad"})
    assert update.status_code == 422
    assert update.json() == {"success": False, "message": ["Email is not an email"]}


def test_customer_put_is_partial(client: httpx.Client, state: SyncroState) -> None:
    customer_id = seed_customer(state, city="Bend", no_email=True)
    client.put(f"/customers/{customer_id}", json={"notes": "VIP"})
    customer = state.customers.get(customer_id)
    assert customer is not None
    assert (customer["city"], customer["no_email"], customer["notes"]) == ("Bend", True, "VIP")


def test_customer_filters(client: httpx.Client, state: SyncroState) -> None:
    acme = seed_customer(state, "Acme Dental Group", email="Office@AcmeDental.example")
    seed_customer(state, "Evergreen Law LLP", phone="555-404-1180")
    gone = seed_customer(state, "Acme Old Branch", disabled=True)

    def names(**params: Any) -> list[str]:
        customers = client.get("/customers", params=params).json()["customers"]
        return [c["business_name"] for c in customers]

    assert names() == ["Acme Dental Group", "Evergreen Law LLP"]
    assert names(include_disabled="true") == [
        "Acme Dental Group",
        "Evergreen Law LLP",
        "Acme Old Branch",
    ]
    assert names(business_name="acme") == ["Acme Dental Group"]
    assert names(email="office@acmedental.example") == ["Acme Dental Group"]
    assert names(email="acmedental.example") == []
    assert names(query="404-1180") == ["Evergreen Law LLP"]
    assert names(id=acme) == ["Acme Dental Group"]
    assert names(sort="business_name DESC") == ["Evergreen Law LLP", "Acme Dental Group"]
    assert client.get(f"/customers/{gone}").status_code == 200
    assert client.get("/customers/1").status_code == 404


# -- products (assumed-shapes §1.5) -----------------------------------------------------------


def test_product_create_defaults_and_numbers(client: httpx.Client) -> None:
    body = {
        "name": "PC_PPE-BUSINESS",
        "description": "Proofpoint Essentials Business",
        "price_retail": "3.00",
        "price_cost": 1.5,
    }
    product = client.post("/products", json=body).json()["product"]
    assert product["id"] >= 15000001
    assert (product["taxable"], product["disabled"], product["maintain_stock"]) == (
        True,
        False,
        False,
    )
    assert (product["price_retail"], product["price_cost"], product["price_wholesale"]) == (
        3.0,
        1.5,
        0.0,
    )
    assert isinstance(product["price_retail"], float)
    assert product["product_skus"] == []


def test_product_422_shape(client: httpx.Client) -> None:
    response = client.post("/products", json={"name": "X"})
    assert response.status_code == 422
    assert response.json() == {
        "success": False,
        "message": ["Description can't be blank"],
        "params": {"name": "X"},
    }


def test_product_put_resets_omitted_maintain_stock_but_is_otherwise_partial(
    client: httpx.Client, state: SyncroState
) -> None:
    product_id = state.products.add("Widget", maintain_stock=True, price_retail=9)["id"]
    response = client.put(f"/products/{product_id}", json={"notes": "new"})
    product = response.json()["product"]
    assert (product["maintain_stock"], product["price_retail"], product["notes"]) == (
        False,
        9.0,
        "new",
    )


def test_product_skus_add_change_destroy(client: httpx.Client, state: SyncroState) -> None:
    crayon = state.add_vendor("Crayon")
    product_id = state.products.add("M365 BP")["id"]
    sku = {"vendor_id": crayon, "value": "CFQ7TTC0LCHC:0002"}
    client.put(f"/products/{product_id}", json={"product_skus_attributes": [sku]})
    product = client.put(f"/products/{product_id}", json={"product_skus_attributes": [sku]})
    skus = product.json()["product"]["product_skus"]
    assert [s["sku"] for s in skus] == ["CFQ7TTC0LCHC:0002"] * 2  # re-sending duplicates
    assert skus[0] == {"id": 620001, "vendor_name": "Crayon", "sku": "CFQ7TTC0LCHC:0002"}
    assert product.json()["product"]["vendor_ids"] == [crayon]
    changes = [{"id": 620001, "value": "NEW"}, {"id": 620002, "_destroy": True}]
    after = client.put(f"/products/{product_id}", json={"product_skus_attributes": changes})
    assert after.json()["product"]["product_skus"] == [
        {"id": 620001, "vendor_name": "Crayon", "sku": "NEW"}
    ]
    bad = client.put(
        f"/products/{product_id}",
        json={"product_skus_attributes": [{"vendor_id": 999, "value": "X"}]},
    )
    assert bad.status_code == 422
    assert bad.json() == {"success": False, "message": ["Product skus vendor must exist"]}


def test_product_filters_include_disabled(client: httpx.Client, state: SyncroState) -> None:
    proofpoint = state.add_vendor("Proofpoint")
    security = state.add_category("Email Security")
    state.products.add(
        "PC_PPE-BUSINESS",
        "Proofpoint Essentials Business",
        skus=[(proofpoint, "PPE-BUS")],
        category_ids=[security],
    )
    state.products.add("Old Thing", "Retired", disabled=True, upc_code="0123")

    def names(**params: Any) -> list[str]:
        return [p["name"] for p in client.get("/products", params=params).json()["products"]]

    assert names() == ["PC_PPE-BUSINESS", "Old Thing"]
    assert names(name="ppe") == ["PC_PPE-BUSINESS"]
    assert names(sku="ppe-bus") == ["PC_PPE-BUSINESS"]
    assert names(sku="PPE") == []
    assert names(query="PPE-B") == ["PC_PPE-BUSINESS"]
    assert names(query="retired") == ["Old Thing"]
    assert names(category_id=security) == ["PC_PPE-BUSINESS"]
    assert names(upc_code="0123") == ["Old Thing"]


def test_products_have_no_delete(client: httpx.Client, state: SyncroState) -> None:
    product_id = state.products.add("Widget")["id"]
    response = client.delete(f"/products/{product_id}")
    assert (response.status_code, response.content) == (404, b"")


def test_form_encoded_bodies_are_read_like_rails(client: httpx.Client, state: SyncroState) -> None:
    vendor = state.add_vendor("Crayon")
    form = {
        "name": "Form Product",
        "description": "via form",
        "taxable": "false",
        "product_skus_attributes[][vendor_id]": str(vendor),
        "product_skus_attributes[][value]": "SKU-1",
    }
    product = client.post("/products", data=form).json()["product"]
    assert product["taxable"] is False
    assert [s["sku"] for s in product["product_skus"]] == ["SKU-1"]


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/customers", content=b'{"business_name": ', headers={"Content-Type": "application/json"}
    )
    assert (response.status_code, response.json()) == (
        400,
        {"error": "Invalid JSON in request body"},
    )


# -- schedules (assumed-shapes §1.6) ----------------------------------------------------------


def test_schedule_create_and_detail_with_lines(client: httpx.Client, state: SyncroState) -> None:
    customer_id = seed_customer(state)
    body = {
        "customer_id": customer_id,
        "name": "Monthly",
        "frequency": "Monthly",
        "next_run": "2026-12-01",
    }
    schedule = client.post("/schedules", json=body).json()["schedule"]
    assert schedule["id"] >= 4100001
    assert (schedule["next_run"], schedule["recurring_type_id"], schedule["lines"]) == (
        "2026-12-01",
        1,
        [],
    )
    state.lines.add(schedule["id"], name="Managed Services", quantity=3, retail_cents=4500)
    detail = client.get(f"/schedules/{schedule['id']}").json()["schedule"]
    assert [line["name"] for line in detail["lines"]] == ["Managed Services"]
    assert detail["subtotal"] == 135.0


def test_schedule_validation_order(client: httpx.Client) -> None:
    response = client.post("/schedules", json={"frequency": "Fortnightly", "period_mode_id": 7})
    assert response.status_code == 422
    assert response.json() == {
        "error": [
            "Frequency Must be a valid selection",
            "Next run can't be blank",
            "Name can't be blank",
            "Customer can't be blank",
            "Period mode Must be a valid selection",
        ]
    }
    body = {"customer_id": 1, "name": "x", "frequency": "Monthly", "next_run": "2026-12-01"}
    unknown = client.post("/schedules", json=body)
    assert unknown.json() == {"error": ["Customer can't be found"]}


@pytest.mark.parametrize("next_run", ["12/01/2026", "2026-12-1", "2026-02-30", "2026-12-01T00:00"])
def test_schedule_next_run_must_be_strict(
    client: httpx.Client, state: SyncroState, next_run: str
) -> None:
    body = {"customer_id": seed_customer(state), "frequency": "Nope", "next_run": next_run}
    response = client.post("/schedules", json=body)
    assert response.status_code == 422
    assert response.json() == {"error": "Sorry, unable to read the date, use this format: Y-m-d"}


def test_schedule_put_is_partial_and_delete_answers_success(
    client: httpx.Client, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    updated = client.put(f"/schedules/{schedule_id}", json={"paused": True})
    assert updated.json()["schedule"]["paused"] is True
    assert updated.json()["schedule"]["frequency"] == "Monthly"
    assert client.delete(f"/schedules/{schedule_id}").json() == {"success": True}
    assert client.get(f"/schedules/{schedule_id}").status_code == 404
    assert state.schedules.get(schedule_id) is None


def test_schedule_list_filters_by_customer(client: httpx.Client, state: SyncroState) -> None:
    customer_id, schedule_id = seed_schedule(state)
    state.schedules.add(seed_customer(state, "Other"))
    listed = client.get("/schedules", params={"customer_id": customer_id}).json()["schedules"]
    assert [s["id"] for s in listed] == [schedule_id]


# -- schedule line items (assumed-shapes §1.7) ------------------------------------------------


def test_line_money_cents_win_and_prices_are_derived(
    client: httpx.Client, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    body = {
        "name": "Seats",
        "quantity": 5,
        "retail_cents": 1999,
        "price_retail": 99,
        "price_cost": "12.345",
    }
    response = client.post(f"/schedules/{schedule_id}/line_items", json=body)
    line = response.json()["schedule_line_item"]
    assert line["id"] >= 88000001
    assert (line["retail_cents"], line["price_retail"]) == (1999, 19.99)
    assert (line["cost_cents"], line["price_cost"]) == (1235, 12.35)
    assert line["quantity"] == "5.0"
    assert line["recurring_type_id"] is None
    assert line["one_time_charge"] is False
    assert line["user_id"] == 3001
    assert line["position"] == 1


@pytest.mark.parametrize(
    ("sent", "shown"), [(5, "5.0"), ("2.5", "2.5"), ("3.50", "3.5"), (0, "0.0")]
)
def test_line_quantity_is_a_decimal_string(
    client: httpx.Client, state: SyncroState, sent: object, shown: str
) -> None:
    _, schedule_id = seed_schedule(state)
    body = {"name": "Seats", "quantity": sent}
    line = client.post(f"/schedules/{schedule_id}/line_items", json=body).json()
    assert line["schedule_line_item"]["quantity"] == shown


def test_line_takes_naming_but_not_prices_from_the_product(
    client: httpx.Client, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    category = state.add_category("Email Security")
    product = state.products.add(
        "PC_PPE-BUSINESS", "Proofpoint Essentials Business", price_retail=3, category_ids=[category]
    )
    body = {"product_id": product["id"], "quantity": 12}
    line = client.post(f"/schedules/{schedule_id}/line_items", json=body).json()
    line = line["schedule_line_item"]
    assert (line["name"], line["description"], line["product_category"]) == (
        "PC_PPE-BUSINESS",
        "Proofpoint Essentials Business",
        "Email Security",
    )
    assert (line["retail_cents"], line["price_retail"]) == (0, 0.0)


def test_line_422_messages(client: httpx.Client, state: SyncroState) -> None:
    _, schedule_id = seed_schedule(state)
    url = f"/schedules/{schedule_id}/line_items"
    response = client.post(url, json={"quantity": "lots", "recurring_type_id": 12})
    assert response.status_code == 422
    assert response.json() == {
        "error": [
            "Name can't be blank",
            "Quantity is not a number",
            "Recurring type is not included in the list",
        ]
    }
    unknown = client.post(url, json={"name": "x", "product_id": 1})
    assert unknown.json() == {"error": ["Product can't be found"]}
    assert state.lines.all(schedule_id) == []


def test_line_put_is_partial_and_delete_answers_success(
    client: httpx.Client, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    line_id = state.lines.add(schedule_id, name="Seats", quantity=4, retail_cents=500)["id"]
    url = f"/schedules/{schedule_id}/line_items/{line_id}"
    updated = client.put(url, json={"quantity": "6"}).json()["schedule_line_item"]
    assert (updated["quantity"], updated["retail_cents"], updated["name"]) == ("6.0", 500, "Seats")
    repriced = client.put(url, json={"price_retail": 7.5}).json()["schedule_line_item"]
    assert repriced["retail_cents"] == 750
    assert client.delete(url).json() == {"success": True}
    assert client.delete(url).status_code == 404
    assert state.lines.get(line_id) is None


def test_line_of_another_schedule_is_404(client: httpx.Client, state: SyncroState) -> None:
    customer_id, schedule_id = seed_schedule(state)
    other = state.schedules.add(customer_id, "Other")["id"]
    line_id = state.lines.add(schedule_id, name="Seats")["id"]
    response = client.put(f"/schedules/{other}/line_items/{line_id}", json={"quantity": 1})
    assert (response.status_code, response.content) == (404, b"")


def test_legacy_add_line_item_behaves_like_line_items(
    client: httpx.Client, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    body = {"name": "Legacy", "quantity": 1, "price_retail": 10}
    line = client.post(f"/schedules/{schedule_id}/add_line_item", json=body).json()
    assert line["schedule_line_item"]["retail_cents"] == 1000


@pytest.mark.parametrize("key", ["schedule_line_item_id", "line_item_id", "id"])
def test_legacy_remove_line_item_accepts_three_keys(
    client: httpx.Client, state: SyncroState, key: str
) -> None:
    _, schedule_id = seed_schedule(state)
    line_id = state.lines.add(schedule_id, name="Seats")["id"]
    url = f"/schedules/{schedule_id}/remove_line_item"
    assert client.post(url, json={key: line_id}).json() == {"success": True}
    assert state.lines.all(schedule_id) == []
    missing = client.post(url, json={key: line_id})
    assert (missing.status_code, missing.content) == (404, b"")
    assert client.post(url, json={}).status_code == 404


# -- invoices (assumed-shapes §1.8) -----------------------------------------------------------


def test_invoice_create_defaults_and_ignores_line_items(
    client: httpx.Client, state: SyncroState
) -> None:
    customer_id = seed_customer(state)
    body = {"customer_id": customer_id, "line_items": [{"item": "x", "price": 5}]}
    invoice = client.post("/invoices", json=body).json()["invoice"]
    assert invoice["id"] >= 2147483601
    assert invoice["number"] == "1001"
    assert invoice["date"] == invoice["due_date"] == state.now().date().isoformat()
    assert (invoice["line_items"], invoice["subtotal"], invoice["total"]) == ([], "0.0", "0.0")
    assert client.get("/invoices/1001").json()["invoice"]["id"] == invoice["id"]
    bad = client.post("/invoices", json={})
    assert (bad.status_code, bad.json()) == (
        422,
        {"success": False, "message": ["Customer can't be blank"]},
    )


def test_invoice_add_line_resolves_the_product(client: httpx.Client, state: SyncroState) -> None:
    invoice_id = state.invoices.add(seed_customer(state))["id"]
    product = state.products.add(
        "PC_PPE-BUSINESS",
        "Proofpoint Essentials Business",
        price_retail=3,
        price_cost="1.5",
        taxable=True,
    )
    body = {"product_id": product["id"], "quantity": 3, "price": 99, "taxable": True}
    response = client.post(f"/invoices/{invoice_id}/line_items", json=body).json()
    line = response["line_item"]
    assert (line["item"], line["name"]) == ("PC_PPE-BUSINESS", "Proofpoint Essentials Business")
    assert (line["quantity"], line["price"], line["cost"], line["taxable"]) == (
        "3.0",
        "3.0",
        "1.5",
        True,
    )
    assert (line["discount_percent"], line["discount_dollars"]) == ("0.0", "0.0")
    invoice = response["invoice"]
    assert (invoice["subtotal"], invoice["total"], invoice["tax"]) == ("9.0", "9.0", "0.0")
    assert invoice["line_items"] == [line]
    assert invoice["payments"] == []
    assert invoice["customer"]["business_name"] == "Acme Dental Group"
    plain = client.post(f"/invoices/{invoice_id}/line_items", json={"item": "Labour", "price": 80})
    assert plain.json()["line_item"]["quantity"] == "1.0"
    zero = client.post(f"/invoices/{invoice_id}/line_items", json={"item": "Free", "quantity": 0})
    assert zero.json()["line_item"]["quantity"] == "0.0"
    empty = client.post(f"/invoices/{invoice_id}/line_items", json={"quantity": 1})
    assert (empty.status_code, empty.json()) == (
        422,
        {"success": False, "message": ["Item can't be blank"]},
    )


def test_invoice_money_types_in_list_and_detail(client: httpx.Client, state: SyncroState) -> None:
    state.invoices.add(seed_customer(state), lines=[{"item": "Labour", "price": "80.50"}])
    listed = client.get("/invoices").json()["invoices"][0]
    assert (listed["subtotal"], listed["balance_due"]) == ("80.5", 80.5)
    detail = client.get(f"/invoices/{listed['id']}").json()["invoice"]
    assert detail["balance_due"] == "80.5"


# -- rate limit (assumed-shapes §1.2) ---------------------------------------------------------


def test_rate_limit_is_a_plain_429_without_retry_after(
    make_sandbox: MakeSandbox, clock: FakeClock
) -> None:
    sandbox = make_sandbox(requests_per_minute=2)
    with http_client(sandbox, TOKEN) as http:
        assert [http.get("/me").status_code for _ in range(2)] == [200, 200]
        limited = http.get("/me")
        assert (limited.status_code, limited.text) == (429, "Retry later")
        assert limited.headers["Content-Type"].startswith("text/plain")
        assert "Retry-After" not in limited.headers
        clock.advance(60.01)
        assert http.get("/me").status_code == 200


def test_rate_limit_window_slides_and_refusals_do_not_count(
    make_sandbox: MakeSandbox, clock: FakeClock
) -> None:
    sandbox = make_sandbox(requests_per_minute=2, retry_after=30)
    with http_client(sandbox, TOKEN) as http:
        http.get("/me")  # t=0
        clock.advance(10)
        http.get("/me")  # t=10
        clock.advance(10)
        refused = [http.get("/me") for _ in range(3)]  # t=20, refused, must not count
        assert {r.status_code for r in refused} == {429}
        assert refused[0].headers["Retry-After"] == "30"
        clock.advance(40.01)  # t=60.01: the t=0 request left the window
        assert http.get("/me").status_code == 200
        assert http.get("/me").status_code == 429
        clock.advance(10)  # t=70.01: the t=10 request left too; t=20 refusals never counted
        assert http.get("/me").status_code == 200


# -- faults and the request log ---------------------------------------------------------------


def test_status_fault_answers_without_processing(
    client: httpx.Client, sandbox: SyncroSandbox, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    sandbox.faults.add(
        kind="status",
        method="POST",
        path=r"/line_items$",
        times=2,
        status=503,
        body={"error": "maintenance"},
        headers={"Retry-After": "1"},
    )
    url = f"/schedules/{schedule_id}/line_items"
    for _ in range(2):
        response = client.post(url, json={"name": "x"})
        assert (response.status_code, response.json()) == (503, {"error": "maintenance"})
        assert response.headers["Retry-After"] == "1"
    assert state.lines.all(schedule_id) == []
    assert client.get(f"/schedules/{schedule_id}").status_code == 200  # GET not matched
    assert client.post(url, json={"name": "x"}).status_code == 200  # used up
    assert [e.fault for e in sandbox.requests.entries("POST")] == ["status", "status", None]
    assert sandbox.faults.pending() == []


def test_delay_fault_lets_the_client_time_out_but_still_applies(
    sandbox: SyncroSandbox, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    sandbox.faults.add(kind="delay", method="POST", seconds=0.5)
    with http_client(sandbox, TOKEN, timeout=0.1) as http, pytest.raises(httpx.ReadTimeout):
        http.post(f"/schedules/{schedule_id}/line_items", json={"name": "slow"})
    wait_until(lambda: len(state.lines.all(schedule_id)) == 1)
    wait_until(lambda: sandbox.requests.count("POST") == 1)
    assert sandbox.requests.entries("POST")[0].fault == "delay"


def test_reset_fault_drops_the_request(
    client: httpx.Client, sandbox: SyncroSandbox, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    sandbox.faults.add(kind="reset", method="POST", path=r"^/api/v1/schedules/\d+/line_items$")
    with pytest.raises(httpx.TransportError):
        client.post(f"/schedules/{schedule_id}/line_items", json={"name": "lost"})
    assert state.lines.all(schedule_id) == []
    entry = sandbox.requests.entries("POST")[0]
    assert (entry.status, entry.fault) == (None, "reset")
    assert client.get("/me").status_code == 200  # the server carries on


def test_reset_after_fault_applies_but_loses_the_answer(
    client: httpx.Client, sandbox: SyncroSandbox, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    sandbox.faults.add(kind="reset_after", method="POST", path=r"/line_items$")
    with pytest.raises(httpx.TransportError):
        client.post(f"/schedules/{schedule_id}/line_items", json={"name": "applied"})
    assert [line["name"] for line in state.lines.all(schedule_id)] == ["applied"]
    entry = sandbox.requests.entries("POST")[0]
    assert (entry.status, entry.fault) == (200, "reset_after")


def test_faults_match_in_order(client: httpx.Client, sandbox: SyncroSandbox) -> None:
    sandbox.faults.add(kind="status", path="/me", status=500)
    sandbox.faults.add(kind="status", path="/me", status=502, times=None)
    assert [client.get("/me").status_code for _ in range(3)] == [500, 502, 502]
    sandbox.faults.clear()
    assert client.get("/me").status_code == 200


def test_request_log_records_reads_and_writes(
    client: httpx.Client, sandbox: SyncroSandbox, state: SyncroState
) -> None:
    _, schedule_id = seed_schedule(state)
    client.get("/schedules", params={"page": "2"})
    client.post(f"/schedules/{schedule_id}/line_items", json={"name": "x"})
    client.get("/customers/1")
    entries = sandbox.requests.entries()
    assert [(e.method, e.path, e.status) for e in entries] == [
        ("GET", "/api/v1/schedules", 200),
        ("POST", f"/api/v1/schedules/{schedule_id}/line_items", 200),
        ("GET", "/api/v1/customers/1", 404),
    ]
    assert entries[0].query == {"page": "2"}
    assert entries[0].client_ip == "127.0.0.1"
    assert sandbox.requests.count("GET") == 2
    assert sandbox.requests.count("POST", r"/line_items$") == 1
    sandbox.requests.clear()
    assert len(sandbox.requests) == 0


# -- transport ----------------------------------------------------------------------------------


def test_keep_alive_with_correct_content_length(sandbox: SyncroSandbox) -> None:
    request = (
        "GET /api/v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n"
        f"GET /api/v1/me?api_key={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=2) as raw:
        raw.sendall(request.encode())
        received = b""
        while b'"permissions"' not in received or not received.endswith(b"}}"):
            chunk = raw.recv(65536)
            assert chunk, "server closed a keep-alive connection"
            received += chunk
    first, second = received.split(b"\r\n\r\n", 1)
    assert first.startswith(b"HTTP/1.1 404")
    assert b"Content-Length: 0" in first
    assert second.startswith(b"HTTP/1.1 200")


def test_concurrent_clients_get_distinct_lines(client: httpx.Client, state: SyncroState) -> None:
    _, schedule_id = seed_schedule(state)

    def add(n: int) -> int:
        body = {"name": f"line {n}", "quantity": n}
        response = client.post(f"/schedules/{schedule_id}/line_items", json=body)
        return int(response.json()["schedule_line_item"]["id"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(add, range(40)))
    assert len(set(ids)) == 40
    positions = sorted(line["position"] for line in state.lines.all(schedule_id))
    assert positions == list(range(1, 41))


def test_stop_is_clean_and_idempotent(state: SyncroState) -> None:
    sandbox = SyncroSandbox(state).start()
    with http_client(sandbox) as http:
        http.get("/me")
        sandbox.stop()
        sandbox.stop()
        with pytest.raises(httpx.TransportError):
            http.get("/me")


# -- demo data --------------------------------------------------------------------------------


def test_demo_state_is_a_plausible_deterministic_msp() -> None:
    state, again = demo_syncro_state(), demo_syncro_state()
    customers = state.customers.all()
    assert len(customers) == 8
    assert [c["business_name"] for c in customers] == [
        c["business_name"] for c in again.customers.all()
    ]
    per_customer = {c["business_name"]: len(state.schedules.all(c["id"])) for c in customers}
    assert sorted(per_customer.values()) == [0, 1, 1, 1, 1, 1, 1, 2]
    assert all(s["frequency"] == "Monthly" for s in state.schedules.all())
    hand_made = [p for p in state.products.all() if p["name"] == "PC_PPE-BUSINESS"]
    assert len(hand_made) == 1
    assert hand_made[0]["product_skus"] == []
    first = state.schedules.get(state.schedules.ids()[0])
    assert first is not None
    assert first["lines"][0]["name"] == "Managed Services - Per Device"
    assert first["lines"][0]["price_retail"] == 45.0
    next_month = (state.now().date().replace(day=1) + timedelta(days=32)).replace(day=1)
    assert date.fromisoformat(first["next_run"]) == next_month
