// The OpenAPI document the gateway serves at /docs/json is generated from the route schemas: it
// must be a valid OpenAPI 3 document, name every route of api-v1.md, and /docs must serve the page
// to read and try it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Validator } from '@seriousme/openapi-schema-validator';
import { startTestSystem } from '../support/system.js';
import type { TestSystem } from '../support/system.js';

/** Every `METHOD /path` of the contract (docs/api-v1.md), but the /docs pages themselves. */
function contractRoutes(): string[] {
  const text = readFileSync(new URL('../../../docs/api-v1.md', import.meta.url), 'utf8');
  const routes = new Set<string>();
  for (const m of text.matchAll(/`(GET|POST|PUT|DELETE|PATCH) (\/[^`?\s]*)/g)) {
    if (!(m[2] as string).startsWith('/docs')) routes.add(`${m[1]} ${m[2]}`);
  }
  return [...routes];
}

describe('OpenAPI', () => {
  let t: TestSystem;
  before(async () => {
    t = await startTestSystem();
  });
  after(async () => {
    await t.stop();
  });

  it('serves a valid OpenAPI 3 document with every route of api-v1.md', async () => {
    const res = await fetch(`${t.url}/docs/json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, object> };
    assert.match(doc.openapi, /^3\./);
    const result = await new Validator().validate(doc);
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));

    const routes = contractRoutes();
    assert.ok(routes.length >= 12, `only ${routes.length} routes read from api-v1.md`);
    const served = new Set(
      Object.entries(doc.paths).flatMap(([path, ops]) =>
        Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`),
      ),
    );
    for (const route of [...routes, 'GET /ready']) {
      assert.ok(served.has(route), `${route} is not in /docs/json`);
    }
  });

  it('marks as needing a key exactly the routes that answer 401 without one', async () => {
    const doc = (await (await fetch(`${t.url}/docs/json`)).json()) as {
      security?: unknown[];
      paths: Record<string, Record<string, { security?: unknown[] }>>;
    };
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (path.startsWith('/docs')) continue;
      const url = path
        .replace('{symbol}', 'AAPL')
        .replace('{id}', '0190f0b0-0000-7000-8000-000000000000');
      for (const [method, op] of Object.entries(ops)) {
        const needsKey = (op.security ?? doc.security ?? []).length > 0;
        const r = await t.api(
          undefined,
          method.toUpperCase(),
          url,
          method === 'get' ? undefined : {},
        );
        assert.equal(r.status === 401, needsKey, `${method.toUpperCase()} ${path}: ${r.status}`);
        checked++;
      }
    }
    assert.ok(checked >= 12, `only ${checked} routes`);
  });

  it('serves the page to read and try it at /docs', async () => {
    const res = await fetch(`${t.url}/docs`, { redirect: 'follow' });
    assert.equal(res.status, 200);
    assert.match(await res.text(), /swagger-ui/i);
  });
});
