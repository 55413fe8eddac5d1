"""The HTTP contract every process shares: one error shape, request ids, Swagger, CORS."""

from fastapi import APIRouter
from pydantic import BaseModel

from nespay.apps import api, jobs, webhook
from nespay.apps.common import build_app
from tests.fixtures.app import app_client
from tests.fixtures.database import make_settings


class Thing(BaseModel):
    name: str
    amount: int


probe = APIRouter()


@probe.post("/things")
async def create_thing(thing: Thing) -> Thing:
    return thing


@probe.get("/boom")
async def boom() -> None:
    raise RuntimeError("database password is hunter2")


def probe_app(settings):
    return build_app("api", settings, routers=[("/api/v1", probe)])


def assert_error_shape(response, status, code):
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


async def test_unknown_route_is_404_in_the_error_shape(database_url):
    async with app_client(api.create_app, make_settings(database_url)) as (_, client):
        response = await client.get("/api/v1/nothing-here")
    assert_error_shape(response, 404, "not_found")


async def test_wrong_method_is_405_in_the_error_shape(database_url):
    async with app_client(api.create_app, make_settings(database_url)) as (_, client):
        response = await client.post("/api/v1/health")
    error = assert_error_shape(response, 405, "method_not_allowed")
    assert "POST" in error["message"]
    assert response.headers["allow"] == "GET"


async def test_a_405_allows_every_method_the_path_answers(database_url):
    """RFC 9110: `Allow` names every method of the path, not only the first route's (GET and
    POST /invoices are two routes; Starlette alone answered `allow: POST`)."""
    async with app_client(api.create_app, make_settings(database_url)) as (_, client):
        invoices = await client.delete("/api/v1/invoices")
        endpoint = await client.put("/api/v1/webhook-endpoints/wh_x")
    assert_error_shape(invoices, 405, "method_not_allowed")
    assert invoices.headers["allow"] == "GET, POST"
    assert endpoint.headers["allow"] == "DELETE, GET, PATCH"


async def test_validation_error_lists_the_offending_fields(database_url):
    async with app_client(probe_app, make_settings(database_url)) as (_, client):
        response = await client.post("/api/v1/things", json={"name": "x", "amount": "lots"})
        malformed = await client.post(
            "/api/v1/things", content=b"{not json", headers={"content-type": "application/json"}
        )
    error = assert_error_shape(response, 422, "validation_error")
    assert [field["field"] for field in error["fields"]] == ["amount"]
    assert_error_shape(malformed, 422, "validation_error")


async def test_a_body_that_is_not_utf8_is_refused_like_malformed_json(database_url):
    """FastAPI answers a 400 no route documents for a JSON body it cannot decode; Nespay
    answers the same 422 as for malformed JSON, naming the body."""
    async with app_client(probe_app, make_settings(database_url)) as (_, client):
        response = await client.post(
            "/api/v1/things",
            content='{"name": "caf\u00e9", "amount": 1}'.encode("latin-1"),
            headers={"content-type": "application/json"},
        )
        things = await client.get("/api/v1/things")
    error = assert_error_shape(response, 422, "validation_error")
    assert error["fields"] == [
        {
            "field": "body",
            "message": "the body could not be read: send JSON encoded as UTF-8",
            "type": "json_invalid",
        }
    ]
    assert things.headers["allow"] == "POST"


async def test_unhandled_exception_is_500_without_leaking_detail(database_url):
    async with app_client(probe_app, make_settings(database_url)) as (_, client):
        response = await client.get("/api/v1/boom")
    error = assert_error_shape(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in error["message"]


async def test_request_id_is_returned_and_a_wellformed_incoming_one_is_kept(database_url):
    async with app_client(api.create_app, make_settings(database_url)) as (_, client):
        fresh = await client.get("/api/v1/health")
        kept = await client.get("/api/v1/health", headers={"x-request-id": "req-abc-12345"})
        refused = await client.get("/api/v1/health", headers={"x-request-id": "bad id\twith tab"})
    assert len(fresh.headers["x-request-id"]) == 32
    assert kept.headers["x-request-id"] == "req-abc-12345"
    assert refused.headers["x-request-id"] != "bad id\twith tab"


async def test_swagger_is_served_at_api_only_when_enabled(database_url):
    on = make_settings(database_url, swagger_enable=True)
    for factory in (api.create_app, webhook.create_app):
        async with app_client(factory, on) as (_, client):
            page = await client.get("/api")
            spec = await client.get("/api-json")
        assert page.status_code == 200 and "swagger-ui" in page.text
        assert spec.json()["openapi"].startswith("3.")
        assert "/api/v1/health" in spec.json()["paths"]
    async with app_client(api.create_app, make_settings(database_url)) as (_, client):
        assert (await client.get("/api")).status_code == 404
        assert (await client.get("/api-json")).status_code == 404


async def test_cors_allows_only_configured_origins(database_url):
    settings = make_settings(database_url, enable_cors_urls=["https://shop.example"])
    async with app_client(api.create_app, settings) as (_, client):
        allowed = await client.options(
            "/api/v1/health",
            headers={"origin": "https://shop.example", "access-control-request-method": "GET"},
        )
        other = await client.get("/api/v1/health", headers={"origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in other.headers


async def test_prefixes_follow_settings(database_url):
    settings = make_settings(database_url, public_api_prefix="pay/v2")
    async with app_client(jobs.create_app, settings) as (_, client):
        assert (await client.get("/pay/v2/health")).status_code == 200
        assert (await client.get("/pay/v2/jobs")).status_code == 200
        assert (await client.get("/api/v1/health")).status_code == 404


async def test_every_operation_documents_what_its_dependencies_can_answer(database_url):
    """The OpenAPI document lists, in the error shape, the statuses a route's dependencies
    answer: credentials (401, 403, 503), rate limits (429), an unknown id in the path (404),
    unstorable text (422); and the credentials each route takes."""
    settings = make_settings(database_url, swagger_enable=True)
    async with app_client(api.create_app, settings) as (_, client):
        spec = (await client.get("/api-json")).json()
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    cancel = spec["paths"]["/api/v1/invoices/{invoice_id}/cancel"]["post"]
    assert {"401", "403", "404", "422", "429", "503"} <= set(cancel["responses"])
    assert cancel["responses"]["404"]["content"]["application/json"]["schema"] == error
    assert cancel["security"] == [{"ApiKey": []}, {"CognitoToken": []}]
    listing = spec["paths"]["/api/backoffice/v1/invoices"]["get"]
    assert {"401", "403", "429"} <= set(listing["responses"])
    assert listing["security"] == [{"CognitoToken": []}]
    health = spec["paths"]["/api/v1/health"]["get"]
    assert "401" not in health["responses"] and "security" not in health
    assert spec["components"]["securitySchemes"]["ApiKey"]["name"] == "X-Api-Key"
    assert "ErrorResponse" in spec["components"]["schemas"]
    created = spec["paths"]["/api/v1/merchants"]["post"]["responses"]
    assert "merchant_exists" in created["409"]["description"]


async def test_amounts_scopes_and_event_types_are_constrained_in_the_schema(database_url):
    """A client generator or fuzzer that follows the schema makes only amounts, scopes and
    event types the API takes."""
    import re

    from nespay.kit.money import AMOUNT_PATTERN, check_amount_text

    settings = make_settings(database_url, swagger_enable=True)
    async with app_client(api.create_app, settings) as (_, client):
        schemas = (await client.get("/api-json")).json()["components"]["schemas"]
    assert schemas["InvoiceCreate"]["properties"]["amount"]["pattern"] == AMOUNT_PATTERN
    assert "invoices:write" in schemas["ApiKeyCreate"]["properties"]["scopes"]["items"]["enum"]
    events = schemas["WebhookEndpointCreate"]["properties"]["events"]["items"]["enum"]
    assert "*" in events and "invoice.paid" in events
    for text in ("10.50", "1", "0.01", "999999999999999.9"):
        assert re.fullmatch(AMOUNT_PATTERN, text) and check_amount_text(text) == text
    for text in ("0", "0.00", "-1", "010", "1e3", "1000000000000000", "1.", ".5", " 1"):
        assert not re.fullmatch(AMOUNT_PATTERN, text)
        try:
            check_amount_text(text)
        except ValueError:
            continue
        raise AssertionError(f"{text!r} matches no pattern but was accepted")
