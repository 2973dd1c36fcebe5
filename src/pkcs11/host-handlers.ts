// The module host's dispatch table, typed against HostMethods: a method without a handler, a handler
// for a method that does not exist, or a handler with the wrong params or result does not compile.

import { KelidError } from '../model/errors.js';
import type { HostMethod, HostMethods } from './host-protocol.js';

/** One handler per host method, taking that method's params and giving its result. */
export type HostHandlers = {
  readonly [M in HostMethod]: (
    params: HostMethods[M]['params'],
  ) => HostMethods[M]['result'] | Promise<HostMethods[M]['result']>;
};

/**
 * The handler for a method name that came over the IPC channel. Only the table's own properties
 * count, so a name such as `__proto__`, `constructor` or `toString` reaches no inherited function.
 */
export function hostHandler(handlers: HostHandlers, method: unknown): (params: unknown) => unknown {
  const fn =
    typeof method === 'string' && Object.hasOwn(handlers, method)
      ? (handlers[method as HostMethod] as unknown)
      : undefined;
  if (typeof fn !== 'function') {
    throw new KelidError('ERR_INTERNAL', `unknown host method ${String(method).slice(0, 64)}`);
  }
  return fn as (params: unknown) => unknown;
}
