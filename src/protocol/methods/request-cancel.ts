import { callKey } from '../context.js';
import { defineMethod } from '../method.js';
import { object } from '../schema.js';

/**
 * `request.cancel {id}`: withdraw a call of this connection. A call waiting for consent is withdrawn
 * (the consent disappears; the call fails with ERR_USER_CANCELLED); a batch stops after the current
 * item. A call already running a single token operation cannot be stopped: `{cancelled: false}`.
 */
export const requestCancel = defineMethod<{ id: string | number }>({
  name: 'request.cancel',
  tiers: ['unknown', 'site', 'ra', 'console'],
  schema: object({ id: { oneOf: [{ type: 'string', minLength: 1, maxLength: 128 }, { type: 'integer' }] } }, [
    'id',
  ]),
  audit: 'never',
  async run(ctx, params) {
    const call = ctx.connection.calls.get(callKey(params.id));
    if (!call || call === ctx.connection.calls.get(callKey(ctx.id)) || !call.cancellable)
      return { cancelled: false };
    call.controller.abort();
    return { cancelled: true };
  },
});
