// Loads the data files of native-config/ (known PKCS#11 modules, default PIN policies) and validates
// them against their JSON Schemas. A broken shipped file is a packaging bug, hence ERR_INTERNAL.

import { readFileSync } from 'node:fs';
import { sep } from 'node:path';
import type { ErrorObject } from 'ajv';
import { KelidError } from '../model/errors.js';
import { validateModules, validatePinPolicies } from './native-config-validators.generated.js';
import { packagePath } from '../package-files.js';

/** Operating systems native-config lists paths for. */
export type ModulePlatform = 'linux' | 'darwin' | 'win32';

/** Value of a key template override (attribute name without CKA_ → value). */
export type AttributeOverride = boolean | number | string;

/**
 * Vendor quirks of one PKCS#11 module (see pkcs11-modules.schema.json for the meaning of each field).
 * A type alias, not an interface, so it stays assignable to `Record<string, unknown>`.
 */
export type ModuleQuirks = {
  keyTemplate?: {
    private?: Record<string, AttributeOverride>;
    public?: Record<string, AttributeOverride>;
  };
  noParallelSessions?: boolean;
  maxLabelBytes?: number;
  /** "device-wide": wrong PINs count against one lockout for the whole device (a TPM), unflagged. */
  lockout?: 'token' | 'device-wide';
  /** false: CKM_RSA_PKCS cannot sign a digest (tpm2-pkcs11); PKCS#1 v1.5 only through hash-and-sign. */
  rsaPkcsSignsDigest?: boolean;
};

/** One entry of native-config/pkcs11-modules.json, with optional flags resolved to their defaults. */
export interface KnownModule {
  id: string;
  name: string;
  vendor: string;
  tokens: string[];
  paths: Partial<Record<ModulePlatform, string[]>>;
  confidence: 'verified' | 'reported';
  reinitializeToDetectTokens: boolean;
  autoDetect: boolean;
  aggregator: boolean;
  quirks: ModuleQuirks;
  notes?: string;
}

export type PinCharset = 'digits' | 'alnum' | 'printable';

export interface PinPolicy {
  minLength: number;
  maxLength: number;
  charset: PinCharset;
  rejectAllSame: boolean;
  rejectSequential: boolean;
}

export interface PinPolicies {
  user: PinPolicy;
  so: PinPolicy;
}

/** Absolute path of the package's native-config directory (ends with a separator). */
export function nativeConfigDir(): string {
  return packagePath('native-config') + sep;
}

const MODULES_FILE = 'pkcs11-modules.json';
const MODULES_SCHEMA = 'pkcs11-modules.schema.json';
const PIN_FILE = 'pin-policies.json';
const PIN_SCHEMA = 'pin-policies.schema.json';

/** A schema validator as Ajv makes them: true or false, the problems in `errors`. */
type Validator = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };

// Compiled from the schemas ahead of time (scripts/gen-native-config-validators.mjs): compiling them
// with Ajv at every start took about a tenth of the agent's start-up.
const validators = new Map<string, Validator>([
  [MODULES_SCHEMA, validateModules as Validator],
  [PIN_SCHEMA, validatePinPolicies as Validator],
]);

function validatorFor(schemaFile: string): Validator {
  const v = validators.get(schemaFile);
  if (v === undefined) throw new KelidError('ERR_INTERNAL', `no validator for ${schemaFile}`);
  return v;
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new KelidError('ERR_INTERNAL', `cannot read native config ${file}`, { cause: e });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new KelidError('ERR_INTERNAL', `native config ${file} is not valid JSON`, { cause: e });
  }
}

function readValidated(file: string, schemaFile: string): unknown {
  const data = readJson(file);
  const validate = validatorFor(schemaFile);
  if (!validate(data)) {
    const details = (validate.errors ?? [])
      .slice(0, 5)
      .map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`)
      .join('; ');
    throw new KelidError('ERR_INTERNAL', `native config ${file} does not match ${schemaFile}: ${details}`);
  }
  return data;
}

// Shapes as they appear in the files, after schema validation.
interface RawModule {
  id: string;
  name: string;
  vendor: string;
  tokens?: string[];
  paths: Partial<Record<ModulePlatform, string[]>>;
  confidence: 'verified' | 'reported';
  reinitializeToDetectTokens?: boolean;
  autoDetect?: boolean;
  aggregator?: boolean;
  quirks?: ModuleQuirks;
  notes?: string;
}

interface RawPinPolicy {
  minLength: number;
  maxLength: number;
  charset: PinCharset;
  rejectAllSame?: boolean;
  rejectSequential?: boolean;
}

/**
 * The known PKCS#11 modules of native-config/pkcs11-modules.json (or of `file`), validated against
 * the shipped schema. Throws KelidError ERR_INTERNAL when the file is missing, malformed, does not
 * match the schema or repeats an id.
 */
export function loadKnownModules(file: string = nativeConfigDir() + MODULES_FILE): KnownModule[] {
  const raw = readValidated(file, MODULES_SCHEMA) as { modules: RawModule[] };
  const seen = new Set<string>();
  return raw.modules.map((m) => {
    if (seen.has(m.id))
      throw new KelidError('ERR_INTERNAL', `native config ${file} repeats module id ${m.id}`);
    seen.add(m.id);
    const known: KnownModule = {
      id: m.id,
      name: m.name,
      vendor: m.vendor,
      tokens: [...(m.tokens ?? [])],
      paths: Object.fromEntries(Object.entries(m.paths).map(([os, list]) => [os, [...list]])),
      confidence: m.confidence,
      reinitializeToDetectTokens: m.reinitializeToDetectTokens ?? false,
      autoDetect: m.autoDetect ?? true,
      aggregator: m.aggregator ?? false,
      quirks: structuredClone(m.quirks ?? {}),
    };
    if (m.notes !== undefined) known.notes = m.notes;
    return known;
  });
}

function pinPolicy(file: string, role: string, p: RawPinPolicy): PinPolicy {
  if (p.minLength > p.maxLength) {
    throw new KelidError(
      'ERR_INTERNAL',
      `native config ${file}: ${role}.minLength exceeds ${role}.maxLength`,
    );
  }
  return {
    minLength: p.minLength,
    maxLength: p.maxLength,
    charset: p.charset,
    rejectAllSame: p.rejectAllSame ?? false,
    rejectSequential: p.rejectSequential ?? false,
  };
}

/**
 * The default PIN policies of native-config/pin-policies.json (or of `file`), validated against the
 * shipped schema, with the optional flags resolved to false. Throws KelidError ERR_INTERNAL when the
 * file is missing, malformed, does not match the schema or has minLength > maxLength.
 */
export function loadPinPolicies(file: string = nativeConfigDir() + PIN_FILE): PinPolicies {
  const raw = readValidated(file, PIN_SCHEMA) as { user: RawPinPolicy; so: RawPinPolicy };
  return { user: pinPolicy(file, 'user', raw.user), so: pinPolicy(file, 'so', raw.so) };
}
