import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isKelidError } from '../../src/model/errors.js';
import { loadKnownModules, loadPinPolicies, nativeConfigDir } from '../../src/pkcs11/native-config.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONFIG = path.join(ROOT, 'native-config');
const readJson = (file: string): any => JSON.parse(fs.readFileSync(path.join(CONFIG, file), 'utf8'));

// An Ajv of the test's own, so the shipped files are checked independently of the loader.
function compile(schemaFile: string) {
  return new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true }).compile(readJson(schemaFile));
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return isKelidError(e) ? e.code : `not a KelidError: ${String(e)}`;
  }
  return undefined;
}

describe('native-config/pkcs11-modules.json', () => {
  const data = readJson('pkcs11-modules.json');
  const validate = compile('pkcs11-modules.schema.json');

  it('matches its JSON Schema', () => {
    const ok = validate(data);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
  });

  it('gives every module at least one linux, darwin or win32 path', () => {
    for (const m of data.modules) {
      const count = ['linux', 'darwin', 'win32'].reduce((n, os) => n + (m.paths[os]?.length ?? 0), 0);
      expect(count, m.id).toBeGreaterThan(0);
    }
  });

  it('uses unique kebab-case ids', () => {
    const ids: string[] = data.modules.map((m: { id: string }) => m.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
  });

  it('writes Windows paths from an environment variable and never a 32-bit-only directory', () => {
    for (const m of data.modules) {
      for (const p of m.paths.win32 ?? []) {
        expect(p, m.id).toMatch(/^%(SystemRoot|ProgramFiles|SystemDrive)%\\/);
        expect(p.toLowerCase(), m.id).not.toContain('syswow64');
      }
    }
  });

  it('writes Linux and macOS paths as absolute paths', () => {
    for (const m of data.modules) {
      for (const p of [...(m.paths.linux ?? []), ...(m.paths.darwin ?? [])]) expect(p, m.id).toMatch(/^\//);
    }
  });

  it('covers the tokens the agent is expected to find', () => {
    const ids = data.modules.map((m: { id: string }) => m.id);
    for (const id of [
      'softhsm2',
      'opensc',
      'p11-kit-proxy',
      'safenet-etoken',
      'thales-idprime',
      'feitian-epass2003',
      'feitian-epass3003',
      'rutoken',
      'yubico-ykcs11',
      'watchdata-proxkey',
      'bit4id',
    ]) {
      expect(ids).toContain(id);
    }
  });

  it('is refused by the schema when a quirk is unknown or an attribute name is not a CKA_ suffix', () => {
    const entry = { id: 'x', name: 'X', vendor: 'V', paths: { linux: ['/x.so'] }, confidence: 'reported' };
    expect(
      validate({ modules: [{ ...entry, quirks: { keyTemplate: { private: { DERIVE: false } } } }] }),
    ).toBe(true);
    expect(validate({ modules: [{ ...entry, quirks: { retries: 3 } }] })).toBe(false);
    expect(
      validate({ modules: [{ ...entry, quirks: { keyTemplate: { private: { cka_derive: false } } } }] }),
    ).toBe(false);
    expect(validate({ modules: [{ ...entry, paths: {} }] })).toBe(false);
    expect(validate({ modules: [{ ...entry, id: 'Not_Kebab' }] })).toBe(false);
  });
});

describe('native-config/pin-policies.json', () => {
  it('matches its JSON Schema and holds the defaults of PROTOCOL.md section 8', () => {
    const validate = compile('pin-policies.schema.json');
    const data = readJson('pin-policies.json');
    expect(validate(data)).toBe(true);
    expect(data.user).toMatchObject({ minLength: 4, maxLength: 16, charset: 'digits' });
    expect(data.so).toMatchObject({ minLength: 4, maxLength: 24, charset: 'alnum' });
  });
});

describe('native-config', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kelid-native-config-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const write = (name: string, body: unknown): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, typeof body === 'string' ? body : JSON.stringify(body));
    return file;
  };
  const module = {
    id: 'one',
    name: 'One',
    vendor: 'V',
    paths: { linux: ['/one.so'] },
    confidence: 'reported',
  };

  describe('validators compiled ahead of time', () => {
    it('are the code Ajv makes from the shipped schemas now (scripts/gen-native-config-validators.mjs --check)', () => {
      const r = spawnSync(process.execPath, ['scripts/gen-native-config-validators.mjs', '--check'], {
        cwd: ROOT,
        encoding: 'utf8',
      });
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    });

    it('reject a file Ajv rejects, with the same first problem', () => {
      const bad = { user: { minLength: 4, maxLength: 'x', charset: 'digits' }, so: {} };
      const file = path.join(os.tmpdir(), `kelid-pin-${process.pid}.json`);
      fs.writeFileSync(file, JSON.stringify(bad));
      try {
        const validate = compile('pin-policies.schema.json');
        expect(validate(bad)).toBe(false);
        const first = validate.errors![0]!;
        expect(() => loadPinPolicies(file)).toThrow(`${first.instancePath} ${first.message}`);
      } finally {
        fs.rmSync(file, { force: true });
      }
    });
  });

  describe('#nativeConfigDir', () => {
    it('points at the package root native-config directory', () => {
      expect(path.resolve(nativeConfigDir())).toBe(path.resolve(CONFIG));
    });
  });

  describe('#loadKnownModules', () => {
    it('returns every shipped module with its optional flags resolved', () => {
      const raw = readJson('pkcs11-modules.json').modules;
      const modules = loadKnownModules();
      expect(modules.map((m) => m.id)).toEqual(raw.map((m: { id: string }) => m.id));
      const softhsm = modules.find((m) => m.id === 'softhsm2');
      expect(softhsm).toMatchObject({
        reinitializeToDetectTokens: true,
        autoDetect: true,
        aggregator: false,
      });
      expect(modules.find((m) => m.id === 'p11-kit-client')?.autoDetect).toBe(false);
      expect(modules.find((m) => m.id === 'p11-kit-proxy')?.aggregator).toBe(true);
      expect(modules.find((m) => m.id === 'opensc')?.quirks).toEqual({});
    });

    it('returns copies that callers cannot use to change later loads', () => {
      const first = loadKnownModules();
      first[0]!.paths.linux?.push('/tampered.so');
      first[0]!.quirks.noParallelSessions = true;
      const second = loadKnownModules();
      expect(second[0]!.paths.linux).not.toContain('/tampered.so');
      expect(second[0]!.quirks.noParallelSessions).toBeUndefined();
    });

    it('throws ERR_INTERNAL for a missing file', () => {
      expect(codeOf(() => loadKnownModules(path.join(dir, 'absent.json')))).toBe('ERR_INTERNAL');
    });

    it('throws ERR_INTERNAL for a file that is not JSON', () => {
      expect(codeOf(() => loadKnownModules(write('m.json', '{"modules": [')))).toBe('ERR_INTERNAL');
    });

    it('throws ERR_INTERNAL naming the offending field when the schema is violated', () => {
      const file = write('m.json', { modules: [{ ...module, confidence: 'guessed' }] });
      expect(codeOf(() => loadKnownModules(file))).toBe('ERR_INTERNAL');
      expect(() => loadKnownModules(file)).toThrow(/\/modules\/0\/confidence/);
    });

    it('throws ERR_INTERNAL when an id is used twice', () => {
      const file = write('m.json', { modules: [module, { ...module, name: 'Again' }] });
      expect(codeOf(() => loadKnownModules(file))).toBe('ERR_INTERNAL');
    });
  });

  describe('#loadPinPolicies', () => {
    it('returns the shipped defaults with the optional checks off', () => {
      expect(loadPinPolicies()).toEqual({
        user: {
          minLength: 4,
          maxLength: 16,
          charset: 'digits',
          rejectAllSame: false,
          rejectSequential: false,
        },
        so: { minLength: 4, maxLength: 24, charset: 'alnum', rejectAllSame: false, rejectSequential: false },
      });
    });

    it('resolves omitted optional checks to false and keeps given ones', () => {
      const file = write('p.json', {
        user: { minLength: 6, maxLength: 8, charset: 'digits', rejectAllSame: true },
        so: { minLength: 8, maxLength: 8, charset: 'printable', rejectSequential: true },
      });
      expect(loadPinPolicies(file)).toEqual({
        user: { minLength: 6, maxLength: 8, charset: 'digits', rejectAllSame: true, rejectSequential: false },
        so: {
          minLength: 8,
          maxLength: 8,
          charset: 'printable',
          rejectAllSame: false,
          rejectSequential: true,
        },
      });
    });

    it('throws ERR_INTERNAL when minLength exceeds maxLength', () => {
      const file = write('p.json', {
        user: { minLength: 9, maxLength: 8, charset: 'digits' },
        so: { minLength: 4, maxLength: 8, charset: 'alnum' },
      });
      expect(codeOf(() => loadPinPolicies(file))).toBe('ERR_INTERNAL');
    });

    it('throws ERR_INTERNAL for an unknown charset or field', () => {
      const so = { minLength: 4, maxLength: 8, charset: 'alnum' };
      expect(codeOf(() => loadPinPolicies(write('a.json', { user: { ...so, charset: 'emoji' }, so })))).toBe(
        'ERR_INTERNAL',
      );
      expect(codeOf(() => loadPinPolicies(write('b.json', { user: { ...so, maxTries: 3 }, so })))).toBe(
        'ERR_INTERNAL',
      );
    });
  });
});
