import type { ValidateFunction } from 'ajv';
import type { CallContext } from './context.js';
import { compileParams } from './schema.js';
import type { JsonSchema } from './schema.js';
import type { Tier } from '../model/types.js';

/** One method of PROTOCOL.md section 3, as written in `methods/<name>.ts`. */
export interface MethodSpec<P> {
  name: string;
  tiers: readonly Tier[];
  /** JSON Schema of `params` (closed, bounded). */
  schema: JsonSchema;
  /** The call waits for the user's consent. */
  consent?: boolean;
  /**
   * Audit lines (PROTOCOL.md section 9): every call from `ra` and console connections is audited;
   * `always` also audits calls from other tiers once the user saw their consent prompt (signatures,
   * site approvals: a call refused or withdrawn before that signed nothing, and auditing it would let
   * any page fill the log); `never` skips even ra/console calls (calls that do nothing: `agent.info`,
   * `request.cancel`).
   */
  audit?: 'always' | 'never';
  run(ctx: CallContext, params: P): Promise<unknown>;
}

/** A method ready for the dispatcher: params validated before `run` sees them. */
export interface MethodDefinition {
  readonly name: string;
  readonly tiers: readonly Tier[];
  readonly schema: JsonSchema;
  readonly consent: boolean;
  readonly audit: 'tier' | 'always' | 'never';
  readonly validate: ValidateFunction;
  run(ctx: CallContext, params: unknown): Promise<unknown>;
}

export function defineMethod<P>(spec: MethodSpec<P>): MethodDefinition {
  const validate = compileParams(spec.schema);
  return {
    name: spec.name,
    tiers: Object.freeze([...spec.tiers]),
    schema: spec.schema,
    consent: spec.consent ?? false,
    audit: spec.audit ?? 'tier',
    validate,
    // The dispatcher validates with `validate` before calling run, so params has type P here.
    run: (ctx, params) => spec.run(ctx, params as P),
  };
}
