"""`GET /healthz` reports each component: 200 when all are ok, 503 when one is not."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pik.http import create_app
from pik.kit import Kit


class States:
    def __init__(self, states: dict[str, str]) -> None:
        self.current = states

    def states(self) -> dict[str, str]:
        return dict(self.current)


def test_healthz_is_degraded_while_a_tap_is_not_ok(kit: Kit) -> None:
    taps = States({"tap:orders": "restarting", "tap:payments": "ok"})
    app = create_app(kit, health=taps)
    with TestClient(app) as client:
        down = client.get("/healthz")
        taps.current["tap:orders"] = "ok"
        up = client.get("/healthz")
    app.state.committer.close()

    assert down.status_code == 503
    assert down.json() == {
        "status": "degraded",
        "dry_run": False,
        "components": {"api": "ok", "tap:orders": "restarting", "tap:payments": "ok"},
    }
    assert up.status_code == 200
    assert up.json()["status"] == "ok"


def test_healthz_without_other_components_is_the_api_alone(kit: Kit) -> None:
    app = create_app(kit)
    with TestClient(app) as client:
        answer = client.get("/healthz")
    app.state.committer.close()
    assert (answer.status_code, answer.json()["components"]) == (200, {"api": "ok"})
