"""`_summary` and `_elements` on history, instance and type, with the same meaning as on a
search; `_summary=count` answers the total alone, counting only what the caller may see."""

from __future__ import annotations

from typing import Any

from tests.consent_world import BVT, GP, World
from tests.journal_service import note
from tests.support import Reply, Stack
from tests.test_fhir_subsets import practitioner, tagged


def versions(reply: Reply) -> list[dict[str, Any]]:
    assert reply.status == 200, reply.body
    bundle = reply.json()
    assert bundle["type"] == "history", bundle
    return [e["resource"] for e in bundle.get("entry", []) if "resource" in e]


async def test_history_takes_summary_and_elements(stack: Stack) -> None:
    created = await stack.call("POST", "Practitioner", practitioner("Historikk"))
    assert created.status == 201, created.body
    path = f"Practitioner/{created.json()['id']}"
    for gender in ("male", "other"):
        current = (await stack.call("GET", path)).json()
        assert (await stack.call("PUT", path, {**current, "gender": gender})).status == 200

    counted = await stack.call("GET", f"{path}/_history?_summary=count")
    assert counted.status == 200, counted.body
    bundle = counted.json()
    assert (bundle["type"], bundle["total"]) == ("history", 3)
    assert not bundle.get("entry")
    assert "_summary=count" in bundle["link"][0]["url"]

    summary = versions(await stack.call("GET", f"{path}/_history?_summary=true"))
    assert [v["meta"]["versionId"] for v in summary] == ["3", "2", "1"]
    assert all(tagged(v) for v in summary)
    assert all(set(v) == {"resourceType", "id", "meta", "name", "gender"} for v in summary)
    assert [v["gender"] for v in summary] == ["other", "male", "female"]
    picked = versions(await stack.call("GET", f"{path}/_history?_elements=communication"))
    assert all(set(v) == {"resourceType", "id", "meta", "communication"} for v in picked)
    data = versions(await stack.call("GET", f"{path}/_history?_summary=data"))
    assert all("text" not in v and tagged(v) for v in data)
    whole = versions(await stack.call("GET", f"{path}/_history"))
    assert all("text" in v and not tagged(v) for v in whole)

    paged = await stack.call("GET", f"{path}/_history?_elements=gender&_count=2")
    following = next(x["url"] for x in paged.json()["link"] if x["relation"] == "next")
    assert "_elements=gender" in following
    rest = versions(await stack.call("GET", following))
    assert [set(v) for v in rest] == [{"resourceType", "id", "meta", "gender"}]

    typed = await stack.call("GET", "Practitioner/_history?_summary=count")
    assert typed.status == 200 and typed.json()["total"] >= 3, typed.body
    typed_summary = versions(await stack.call("GET", "Practitioner/_history?_summary=text"))
    assert typed_summary and all(tagged(v) and "name" not in v for v in typed_summary)

    for wrong in ("_summary=maybe", "_elements=nosuch", "_summary=true&_elements=name"):
        refused = await stack.call("GET", f"{path}/_history?{wrong}")
        assert refused.status == 400, (wrong, refused.body)


async def test_a_history_count_counts_only_what_the_caller_may_see(world: World) -> None:
    child = await world.child(9)
    own = await world.fhir("POST", "DocumentReference", note(child.id, "Fastlegens"), by=GP)
    assert own.status == 201, own.body
    hidden = await world.note(child, "Bekymring", by=BVT)

    async def total(path: str, by: str) -> int:
        reply = await world.fhir("GET", f"{path}?_summary=count", by=by)
        assert reply.status == 200, reply.body
        assert not reply.json().get("entry")
        found: int = reply.json()["total"]
        return found

    gp_total = await total("DocumentReference/_history", GP)
    gp_versions = versions(await world.fhir("GET", "DocumentReference/_history", by=GP))
    assert gp_total == len(gp_versions)
    assert hidden.split("/")[1] not in {v["id"] for v in gp_versions}
    assert await total(f"{hidden}/_history", BVT) == 1
    # The hidden note's history answers as a missing one's, counted or not.
    for asked in ("", "?_summary=count", "?_summary=true"):
        refused = await world.fhir("GET", f"{hidden}/_history{asked}", by=GP)
        missing = await world.fhir("GET", f"DocumentReference/no-such-note/_history{asked}", by=GP)
        assert refused.status == missing.status == 404, (asked, refused.body)
        secret = hidden.split("/")[1].encode()
        assert refused.body.replace(secret, b"x") == missing.body.replace(b"no-such-note", b"x")
