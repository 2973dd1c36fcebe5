import { describe, expect, it } from 'vitest';
import { bypassesProxy, parseProxyUrl, proxyFor } from '../../../src/status/proxy.js';

const u = (s: string): URL => new URL(s);

describe('proxyFor', () => {
  it('takes https_proxy for https URLs and http_proxy for http ones, lower case first', () => {
    const env = { HTTPS_PROXY: 'http://upper:1', https_proxy: 'http://lower:2', HTTP_PROXY: 'plain:3128' };
    expect(proxyFor(u('https://ocsp.example.ir/'), null, env)?.href).toBe('http://lower:2/');
    expect(proxyFor(u('http://ocsp.example.ir/'), null, env)?.href).toBe('http://plain:3128/');
    expect(proxyFor(u('http://ocsp.example.ir/'), null, {})).toBeUndefined();
  });

  it('prefers config `proxy` over the environment, and "direct" turns proxies off', () => {
    const env = { HTTP_PROXY: 'http://env:1' };
    expect(proxyFor(u('http://a.ir/'), 'http://config:8080', env)?.host).toBe('config:8080');
    expect(proxyFor(u('https://a.ir/'), 'http://config:8080', env)?.host).toBe('config:8080');
    expect(proxyFor(u('http://a.ir/'), 'direct', env)).toBeUndefined();
  });

  it('applies NO_PROXY to config and environment proxies alike', () => {
    const env = { HTTP_PROXY: 'http://env:1', NO_PROXY: '.bank.ir' };
    expect(proxyFor(u('http://crl.bank.ir/'), null, env)).toBeUndefined();
    expect(proxyFor(u('http://crl.bank.ir/'), 'http://config:1', env)).toBeUndefined();
    expect(proxyFor(u('http://crl.other.ir/'), 'http://config:1', env)).toBeDefined();
  });

  it('refuses proxy URLs it cannot use', () => {
    expect(() => parseProxyUrl('socks5://p:1080')).toThrow(TypeError);
    expect(() => parseProxyUrl('https://p:443')).toThrow(TypeError);
    expect(parseProxyUrl('http://user:p%40ss@p:3128').password).toBe('p%40ss');
  });
});

describe('bypassesProxy', () => {
  it.each([
    ['http://ocsp.example.ir/', '*', true],
    ['http://ocsp.example.ir/', 'example.ir', true],
    ['http://ocsp.example.ir/', '.example.ir', true],
    ['http://ocsp.example.ir/', '*.example.ir', true],
    ['http://example.ir/', '.example.ir', true],
    ['http://badexample.ir/', 'example.ir', false],
    ['http://example.ir.evil.com/', 'example.ir', false],
    ['http://ocsp.example.ir/', 'other.ir, example.ir', true],
    ['http://ocsp.example.ir:8080/', 'example.ir:8080', true],
    ['http://ocsp.example.ir/', 'example.ir:8080', false],
    ['https://ocsp.example.ir/', 'example.ir:443', true],
    ['http://10.1.2.3/', '10.1.2.3', true],
    ['http://[::1]:8080/', '[::1]:8080', true],
    ['http://[::1]/', '::1', true],
    ['http://10.1.2.3/', '', false],
  ])('%s with NO_PROXY=%j: %s', (url, noProxy, expected) => {
    expect(bypassesProxy(u(url), noProxy)).toBe(expected);
  });
});
