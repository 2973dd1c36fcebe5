import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { METHODS } from '../../../src/protocol/methods/index.js';
import { AgentProcess } from '../../helpers/agent-process.js';

// 100,000+ random and malformed messages over three connections (unknown, site and ra tiers) of the
// real agent: it stays up, answers every frame with exactly one well-formed JSON-RPC error, and its
// memory stays bounded. Messages are pipelined in windows so the test measures the agent, not timers.

const TOTAL = 102_000;
const WINDOW = 2_000;
const SEED = 20_261_122;

const KNOWN = [...METHODS.map((m) => m.name), 'certificates.status'];
const ERROR_CODES = new Set([-32700, -32600, -32601, -32602, -32000]);

/** One frame to send: text (JSON or not) or binary. */
type Frame = { text: string } | { binary: Buffer };

const jsonValue = fc.jsonValue({ maxDepth: 4 });
const weirdId = fc.oneof(
  fc.double().filter((d) => !Number.isSafeInteger(d)),
  fc.boolean(),
  fc.constant(null),
  fc.string({ minLength: 129, maxLength: 300 }),
  fc.constant(''),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string(), fc.integer(), { maxKeys: 2 }),
  fc.constant(2 ** 60),
);
const goodId = fc.oneof(fc.integer(), fc.string({ minLength: 1, maxLength: 128 }));
const anyParams = fc.oneof(
  fc.dictionary(fc.string({ maxLength: 20 }), jsonValue, { maxKeys: 6 }),
  fc.array(jsonValue, { maxLength: 4 }),
  fc.string(),
  fc.integer(),
  fc.constant(null),
);
// Known methods with params that cannot be valid: an unknown member is always there.
const badParams = fc
  .tuple(
    fc.dictionary(
      fc.constantFrom(
        'tokenId',
        'certificateId',
        'digest',
        'digestAlgorithm',
        'summary',
        'items',
        'nonce',
        'label',
        'reason',
        'id',
        'filter',
        'algorithm',
        'csr',
        'content',
        'role',
        'scope',
        'keyId',
        'subject',
      ),
      fc.oneof(
        jsonValue,
        fc.base64String({ maxLength: 200 }),
        fc.constantFrom('SHA-256', 'SHA-384', 'RSA', 'EC', 'user', 'so', 'all'),
      ),
      { maxKeys: 6 },
    ),
    fc.string({ minLength: 1, maxLength: 12 }).map((k) => `x_${k}`),
    jsonValue,
  )
  .map(([p, extra, v]) => ({ ...p, [extra]: v }));

const frame: fc.Arbitrary<Frame> = fc.oneof(
  // Not JSON at all.
  {
    weight: 10,
    arbitrary: fc
      .string({ maxLength: 200 })
      .filter((s) => !isJson(s))
      .map((text) => ({ text })),
  },
  // Truncated JSON of a plausible request.
  {
    weight: 5,
    arbitrary: fc.tuple(goodId, fc.constantFrom(...KNOWN), fc.nat(60)).map(([id, method, cut]) => {
      const full = JSON.stringify({ jsonrpc: '2.0', id, method, params: {} });
      return { text: full.slice(0, Math.min(cut, full.length - 1)) };
    }),
  },
  // Any JSON value (arrays are batches).
  {
    weight: 15,
    arbitrary: jsonValue
      .filter((v) => !isRequestShaped(v))
      .map((v) => ({ text: JSON.stringify(v) ?? 'null' })),
  },
  // Envelope with wrong types.
  {
    weight: 15,
    arbitrary: fc
      .record(
        {
          jsonrpc: fc.oneof(fc.constant('2.0'), fc.constant('1.0'), fc.integer(), fc.constant(null)),
          id: fc.oneof(goodId, weirdId),
          method: fc.oneof(fc.constantFrom(...KNOWN), fc.integer(), fc.constant(null)),
          params: anyParams,
        },
        { requiredKeys: [] },
      )
      .filter(
        (r) =>
          !(r.jsonrpc === '2.0' && typeof r.method === 'string' && isGoodId(r.id) && isPlainParams(r.params)),
      )
      .map((r) => ({ text: JSON.stringify(r) })),
  },
  // Unknown methods.
  {
    weight: 15,
    arbitrary: fc
      .tuple(
        goodId,
        fc.string({ maxLength: 70 }).filter((m) => !KNOWN.includes(m)),
      )
      .map(([id, method]) => ({ text: JSON.stringify({ jsonrpc: '2.0', id, method, params: {} }) })),
  },
  // Known methods with invalid params, for every tier.
  {
    weight: 30,
    arbitrary: fc
      .tuple(goodId, fc.constantFrom(...KNOWN), badParams)
      .map(([id, method, params]) => ({ text: JSON.stringify({ jsonrpc: '2.0', id, method, params }) })),
  },
  // Bad ids on otherwise fine requests.
  {
    weight: 5,
    arbitrary: fc
      .tuple(weirdId, fc.constantFrom(...KNOWN))
      .map(([id, method]) => ({ text: JSON.stringify({ jsonrpc: '2.0', id, method, params: {} }) })),
  },
  // Prototype names and deep nesting.
  {
    weight: 3,
    arbitrary: fc
      .tuple(goodId, fc.constantFrom('__proto__', 'constructor', 'prototype'), fc.nat(30))
      .map(([id, key, depth]) => ({
        text: `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"method":"agent.info","params":${'{"a":'.repeat(depth)}{"${key}":{"polluted":true}}${'}'.repeat(depth)}}`,
      })),
  },
  { weight: 1, arbitrary: fc.nat(5000).map((n) => ({ text: `${'['.repeat(n + 20)}${']'.repeat(n + 20)}` })) },
  // Binary frames.
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => ({ binary: Buffer.from(b) })) },
);

function isJson(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}
function isGoodId(id: unknown): boolean {
  return (
    (typeof id === 'string' && id.length >= 1 && id.length <= 128) ||
    (typeof id === 'number' && Number.isSafeInteger(id))
  );
}
function isPlainParams(p: unknown): boolean {
  return p === undefined || (typeof p === 'object' && p !== null && !Array.isArray(p));
}
function isRequestShaped(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && 'method' in v;
}

/** A few messages close to maxMessageBytes (1 MiB): huge strings in otherwise plausible requests. */
function hugeFrames(count: number): Frame[] {
  const out: Frame[] = [];
  for (let i = 0; i < count; i++) {
    const size = 200_000 + ((i * 97_331) % 780_000);
    const method = KNOWN[i % KNOWN.length];
    const filler = i % 2 === 0 ? 'A'.repeat(size) : 'ی'.repeat(Math.floor(size / 2));
    // One huge member: the whole frame stays under maxMessageBytes.
    out.push({
      text: JSON.stringify({ jsonrpc: '2.0', id: `huge-${i}`, method, params: { summary: filler, x: 1 } }),
    });
  }
  return out;
}

interface Stats {
  sent: number;
  replies: number;
  bad: string[];
  /** JSON-RPC error code → replies with it; data.code → replies with it. */
  codes: Map<string, number>;
}

/** Send frames on one socket, at most WINDOW unanswered at a time; check every reply. */
async function pump(ws: WebSocket, frames: Frame[], stats: Stats): Promise<void> {
  let answered = 0;
  let sentHere = 0;
  let wake: (() => void) | null = null;
  const onMessage = (data: Buffer, isBinary: boolean): void => {
    answered += 1;
    stats.replies += 1;
    const problem = isBinary ? 'binary reply' : replyProblem(data.toString('utf8'), stats.codes);
    if (problem && stats.bad.length < 20) stats.bad.push(problem);
    if (wake && answered >= sentHere - WINDOW / 2) {
      const w = wake;
      wake = null;
      w();
    }
  };
  ws.on('message', onMessage);
  for (const f of frames) {
    if (sentHere - answered >= WINDOW) await new Promise<void>((resolve) => (wake = resolve));
    if ('text' in f) ws.send(f.text);
    else ws.send(f.binary, { binary: true });
    sentHere += 1;
    stats.sent += 1;
  }
  const deadline = Date.now() + 60_000;
  while (answered < sentHere && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  ws.off('message', onMessage);
}

function replyProblem(text: string, codes: Map<string, number>): string | null {
  let r: {
    jsonrpc?: unknown;
    id?: unknown;
    result?: unknown;
    error?: { code?: unknown; message?: unknown; data?: { code?: unknown } };
  };
  try {
    r = JSON.parse(text) as typeof r;
  } catch {
    return `reply is not JSON: ${text.slice(0, 80)}`;
  }
  if (r.jsonrpc !== '2.0') return 'reply without jsonrpc 2.0';
  if ('result' in r) return `a malformed message got a result: ${text.slice(0, 120)}`;
  if (!r.error || typeof r.error.code !== 'number' || !ERROR_CODES.has(r.error.code))
    return `bad error object: ${text.slice(0, 120)}`;
  if (typeof r.error.message !== 'string' || /\n\s+at |\.ts:\d+|\.js:\d+/.test(r.error.message))
    return 'error message looks like a stack trace';
  if (
    r.error.code === -32000 &&
    (typeof r.error.data?.code !== 'string' || !/^ERR_[A-Z_]+$/.test(r.error.data.code))
  ) {
    return `server error without data.code: ${text.slice(0, 120)}`;
  }
  if (!(r.id === null || typeof r.id === 'string' || typeof r.id === 'number'))
    return 'reply id of a wrong type';
  const key = r.error.code === -32000 ? String(r.error.data?.code) : String(r.error.code);
  codes.set(key, (codes.get(key) ?? 0) + 1);
  return null;
}

describe('Dispatcher under fuzzing', () => {
  let agent: AgentProcess;

  beforeAll(async () => {
    agent = await AgentProcess.start({
      prefix: 'kelid-e2e-fuzz-',
      config: {
        raOrigins: ['https://ra.example'],
        sites: ['https://site.example'],
        consent: { timeoutSeconds: 1 },
        // The fuzzer pipelines 2,000 frames at a time: measure the dispatcher, not the rate limit or
        // the unknown tier's byte budget (flood.test.ts and unknown-tier-limits.test.ts cover those).
        limits: { requestsPerSecond: 1_000_000, requestBurst: 1_000_000, unknownBytesPerSecond: 1 << 30 },
      },
    });
  });

  afterAll(async () => {
    await agent?.stop();
    agent?.cleanup();
  });

  it(`answers ${TOTAL.toLocaleString('en')} random and malformed frames with well-formed errors and bounded memory`, async () => {
    const frames = fc.sample(frame, { numRuns: TOTAL - 24, seed: SEED });
    frames.push(...hugeFrames(24));
    const sockets = await Promise.all(
      ['https://unknown.example', 'https://site.example', 'https://ra.example'].map((o) => agent.open(o)),
    );
    const stats: Stats = { sent: 0, replies: 0, bad: [], codes: new Map() };

    // Warm up, then measure.
    await pump(sockets[1], frames.slice(0, 2000), stats);
    const rssBefore = agent.rssKb();
    const rest = frames.slice(2000);
    const share = Math.ceil(rest.length / 3);
    const shares = sockets.map((_, i) => rest.slice(i * share, (i + 1) * share));
    // The unknown tier reads frames of at most 8 KiB (unknown-tier-limits.test.ts): larger ones go
    // to the site socket.
    const fitsUnknown = (f: Frame): boolean => !('text' in f) || Buffer.byteLength(f.text) <= 8192;
    shares[1].push(...shares[0].filter((f) => !fitsUnknown(f)));
    shares[0] = shares[0].filter(fitsUnknown);
    await Promise.all(sockets.map((ws, i) => pump(ws, shares[i], stats)));
    const rssAfter = agent.rssKb();

    expect(stats.bad).toEqual([]);
    expect(stats.sent).toBeGreaterThanOrEqual(100_000);
    expect(stats.replies).toBe(stats.sent);
    expect(rssAfter - rssBefore).toBeLessThan(300 * 1024);
    // Every kind of refusal was exercised, and the tier check held for the unknown and site sockets.
    for (const code of ['-32700', '-32600', '-32601', '-32602', 'ERR_FORBIDDEN']) {
      expect(stats.codes.get(code) ?? 0, code).toBeGreaterThan(100);
    }
    for (const ws of sockets) ws.close();

    // Still up and still serving.
    const client = await agent.connect('https://site.example');
    expect(await client.call('agent.info')).toMatchObject({ name: 'kelid', tier: 'site' });
    await client.close();
    expect(agent.child.exitCode).toBeNull();
  });
});
