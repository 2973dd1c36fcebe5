import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { METHODS } from '../../../src/protocol/methods/index.js';

// Schemas compile on first use (start-up time): this compiles every one of them under ajv's strict
// mode, so a schema mistake fails here rather than on a user's first call.
describe('METHODS params schemas', () => {
  it.each(METHODS.map((m) => [m.name, m] as const))('%s compiles and refuses an unknown member', (_n, m) => {
    expect(m.validate({ notAParam: true })).toBe(false);
    expect(m.validate.errors?.length).toBeGreaterThan(0);
  });

  // The agent's Ajv does not check schemas against the meta-schema (start-up time): this does.
  it.each(METHODS.map((m) => [m.name, m] as const))('%s is a valid JSON Schema (draft-07)', (_n, m) => {
    const ajv = new Ajv({ strict: true, allowUnionTypes: true });
    expect(ajv.validateSchema(m.schema), JSON.stringify(ajv.errors)).toBe(true);
  });
});
