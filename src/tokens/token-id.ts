import { createHash } from 'node:crypto';

/**
 * Stable, opaque token id: derived from module, manufacturer, model and serial — never the slot id,
 * which changes between processes. Tokens without a serial (not initialized yet) also need the slot
 * description to tell empty slots apart; their id changes once they are initialized, as the protocol says.
 */
export function tokenIdOf(parts: {
  moduleId: string;
  manufacturer: string;
  model: string;
  serialNumber: string;
  slotDescription: string;
}): string {
  const fields = [parts.moduleId, parts.manufacturer, parts.model, parts.serialNumber];
  if (parts.serialNumber === '') fields.push(parts.slotDescription);
  return createHash('sha256').update(fields.join('\u0000'), 'utf8').digest('hex').slice(0, 32);
}
