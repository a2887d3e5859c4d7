"""A generated consent view: patients, grants, parents and the decision cases."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import date, timedelta

from bench.actors import person_caller
from bench.consent.world import (
    ACTOR_MIX,
    AUTHOR_KIND,
    CATEGORIES,
    CATEGORY,
    GRANT_KINDS,
    ORG_POOL,
    RECIPIENT_KIND,
    RECIPIENT_SHARE,
    SCOPES,
    Population,
    org_caller,
)
from bench.crud import (
    Identifiers,
)
from shared.access.decision import (
    AccessContext,
    ResourceFacts,
)
from shared.access.state import Grant, HiddenFromParents, PatientAccessState
from shared.clock import today
from shared.codes import (
    DataCategory,
)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _grant(rng: random.Random, orgs: Sequence[str], day: date) -> Grant:
    roll = rng.random()
    if roll < 0.7:  # active until some day
        start, end = day - timedelta(rng.randint(0, 700)), day + timedelta(rng.randint(30, 700))
    elif roll < 0.9:  # active, open-ended
        start, end = day - timedelta(rng.randint(0, 700)), None
    else:  # expired
        end = day - timedelta(rng.randint(1, 300))
        start = end - timedelta(rng.randint(30, 400))
    roll = rng.random()
    purposes = ["TREAT"] if roll < 0.2 else ["HRESCH"] if roll < 0.25 else []
    return Grant(
        consent=f"Consent/{_uuid(rng)}",
        categories=rng.sample(CATEGORIES, rng.randint(1, 3)),
        orgs=rng.sample(orgs, rng.randint(1, 2)),
        kinds=[rng.choice(GRANT_KINDS)] if rng.random() < 0.15 else [],
        purposes_of_use=purposes,
        start=start,
        end=end,
    )


def generate_population(patients: int, rng: random.Random) -> Population:
    """N patients' access states: 1-3 grants each (to 1-2 of ORG_POOL organisations, some
    also to a kind, some for one purpose only, 10 % expired), one or two parents (whose
    authority has ended for 10 %, is unknown for 10 %), 10 % with information hidden from
    the parents; RECIPIENT_SHARE of them with a journal consent to the reading
    organisation, among them the first (the target of the read and search phases)."""
    ids = Identifiers(rng.randrange(2**32))
    orgs = [ids.orgnr() for _ in range(ORG_POOL)]
    unrelated = [ids.orgnr() for _ in range(50)]
    recipient = ids.orgnr()
    day = today()
    share = max(1, round(patients * RECIPIENT_SHARE))
    chosen = {0, *rng.sample(range(1, patients), share - 1)}
    states = []
    for index in range(patients):
        patient = _uuid(rng)
        grants = [_grant(rng, orgs, day) for _ in range(rng.choice((1, 1, 2, 2, 2, 3)))]
        if index in chosen:
            grants.append(
                Grant(
                    consent=f"Consent/{_uuid(rng)}",
                    categories=[CATEGORY, DataCategory.REFERRAL.value],
                    orgs=[recipient],
                    start=day - timedelta(rng.randint(1, 300)),
                    end=day + timedelta(rng.randint(30, 365)),
                )
            )
        roll = rng.random()
        until = (
            day + timedelta(rng.randint(1, 16 * 365))
            if roll < 0.8
            else day - timedelta(rng.randint(1, 700))
            if roll < 0.9
            else None
        )
        hidden = []
        if rng.random() < 0.1:
            hidden.append(
                HiddenFromParents(
                    consent=f"Consent/{_uuid(rng)}", orgs=[rng.choice(orgs)], categories=[CATEGORY]
                )
            )
        states.append(
            PatientAccessState(
                patient=patient,
                parents=[f"RelatedPerson/{_uuid(rng)}" for _ in range(rng.choice((1, 2, 2)))],
                parents_until=until,
                grants=grants,
                hidden_from_parents=hidden,
            )
        )
    return Population(
        states=states,
        orgs=orgs,
        unrelated=unrelated,
        recipient=recipient,
        recipient_patients=sorted(states[i].patient for i in chosen),
        day=day,
    )


Case = tuple[PatientAccessState, ResourceFacts, AccessContext]


def decision_cases(population: Population, rng: random.Random, count: int) -> list[Case]:
    """`count` decisions in the ACTOR_MIX: a recipient named by one of the patient's grants
    (by organisation or kind), an organisation no grant names, a parent, the author."""
    actors = [name for name, share in ACTOR_MIX for _ in range(share)]
    cases = []
    for _ in range(count):
        state = rng.choice(population.states)
        actor = rng.choice(actors)
        author = rng.choice(population.orgs)
        category = rng.choice(CATEGORIES)
        if actor == "recipient":
            grant = rng.choice(state.grants)
            category = rng.choice(grant.categories)
            if grant.kinds and rng.random() < 0.5:
                caller = org_caller(rng.choice(population.unrelated), grant.kinds[0])
            else:
                caller = org_caller(rng.choice(grant.orgs), AUTHOR_KIND)
        elif actor == "unrelated":
            caller = org_caller(rng.choice(population.unrelated), RECIPIENT_KIND)
        elif actor == "parent":
            caller = person_caller(rng.choice(state.parents), SCOPES)
            if state.hidden_from_parents and rng.random() < 0.5:
                author = state.hidden_from_parents[0].orgs[0]
                category = CATEGORY
        else:
            caller = org_caller(author, AUTHOR_KIND)
        facts = ResourceFacts(f"DocumentReference/{_uuid(rng)}", state.patient, category, author)
        context = AccessContext(caller=caller, day=population.day)
        cases.append((state, facts, context))
    return cases
