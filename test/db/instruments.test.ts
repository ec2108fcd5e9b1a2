import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import {
  getInstrument,
  listInstruments,
  normaliseSize,
  seedDefaultInstruments,
  upsertInstrument,
} from '../../src/db/instruments.js';
import { freshDatabase } from '../support/services.js';
import type { TestDatabase } from '../support/services.js';

describe('instruments', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await freshDatabase();
  });
  afterEach(async () => {
    await db.drop();
  });

  it('seeds the default set only into an empty table', async () => {
    assert.equal(await seedDefaultInstruments(db.sql), 5);
    assert.equal(await seedDefaultInstruments(db.sql), 0);
    assert.deepEqual(await listInstruments(db.sql), [
      { symbol: 'AAPL', tick_size: '0.01', lot_size: '1', market_protection_bps: 0 },
      { symbol: 'AMZN', tick_size: '0.01', lot_size: '1', market_protection_bps: 0 },
      { symbol: 'GOOG', tick_size: '0.01', lot_size: '1', market_protection_bps: 0 },
      { symbol: 'MSFT', tick_size: '0.01', lot_size: '1', market_protection_bps: 0 },
      { symbol: 'TSLA', tick_size: '0.01', lot_size: '1', market_protection_bps: 0 },
    ]);
  });

  it('does not seed over instruments an operator already listed', async () => {
    await upsertInstrument(db.sql, { symbol: 'BTC-USD', tick_size: '0.5', lot_size: '0.001' });
    assert.equal(await seedDefaultInstruments(db.sql), 0);
    assert.deepEqual(await listInstruments(db.sql), [
      { symbol: 'BTC-USD', tick_size: '0.5', lot_size: '0.001', market_protection_bps: 0 },
    ]);
  });

  it('creates, then confirms the same sizes however they are written, normalised', async () => {
    assert.deepEqual(
      await upsertInstrument(db.sql, { symbol: 'X.Y', tick_size: '0.010', lot_size: '1.0' }),
      {
        kind: 'ok',
        created: true,
        updated: false,
        instrument: { symbol: 'X.Y', tick_size: '0.01', lot_size: '1', market_protection_bps: 0 },
      },
    );
    assert.deepEqual(
      await upsertInstrument(db.sql, { symbol: 'X.Y', tick_size: '0.01', lot_size: '1' }),
      {
        kind: 'ok',
        created: false,
        updated: false,
        instrument: { symbol: 'X.Y', tick_size: '0.01', lot_size: '1', market_protection_bps: 0 },
      },
    );
    assert.deepEqual(
      await upsertInstrument(db.sql, { symbol: 'X.Y', tick_size: '0.0100', lot_size: '1.000' }),
      {
        kind: 'ok',
        created: false,
        updated: false,
        instrument: { symbol: 'X.Y', tick_size: '0.01', lot_size: '1', market_protection_bps: 0 },
      },
    );
    const [raw] = await db.sql<{ t: string; l: string }[]>`
      SELECT tick_size::text AS t, lot_size::text AS l FROM instruments`;
    assert.deepEqual({ ...raw }, { t: '0.01', l: '1' });
  });

  it('refuses to change the sizes of an existing symbol, and changes nothing', async () => {
    await upsertInstrument(db.sql, { symbol: 'ABC', tick_size: '0.01', lot_size: '1' });
    const existing = { symbol: 'ABC', tick_size: '0.01', lot_size: '1', market_protection_bps: 0 };
    assert.deepEqual(
      await upsertInstrument(db.sql, { symbol: 'ABC', tick_size: '0.05', lot_size: '1' }),
      { kind: 'conflict', existing },
    );
    assert.deepEqual(
      await upsertInstrument(db.sql, { symbol: 'ABC', tick_size: '0.01', lot_size: '10' }),
      { kind: 'conflict', existing },
    );
    assert.deepEqual(await getInstrument(db.sql, 'ABC'), existing);
  });

  it('sets price protection when listing and after, keeps it when left out, and refuses it with other sizes', async () => {
    const abc = { symbol: 'ABC', tick_size: '0.01', lot_size: '1' };
    const at = (bps: number) => ({ ...abc, market_protection_bps: bps });
    assert.deepEqual(await upsertInstrument(db.sql, at(250)), {
      kind: 'ok',
      created: true,
      updated: false,
      instrument: at(250),
    });
    assert.deepEqual(await upsertInstrument(db.sql, abc), {
      kind: 'ok',
      created: false,
      updated: false,
      instrument: at(250),
    });
    assert.deepEqual(await upsertInstrument(db.sql, at(10_000)), {
      kind: 'ok',
      created: false,
      updated: true,
      instrument: at(10_000),
    });
    assert.deepEqual(await upsertInstrument(db.sql, { ...at(0), tick_size: '0.05' }), {
      kind: 'conflict',
      existing: at(10_000),
    });
    assert.deepEqual(await upsertInstrument(db.sql, at(0)), {
      kind: 'ok',
      created: false,
      updated: true,
      instrument: at(0),
    });
    assert.deepEqual(await listInstruments(db.sql), [at(0)]);
  });

  it('refuses malformed symbols and sizes', async () => {
    const PROT = 'market_protection_bps';
    const bad = [
      [{ symbol: 'abc', tick_size: '0.01', lot_size: '1' }, 'symbol'],
      [{ symbol: 'A'.repeat(17), tick_size: '0.01', lot_size: '1' }, 'symbol'],
      // Dot-segments: no URL can name them (/v1/instruments/../book resolves away).
      [{ symbol: '.', tick_size: '0.01', lot_size: '1' }, 'symbol'],
      [{ symbol: '..', tick_size: '0.01', lot_size: '1' }, 'symbol'],
      [{ symbol: 'ABC', tick_size: '0', lot_size: '1' }, 'tick_size'],
      [{ symbol: 'ABC', tick_size: '-1', lot_size: '1' }, 'tick_size'],
      [{ symbol: 'ABC', tick_size: '1e-2', lot_size: '1' }, 'tick_size'],
      [{ symbol: 'ABC', tick_size: '0.01', lot_size: '0.000' }, 'lot_size'],
      [{ symbol: 'ABC', tick_size: '0.01', lot_size: '1', market_protection_bps: -1 }, PROT],
      [{ symbol: 'ABC', tick_size: '0.01', lot_size: '1', market_protection_bps: 10_001 }, PROT],
      [{ symbol: 'ABC', tick_size: '0.01', lot_size: '1', market_protection_bps: 2.5 }, PROT],
    ] as const;
    for (const [input, field] of bad) {
      const r = await upsertInstrument(db.sql, input);
      assert.equal(r.kind, 'invalid', JSON.stringify(input));
      assert.equal(r.kind === 'invalid' && r.field, field);
    }
    assert.deepEqual(await listInstruments(db.sql), []);
  });

  it('normalises sizes to one spelling', () => {
    assert.equal(normaliseSize('0.010'), '0.01');
    assert.equal(normaliseSize('1.0'), '1');
    assert.equal(normaliseSize('10'), '10');
    assert.equal(normaliseSize('100.500'), '100.5');
    assert.equal(normaliseSize('0.00'), undefined);
    assert.equal(normaliseSize('01'), undefined);
  });

  it('has no instrument for an unknown symbol', async () => {
    assert.equal(await getInstrument(db.sql, 'NOPE'), undefined);
  });
});
