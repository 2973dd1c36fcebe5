// The layer rules of src/ (DESIGN.md "Layers"), checked by `npm run lint`.
// Floors, bottom first; a module may import its own floor's folder and any floor below, never above:
//   0 model/                          wire/domain types, error codes, service contracts, origins, versions
//   1 support (log, paths, config)    process-wide helpers with no domain knowledge
//   2 pki/ pkcs11/ net/               ASN.1 and crypto; the PKCS#11 binding and module hosts; outbound HTTP
//   3 tokens/ audit/                  one token's objects, PINs and keys; the audit log
//   4 status/                         OCSP/CRL/AIA and the revocation policy
//   5 signing/                        raw, CMS, batch, login tokens
//   6 consent/                        prompts, site grants, the control channel
//   7 protocol/                       the JSON-RPC adapter
//   8 transport/                      WebSocket, HTTP routes, TLS, native messaging, bridge
//   9 agent/ services.ts install/     lifecycle, the composition root, install/doctor
//  10 cli/ index.ts packaged/ testing/  entry points; the test hooks they alone may load
// client/ is the browser SDK: it imports nothing from the agent.
const floors = [
  ['src/model/'],
  [
    'src/log\\.ts',
    'src/log-file\\.ts',
    'src/platform-paths\\.ts',
    'src/package-files\\.ts',
    'src/state-dir\\.ts',
    'src/config\\.ts',
  ],
  ['src/pki/', 'src/pkcs11/', 'src/net/'],
  ['src/tokens/', 'src/audit/'],
  ['src/status/'],
  ['src/signing/'],
  ['src/consent/'],
  ['src/protocol/'],
  ['src/transport/'],
  ['src/agent/', 'src/services\\.ts', 'src/install/'],
  ['src/cli/', 'src/index\\.ts', 'src/packaged/', 'src/testing/'],
];

const re = (paths) => `^(${paths.join('|')})`;

const upward = floors.slice(0, -1).map((paths, i) => ({
  name: `floor-${i}-imports-up`,
  comment: `${paths.join(', ')} may not import from a higher floor`,
  severity: 'error',
  from: { path: re(paths) },
  to: { path: re(floors.slice(i + 1).flat()) },
}));

module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'no-cycles',
      comment: 'Import cycles hide the real order of the layers.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'only-pkcs11-binds',
      comment: 'Only src/pkcs11/ talks to the PKCS#11 binding.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/pkcs11/' },
      to: { path: 'node_modules/pkcs11js/' },
    },
    {
      name: 'client-stands-alone',
      comment: 'The browser SDK ships alone: it imports nothing from the agent.',
      severity: 'error',
      from: { path: '^src/client/' },
      to: { path: '^src/', pathNot: '^src/(client/|model/types\\.ts$)' },
    },
    {
      name: 'client-takes-only-wire-types',
      comment: 'The SDK shares the wire types (type-only), never agent code.',
      severity: 'error',
      from: { path: '^src/client/' },
      to: { path: '^src/model/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'test-hooks-only-from-entries',
      comment:
        'The test hooks (crash points, hangs) are injected by the process entries in src/cli/, never imported by the modules they hook.',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/(cli|testing)/' },
      to: { path: '^src/testing/' },
    },
    {
      name: 'no-test-code-in-src',
      comment: 'Production modules never import test helpers.',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'every-module-has-a-floor',
      comment: 'A new top-level file or folder in src/ must be given a floor here.',
      severity: 'error',
      from: { path: '^src/', pathNot: `${re(floors.flat())}|^src/client/|^src/ui/` },
      to: {},
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^src/ui/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
    },
  },
};
