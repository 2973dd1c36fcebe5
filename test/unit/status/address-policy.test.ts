import { describe, expect, it } from 'vitest';
import type { LookupAddress } from 'node:dns';
import {
  DestinationRefused,
  assertLiteralAllowed,
  classifyAddress,
  guardedLookup,
  isAllowedAddress,
} from '../../../src/status/address-policy.js';
import type { AddressClass } from '../../../src/status/address-policy.js';

// Every range a page could aim the agent at through a certificate's URLs, in the textual forms DNS
// answers and URL parsers produce.
const TABLE: ReadonlyArray<readonly [string, AddressClass]> = [
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['93.184.215.14', 'public'],
  ['0.0.0.0', 'reserved'],
  ['0.1.2.3', 'reserved'],
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['100.63.255.255', 'public'],
  ['100.64.0.1', 'private'],
  ['100.127.255.255', 'private'],
  ['100.128.0.0', 'public'],
  ['127.0.0.1', 'private'],
  ['127.255.255.254', 'private'],
  ['169.254.169.254', 'private'],
  ['172.15.255.255', 'public'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['172.32.0.0', 'public'],
  ['192.0.0.8', 'private'],
  ['192.0.2.1', 'private'],
  ['192.168.1.1', 'private'],
  ['198.18.0.1', 'private'],
  ['198.19.255.255', 'private'],
  ['198.20.0.0', 'public'],
  ['203.0.113.9', 'private'],
  ['224.0.0.1', 'reserved'],
  ['239.255.255.250', 'reserved'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.255', 'reserved'],
  ['::', 'reserved'],
  ['::1', 'private'],
  ['0:0:0:0:0:0:0:1', 'private'],
  ['::ffff:127.0.0.1', 'private'],
  ['::ffff:7f00:1', 'private'],
  ['::ffff:a9fe:a9fe', 'private'],
  ['::ffff:8.8.8.8', 'public'],
  ['::ffff:0.0.0.0', 'reserved'],
  ['::127.0.0.1', 'private'],
  ['::8.8.8.8', 'public'],
  ['64:ff9b::7f00:1', 'private'],
  ['64:ff9b::808:808', 'public'],
  ['64:ff9b:1::1', 'private'],
  ['2002:7f00:1::1', 'private'],
  ['2002:808:808::1', 'public'],
  ['2001::1', 'private'],
  ['2001:db8::1', 'private'],
  ['100::1', 'reserved'],
  ['fc00::1', 'private'],
  ['fd12:3456::1', 'private'],
  ['fe80::1', 'private'],
  ['fe80::1%eth0', 'private'],
  ['febf::1', 'private'],
  ['fec0::1', 'private'],
  ['ff02::1', 'reserved'],
  ['2001:4860:4860::8888', 'public'],
  ['2606:4700::1111', 'public'],
  ['[::1]', 'private'],
  ['not an address', 'reserved'],
  ['1.2.3', 'reserved'],
  ['1::2::3', 'reserved'],
];

describe('classifyAddress', () => {
  it.each(TABLE)('%s is %s', (address, expected) => {
    expect(classifyAddress(address)).toBe(expected);
  });
});

describe('isAllowedAddress', () => {
  it('allows public addresses only, unless private networks are allowed; reserved ones never', () => {
    expect(isAllowedAddress('8.8.8.8', { allowPrivateNetworks: false })).toBe(true);
    expect(isAllowedAddress('127.0.0.1', { allowPrivateNetworks: false })).toBe(false);
    expect(isAllowedAddress('::ffff:169.254.169.254', { allowPrivateNetworks: false })).toBe(false);
    expect(isAllowedAddress('127.0.0.1', { allowPrivateNetworks: true })).toBe(true);
    expect(isAllowedAddress('0.0.0.0', { allowPrivateNetworks: true })).toBe(false);
    expect(isAllowedAddress('ff02::1', { allowPrivateNetworks: true })).toBe(false);
  });
});

describe('guardedLookup', () => {
  const resolve = (
    host: string,
    allowPrivateNetworks: boolean,
    all: boolean,
  ): Promise<{ err: Error | null; address: string | LookupAddress[] }> =>
    new Promise((done) =>
      guardedLookup({ allowPrivateNetworks })(host, { all }, (err, address) => done({ err, address })),
    );

  it('refuses a name that resolves to loopback, in both the single and the all-addresses form', async () => {
    for (const all of [false, true]) {
      const r = await resolve('localhost', false, all);
      expect(r.err).toBeInstanceOf(DestinationRefused);
    }
  });

  it('hands the socket the resolved addresses when the policy allows them', async () => {
    const single = await resolve('localhost', true, false);
    expect(single.err).toBeNull();
    expect(classifyAddress(single.address as string)).toBe('private');
    const all = await resolve('localhost', true, true);
    expect((all.address as LookupAddress[]).length).toBeGreaterThan(0);
  });

  it('passes resolver errors through unchanged', async () => {
    const r = await resolve('does-not-exist.invalid', false, false);
    expect(r.err).not.toBeNull();
    expect(r.err).not.toBeInstanceOf(DestinationRefused);
  });
});

describe('assertLiteralAllowed', () => {
  it('checks IP literals (which never reach lookup) and leaves names to the lookup', () => {
    const closed = { allowPrivateNetworks: false };
    expect(() => assertLiteralAllowed('127.0.0.1', closed)).toThrow(DestinationRefused);
    expect(() => assertLiteralAllowed('[::ffff:7f00:1]', closed)).toThrow(DestinationRefused);
    expect(() => assertLiteralAllowed('[fe80::1]', closed)).toThrow(DestinationRefused);
    expect(() => assertLiteralAllowed('8.8.8.8', closed)).not.toThrow();
    expect(() => assertLiteralAllowed('localhost', closed)).not.toThrow();
    expect(() => assertLiteralAllowed('127.0.0.1', { allowPrivateNetworks: true })).not.toThrow();
  });
});
