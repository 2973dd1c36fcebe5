import { describe, expect, it } from 'vitest';
import { formatConsentRequests } from '../../../src/cli/commands/consent.js';
import type { ConsentRequestView } from '../../../src/consent/consent-broker.js';

describe('kelid consent list', () => {
  describe('formatConsentRequests', () => {
    it('prints the subject and every alternative name of a certificate request', () => {
      const view: ConsentRequestView = {
        requestId: 'r1',
        origin: 'https://ra.example',
        tier: 'ra',
        method: 'csr.create',
        token: { label: 't', serialNumber: '1', manufacturer: 'm', model: 'x' },
        csr: {
          subject: 'C=IR,CN=علی رضایی',
          subjectAltNames: ['email:ali@example.ir', 'dns:ali.example.ir'],
        },
        digests: [],
        needs: ['userPin'],
        warnings: [],
        pinRules: {
          user: { minLength: 4, maxLength: 8, charset: 'digits' },
          so: { minLength: 4, maxLength: 8, charset: 'digits' },
        },
        expiresAt: '2026-01-01T00:00:00.000Z',
      };
      const text = formatConsentRequests([view]);
      expect(text).toContain('  csr subject: C=IR,CN=علی رضایی\n');
      expect(text).toContain('  csr name:    email:ali@example.ir\n');
      expect(text).toContain('  csr name:    dns:ali.example.ir\n');
    });
  });
});
