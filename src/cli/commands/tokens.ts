import { Command } from 'commander';
import type { Token } from '../../model/types.js';
import { openTokenContext, printJson, withCommonOptions } from '../context.js';
import type { CommonOptions } from '../context.js';

function pinSummary(t: Token): string {
  const flags: string[] = [];
  const u = t.userPin;
  if (u.locked) flags.push('user PIN LOCKED');
  else if (u.finalTry) flags.push('user PIN: final try');
  else if (u.countLow) flags.push('user PIN: wrong tries entered');
  if (u.toBeChanged) flags.push('user PIN must be changed');
  if (t.soPin.locked) flags.push('SO-PIN LOCKED');
  // A TPM's dictionary-attack lockout: every token of the module, and no SO-PIN undoes it.
  if (t.lockout === 'device-wide' && (u.locked || t.soPin.locked))
    flags.push('locked device-wide: the SO-PIN cannot unblock it');
  return flags.join(', ');
}

export function formatTokens(tokens: Token[]): string {
  if (tokens.length === 0) return 'No tokens found.\n';
  return tokens
    .map((t) => {
      const state = !t.initialized ? 'not initialized' : !t.userPinInitialized ? 'user PIN not set' : 'ready';
      const lines = [
        `${t.label || '(no label)'}  [${state}]`,
        `  tokenId:  ${t.tokenId}`,
        `  module:   ${t.moduleId}`,
        `  device:   ${t.manufacturer} ${t.model}${t.serialNumber ? `, serial ${t.serialNumber}` : ''}`,
        `  slot:     ${t.slotDescription}`,
      ];
      const pins = pinSummary(t);
      if (pins) lines.push(`  warning:  ${pins}`);
      if (t.protectedAuthenticationPath) lines.push('  PIN pad:  yes');
      return lines.join('\n');
    })
    .join('\n\n')
    .concat('\n');
}

export function tokensCommand(): Command {
  return withCommonOptions(
    new Command('tokens').description('list the tokens of every loaded PKCS#11 module'),
  )
    .option('--json', 'machine-readable output (Token objects of PROTOCOL.md section 4)')
    .action(async (opts: CommonOptions) => {
      const ctx = await openTokenContext(opts);
      try {
        const tokens = await ctx.tokens.listTokens({ reinitialize: true });
        if (opts.json) printJson(tokens);
        else process.stdout.write(formatTokens(tokens));
      } finally {
        await ctx.close();
      }
    });
}
