// Drives a running barnebro stack with fhir-kit-client, as a JavaScript EPJ integration
// would, and prints what it saw as one JSON object on standard output.
//
//   node client.mjs <scenario>
//
// Environment: BARNEBRO_FHIR_BASE (the FHIR base URL), BARNEBRO_TOKEN (the caller's bearer
// token), BARNEBRO_OTHER_TOKEN (an organisation with no relation to the child), and per
// scenario:
//   child     BARNEBRO_FNR (a fødselsnummer for a new child), BARNEBRO_GP (its GP's
//             Organization id): create, read, search, update and delete a Patient, page
//             through the register, and be refused by the other organisation.
//   task      BARNEBRO_TASK_ID: read a referral's Task, move it with PUT and If-Match.
//   patch     BARNEBRO_TASK_ID: move a referral's Task with a JSON Patch and If-Match.
import { Client } from 'fhir-kit-client';

const FNR_SYSTEM = 'urn:oid:2.16.578.1.12.4.1.4.1';

function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function client(token) {
  return new Client({ baseUrl: env('BARNEBRO_FHIR_BASE'), bearerToken: token });
}

/** What a refused request looked like to fhir-kit-client: its status and outcome. */
async function refusal(request) {
  try {
    await request();
  } catch (error) {
    if (!error.response) throw error;
    const outcome = error.response.data;
    return {
      status: error.response.status,
      resourceType: outcome.resourceType,
      diagnostics: (outcome.issue ?? []).map((issue) => issue.diagnostics),
    };
  }
  return { status: 'allowed' };
}

function ids(bundle) {
  return (bundle.entry ?? [])
    .filter((entry) => entry.search?.mode !== 'outcome')
    .map((entry) => entry.resource.id);
}

async function child() {
  const fhir = client(env('BARNEBRO_TOKEN'));
  const other = client(env('BARNEBRO_OTHER_TOKEN'));
  const fnr = env('BARNEBRO_FNR');
  const created = await fhir.create({
    resourceType: 'Patient',
    body: {
      resourceType: 'Patient',
      identifier: [{ system: FNR_SYSTEM, value: fnr }],
      name: [{ family: 'Nordmann', given: ['Emma'] }],
      generalPractitioner: [{ reference: `Organization/${env('BARNEBRO_GP')}` }],
    },
  });
  const read = await fhir.read({ resourceType: 'Patient', id: created.id });
  const found = await fhir.search({
    resourceType: 'Patient',
    searchParams: { identifier: `${FNR_SYSTEM}|${fnr}` },
  });
  const gp = await fhir.resolve({ reference: read.generalPractitioner[0].reference });
  const updated = await fhir.update({
    resourceType: 'Patient',
    id: created.id,
    body: { ...read, name: [{ family: 'Nordmann', given: ['Emma', 'Sofie'] }] },
    options: { headers: { 'If-Match': `W/"${read.meta.versionId}"` } },
  });
  const stale = await refusal(() =>
    fhir.update({
      resourceType: 'Patient',
      id: created.id,
      body: read,
      options: { headers: { 'If-Match': `W/"${read.meta.versionId}"` } },
    }),
  );
  const hidden = await refusal(() => other.read({ resourceType: 'Patient', id: created.id }));
  const missing = await refusal(() => other.read({ resourceType: 'Patient', id: 'no-such-child' }));
  const hiddenSearch = await other.search({
    resourceType: 'Patient',
    searchParams: { _id: created.id },
  });
  const forbidden = await refusal(() =>
    other.create({ resourceType: 'Patient', body: { resourceType: 'Patient' } }),
  );

  const pages = [];
  let page = await fhir.search({ resourceType: 'Organization', searchParams: { _count: 3 } });
  while (page) {
    pages.push(ids(page));
    page = await fhir.nextPage({ bundle: page });
  }
  const counted = await fhir.search({
    resourceType: 'Organization',
    searchParams: { _summary: 'count' },
  });

  await fhir.delete({ resourceType: 'Patient', id: created.id });
  const gone = await refusal(() => fhir.read({ resourceType: 'Patient', id: created.id }));
  return {
    created: { id: created.id, version: created.meta.versionId },
    read: { id: read.id, fnr: read.identifier[0].value },
    found: ids(found),
    gp: { resourceType: gp.resourceType, id: gp.id },
    updated: { version: updated.meta.versionId, given: updated.name[0].given },
    stale,
    hidden,
    missing,
    hiddenSearch: ids(hiddenSearch),
    forbidden,
    organisationPages: pages,
    organisationCount: counted.total,
    gone,
  };
}

async function readTask(fhir) {
  return fhir.read({ resourceType: 'Task', id: env('BARNEBRO_TASK_ID') });
}

async function task() {
  const fhir = client(env('BARNEBRO_TOKEN'));
  const other = client(env('BARNEBRO_OTHER_TOKEN'));
  const read = await readTask(fhir);
  const focus = await fhir.resolve({ reference: read.focus.reference });
  const { businessStatus: _serverKept, ...changed } = read;
  const moved = await fhir.update({
    resourceType: 'Task',
    id: read.id,
    body: { ...changed, status: 'received' },
    options: { headers: { 'If-Match': `W/"${read.meta.versionId}"` } },
  });
  const unlocked = await refusal(() =>
    fhir.update({ resourceType: 'Task', id: read.id, body: { ...moved, status: 'accepted' } }),
  );
  const hidden = await refusal(() => other.read({ resourceType: 'Task', id: read.id }));
  return {
    read: { status: read.status, version: read.meta.versionId },
    focus: { resourceType: focus.resourceType, id: focus.id },
    moved: {
      status: moved.status,
      version: moved.meta.versionId,
      businessStatus: moved.businessStatus?.coding?.[0]?.code,
    },
    unlocked,
    hidden,
  };
}

async function patch() {
  const fhir = client(env('BARNEBRO_TOKEN'));
  const read = await readTask(fhir);
  const patched = await fhir.patch({
    resourceType: 'Task',
    id: read.id,
    jsonPatch: [{ op: 'replace', path: '/status', value: 'received' }],
    options: { headers: { 'If-Match': `W/"${read.meta.versionId}"` } },
  });
  return {
    patched: {
      status: patched.status,
      version: patched.meta.versionId,
      businessStatus: patched.businessStatus?.coding?.[0]?.code,
    },
  };
}

const scenarios = { child, task, patch };
const scenario = scenarios[process.argv[2]];
if (!scenario) {
  console.error(`usage: node client.mjs ${Object.keys(scenarios).join('|')}`);
  process.exit(2);
}
try {
  console.log(JSON.stringify(await scenario()));
} catch (error) {
  const response = error.response ? ` ${JSON.stringify(error.response.data)}` : '';
  console.error(`${error.stack ?? error}${response}`);
  process.exit(1);
}
