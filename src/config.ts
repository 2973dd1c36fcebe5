import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import type { ValidateFunction } from 'ajv';
import { KelidError } from './model/errors.js';

/** The config file of PROTOCOL.md section 8; every key optional. */
export interface PinRuleConfig {
  minLength: number;
  maxLength: number;
  charset: 'digits' | 'alnum' | 'any';
  rejectAllSame?: boolean;
  rejectSequential?: boolean;
}

export interface KelidConfig {
  port: number;
  insecureWsPort: number | null;
  /**
   * Extension: whether web pages may connect over the WebSocket (default true). False leaves the
   * extension (native messaging) as the pages' only way in; the agent's own pages still use HTTPS.
   */
  wss: boolean;
  stateDir?: string;
  modules: Array<{ id: string; path: string; env?: Record<string, string> }>;
  autoDetectModules: boolean;
  raOrigins: string[];
  sites: string[];
  devOrigins: string[];
  maxMessageBytes: number;
  /**
   * Extensions: `language`, the language the agent's pages open in (`?lang=`); `promptsPerMinute`, how
   * many consent prompts one origin of each tier may raise per minute (an administrator's setting).
   */
  consent: {
    launcher: string;
    timeoutSeconds: number;
    language: 'fa' | 'en';
    promptsPerMinute: { site: number; ra: number };
  };
  pinPolicy: { user: PinRuleConfig; so: PinRuleConfig };
  revocation: {
    enforceOnSign: 'block-revoked' | 'require-good' | 'off';
    timeoutSeconds: number;
    /** Extension: caller-supplied certificates may make the agent fetch from non-public addresses. */
    allowPrivateNetworks: boolean;
    /** Extension: before signing, a status fetched longer ago than this is fetched again; null: until nextUpdate. */
    maxAgeSeconds: number | null;
  };
  tsaUrl: string | null;
  /**
   * Extension: the forward proxy for OCSP, CRL, caIssuers and TSA fetches. null: from HTTPS_PROXY /
   * HTTP_PROXY / NO_PROXY; a URL (`http://host:port`): that proxy (NO_PROXY still applies); "direct": none.
   */
  proxy: string | null;
  /**
   * Extension: connection limits of PROTOCOL.md section 2, the request rate of one connection, and the
   * bytes per second all `unknown`-tier connections together may send.
   */
  limits: {
    connectionsPerOrigin: number;
    connections: number;
    requestsPerSecond: number;
    requestBurst: number;
    unknownBytesPerSecond: number;
  };
  /**
   * Extension: deadlines of module calls. A call past its deadline gets its module host killed and
   * restarted (ERR_MODULE_FAILED). Logins have their own, longer one: a PIN pad reader waits for the user.
   */
  pkcs11: { callTimeoutSeconds: number; loginTimeoutSeconds: number };
  /**
   * Extension: what dual-use certificates (nonRepudiation and clientAuth) may do: `signing` (sign.*,
   * never auth.challenge), `authentication` (auth.challenge only), `cms-and-authentication`
   * (auth.challenge and CMS, never a raw signature). The key-purpose rule is src/pki/key-purpose.ts.
   */
  keyPurpose: { dualUse: 'signing' | 'authentication' | 'cms-and-authentication' };
  /**
   * Extension (issue 15): where the signed update manifest is (checked at start and daily against the
   * Ed25519 key pinned in the build; shown, never downloaded or run). null = no check.
   */
  updates: { url: string | null };
}

export const DEFAULT_CONFIG: Readonly<KelidConfig> = {
  port: 17443,
  insecureWsPort: null,
  wss: true,
  modules: [],
  autoDetectModules: true,
  raOrigins: [],
  sites: [],
  devOrigins: [],
  maxMessageBytes: 1_048_576,
  consent: {
    launcher: 'browser',
    timeoutSeconds: 120,
    language: 'fa',
    promptsPerMinute: { site: 5, ra: 30 },
  },
  pinPolicy: {
    user: { minLength: 4, maxLength: 16, charset: 'digits' },
    so: { minLength: 4, maxLength: 24, charset: 'alnum' },
  },
  revocation: {
    enforceOnSign: 'block-revoked',
    timeoutSeconds: 5,
    allowPrivateNetworks: false,
    maxAgeSeconds: null,
  },
  tsaUrl: null,
  proxy: null,
  limits: {
    connectionsPerOrigin: 8,
    connections: 64,
    requestsPerSecond: 100,
    requestBurst: 200,
    unknownBytesPerSecond: 262_144,
  },
  pkcs11: { callTimeoutSeconds: 30, loginTimeoutSeconds: 120 },
  keyPurpose: { dualUse: 'signing' },
  updates: { url: null },
};

const pinRule = {
  type: 'object',
  additionalProperties: false,
  required: ['minLength', 'maxLength', 'charset'],
  properties: {
    minLength: { type: 'integer', minimum: 1, maximum: 255 },
    maxLength: { type: 'integer', minimum: 1, maximum: 255 },
    charset: { enum: ['digits', 'alnum', 'any'] },
    rejectAllSame: { type: 'boolean' },
    rejectSequential: { type: 'boolean' },
  },
} as const;

const originList = {
  type: 'array',
  maxItems: 1000,
  items: { type: 'string', minLength: 1, maxLength: 255 },
} as const;

export const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    $schema: { type: 'string' },
    port: { type: 'integer', minimum: 0, maximum: 65535 },
    insecureWsPort: { type: ['integer', 'null'], minimum: 0, maximum: 65535 },
    wss: { type: 'boolean' },
    stateDir: { type: 'string', minLength: 1 },
    modules: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'path'],
        properties: {
          id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' },
          path: { type: 'string', minLength: 1 },
          env: { type: 'object', additionalProperties: { type: 'string' } },
        },
      },
    },
    autoDetectModules: { type: 'boolean' },
    raOrigins: originList,
    sites: originList,
    devOrigins: originList,
    maxMessageBytes: { type: 'integer', minimum: 1024, maximum: 64 * 1024 * 1024 },
    consent: {
      type: 'object',
      additionalProperties: false,
      properties: {
        launcher: { type: 'string', minLength: 1 },
        timeoutSeconds: { type: 'integer', minimum: 1, maximum: 3600 },
        language: { enum: ['fa', 'en'] },
        promptsPerMinute: {
          type: 'object',
          additionalProperties: false,
          properties: {
            site: { type: 'integer', minimum: 1, maximum: 100_000 },
            ra: { type: 'integer', minimum: 1, maximum: 100_000 },
          },
        },
      },
    },
    pinPolicy: {
      type: 'object',
      additionalProperties: false,
      properties: { user: pinRule, so: pinRule },
    },
    revocation: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enforceOnSign: { enum: ['block-revoked', 'require-good', 'off'] },
        timeoutSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 120 },
        allowPrivateNetworks: { type: 'boolean' },
        maxAgeSeconds: { type: ['integer', 'null'], minimum: 1, maximum: 31_536_000 },
      },
    },
    tsaUrl: { type: ['string', 'null'] },
    updates: {
      type: 'object',
      additionalProperties: false,
      properties: { url: { type: ['string', 'null'], pattern: '^https://' } },
    },
    proxy: {
      oneOf: [{ type: 'null' }, { const: 'direct' }, { type: 'string', pattern: '^http://[^/?#\\s]+/?$' }],
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        connectionsPerOrigin: { type: 'integer', minimum: 1, maximum: 1000 },
        connections: { type: 'integer', minimum: 1, maximum: 10000 },
        requestsPerSecond: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        requestBurst: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        unknownBytesPerSecond: { type: 'integer', minimum: 8192, maximum: 1_073_741_824 },
      },
    },
    pkcs11: {
      type: 'object',
      additionalProperties: false,
      properties: {
        callTimeoutSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 3600 },
        loginTimeoutSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 3600 },
      },
    },
    keyPurpose: {
      type: 'object',
      additionalProperties: false,
      properties: { dualUse: { enum: ['signing', 'authentication', 'cms-and-authentication'] } },
    },
  },
} as const;

// Compiled on first use, and without checking CONFIG_SCHEMA against the JSON Schema meta-schema
// (test/unit/config.test.ts does): compiling the meta-schema at every start cost more than the
// config schema itself.
let validator: ValidateFunction | undefined;

/** Validate a parsed config object and fill in the defaults. */
export function resolveConfig(raw: unknown): KelidConfig {
  const validate = (validator ??= new Ajv({
    allErrors: true,
    strict: true,
    allowUnionTypes: true,
    validateSchema: false,
  }).compile(CONFIG_SCHEMA));
  if (!validate(raw)) {
    const detail = (validate.errors ?? [])
      .slice(0, 5)
      .map((e) => `${e.instancePath || '(root)'} ${e.message ?? ''}`.trim())
      .join('; ');
    throw new KelidError('ERR_INVALID_INPUT', `invalid config: ${detail}`);
  }
  const c = raw as Partial<KelidConfig>;
  const d = DEFAULT_CONFIG;
  return {
    ...d,
    ...c,
    consent: {
      ...d.consent,
      ...c.consent,
      promptsPerMinute: { ...d.consent.promptsPerMinute, ...c.consent?.promptsPerMinute },
    },
    pinPolicy: {
      user: { ...d.pinPolicy.user, ...c.pinPolicy?.user },
      so: { ...d.pinPolicy.so, ...c.pinPolicy?.so },
    },
    revocation: { ...d.revocation, ...c.revocation },
    limits: { ...d.limits, ...c.limits },
    pkcs11: { ...d.pkcs11, ...c.pkcs11 },
    keyPurpose: { ...d.keyPurpose, ...c.keyPurpose },
    updates: { ...d.updates, ...c.updates },
    modules: c.modules ?? [],
    raOrigins: c.raOrigins ?? [],
    sites: c.sites ?? [],
    devOrigins: c.devOrigins ?? [],
  };
}

/** Read a config file (JSON); no file means all defaults. */
export function loadConfig(file?: string): KelidConfig {
  if (!file) return resolveConfig({});
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new KelidError(
      'ERR_INVALID_INPUT',
      `cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new KelidError('ERR_INVALID_INPUT', `config file ${file} is not valid JSON`);
  }
  return resolveConfig(raw);
}
