// `npm run package`: builds Kelid for linux-x64 as
//   <out>/kelid                       one program (Node single-executable application): no Node, no
//                                     node_modules needed; UI, native-config, SDK and the pkcs11js
//                                     addon are embedded assets (src/packaged/sea-main.ts)
//   <out>/kelid_<version>_amd64.deb   that program under /opt/kelid, /usr/bin/kelid a symbolic link
// Needs the SDK built first (`npm run build`), dpkg-deb, and dpkg-shlibdeps (dpkg-dev) for Depends.
//   node scripts/package.mjs [--out <dir>] [--fast]     --fast: light .deb compression (tests)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const outArg = args.indexOf('--out');
const outDir = outArg >= 0 ? resolve(args[outArg + 1]) : join(root, 'dist-package');
const fast = args.includes('--fast');

const pkg = JSON.parse(fs.readFileSync(join(root, 'package.json'), 'utf8'));
const version = pkg.version;
// The SEA blob must come from the very node binary it is injected into.
const nodeBinary = process.execPath;
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const ADDON = 'node_modules/pkcs11js/build/Release/pkcs11.node';
const SDK = 'dist/client/kelid.js';

function run(cmd, argv, options = {}) {
  return execFileSync(cmd, argv, { cwd: root, encoding: 'utf8', ...options });
}

function listFiles(dir) {
  return fs
    .readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) =>
      relative(root, join(d.parentPath ?? d.path, d.name))
        .split('\\')
        .join('/'),
    )
    .sort();
}

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 12)) {
  console.error(`package: Node ${process.version} cannot embed assets: build with Node 20.12 or later`);
  process.exit(1);
}
// Distribution builds of node that link a shared libnode have no fuse: they cannot become the program.
if (!fs.readFileSync(nodeBinary).includes(SEA_FUSE)) {
  console.error(`package: ${nodeBinary} has no single-executable fuse: build with a Node.js release binary`);
  process.exit(1);
}
if (!fs.existsSync(join(root, SDK))) {
  console.error(`package: ${SDK} is missing: run "npm run build" first`);
  process.exit(1);
}
fs.mkdirSync(outDir, { recursive: true });
const work = fs.mkdtempSync(join(outDir, '.work-'));

try {
  // 1. One CommonJS file. pkcs11js's addon is not bundled: its require becomes a process.dlopen of
  //    the copy sea-main extracted (package-files points at it).
  const bundle = join(work, 'kelid.cjs');
  await build({
    absWorkingDir: root,
    entryPoints: ['src/packaged/sea-main.ts'],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    legalComments: 'none',
    logLevel: 'error',
    plugins: [
      {
        name: 'kelid-packaged',
        setup(b) {
          b.onLoad({ filter: /[\\/]src[\\/]pkcs11[\\/]pkcs11js\.ts$/ }, () => ({
            contents: "export const pkcs11js = require('pkcs11js');",
            loader: 'ts',
            resolveDir: join(root, 'src', 'pkcs11'),
          }));
          // ws's optional native speed-ups: not shipped; ws catches the error and uses JavaScript.
          b.onResolve({ filter: /^(bufferutil|utf-8-validate)$/ }, (a) => ({
            path: a.path,
            namespace: 'kelid-absent',
          }));
          b.onLoad({ filter: /.*/, namespace: 'kelid-absent' }, (a) => ({
            contents: `throw new Error(${JSON.stringify(`${a.path} is not part of the packaged program`)});`,
            loader: 'js',
          }));
          b.onResolve({ filter: /\.node$/ }, (a) => ({ path: a.path, namespace: 'kelid-addon' }));
          b.onLoad({ filter: /.*/, namespace: 'kelid-addon' }, () => ({
            contents: [
              "const { packagePath } = require('./src/package-files.ts');",
              'const m = { exports: {} };',
              `process.dlopen(m, packagePath(...${JSON.stringify(ADDON.split('/'))}));`,
              'module.exports = m.exports;',
            ].join('\n'),
            loader: 'js',
            resolveDir: root,
          }));
        },
      },
    ],
  });

  // 2. The embedded files and their manifest (names are package-relative paths, as packagePath takes).
  const files = [...listFiles('src/ui'), ...listFiles('native-config'), SDK, ADDON];
  const pkgSlim = join(work, 'package.json');
  fs.writeFileSync(pkgSlim, JSON.stringify({ name: pkg.name, version }) + '\n');
  const assets = { 'package.json': pkgSlim };
  for (const f of files) assets[f] = join(root, f);
  const manifest = { files: {} };
  for (const [name, file] of Object.entries(assets))
    manifest.files[name] = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  const manifestFile = join(work, 'kelid-manifest.json');
  fs.writeFileSync(manifestFile, JSON.stringify(manifest));
  assets['kelid-manifest.json'] = manifestFile;

  // 3. The single-executable application: blob, copy of node, blob injected.
  const blob = join(work, 'sea-prep.blob');
  fs.writeFileSync(
    join(work, 'sea-config.json'),
    JSON.stringify({
      main: bundle,
      output: blob,
      disableExperimentalSEAWarning: true,
      useCodeCache: true,
      assets,
    }),
  );
  run(nodeBinary, ['--experimental-sea-config', join(work, 'sea-config.json')], { stdio: 'pipe' });
  const program = join(outDir, 'kelid');
  fs.rmSync(program, { force: true });
  fs.copyFileSync(nodeBinary, program);
  fs.chmodSync(program, 0o755);
  // Node's own symbols and debug info (addons link against its dynamic symbols, which stay).
  run('strip', ['--strip-unneeded', '--remove-section=.comment', program], { stdio: 'pipe' });
  run(
    process.execPath,
    [
      join(root, 'node_modules/postject/dist/cli.js'),
      program,
      'NODE_SEA_BLOB',
      blob,
      '--sentinel-fuse',
      SEA_FUSE,
    ],
    { stdio: 'pipe' },
  );

  // 4. The .deb.
  const debName = `kelid_${version}_amd64.deb`;
  const tree = join(work, 'deb');
  const doc = join(tree, 'usr/share/doc/kelid');
  const man = join(tree, 'usr/share/man/man1');
  const overrides = join(tree, 'usr/share/lintian/overrides');
  for (const d of [
    'DEBIAN',
    'opt/kelid',
    'usr/bin',
    'usr/share/doc/kelid',
    'usr/share/man/man1',
    'usr/share/lintian/overrides',
  ])
    fs.mkdirSync(join(tree, d), { recursive: true, mode: 0o755 });
  fs.copyFileSync(program, join(tree, 'opt/kelid/kelid'));
  fs.chmodSync(join(tree, 'opt/kelid/kelid'), 0o755);
  // Absolute, as Debian policy wants for a link between top-level folders.
  fs.symlinkSync('/opt/kelid/kelid', join(tree, 'usr/bin/kelid'));
  const debian = join(root, 'scripts/debian');
  fs.copyFileSync(join(debian, 'copyright'), join(doc, 'copyright'));
  const date = new Date(Number(process.env.SOURCE_DATE_EPOCH ?? 0) * 1000 || Date.now()).toUTCString();
  const changelog = fs
    .readFileSync(join(debian, 'changelog'), 'utf8')
    .replaceAll('@VERSION@', version)
    .replaceAll('@DATE@', date.replace('GMT', '+0000'));
  fs.writeFileSync(join(doc, 'changelog.gz'), gzipSync(changelog, { level: 9 }));
  const manPage = fs.readFileSync(join(debian, 'kelid.1'), 'utf8').replaceAll('@VERSION@', version);
  fs.writeFileSync(join(man, 'kelid.1.gz'), gzipSync(manPage, { level: 9 }));
  fs.copyFileSync(join(debian, 'lintian-overrides'), join(overrides, 'kelid'));
  for (const f of [
    join(doc, 'copyright'),
    join(doc, 'changelog.gz'),
    join(man, 'kelid.1.gz'),
    join(overrides, 'kelid'),
  ])
    fs.chmodSync(f, 0o644);

  // Depends: what the program and its addon link against, as dpkg-shlibdeps reads it from the ELF
  // files and this machine's shlibs/symbols files (it needs a debian/control to run in).
  const shlib = join(work, 'shlib');
  fs.mkdirSync(join(shlib, 'debian'), { recursive: true });
  fs.writeFileSync(join(shlib, 'debian/control'), 'Source: kelid\n\nPackage: kelid\nArchitecture: amd64\n');
  const addonCopy = join(shlib, 'pkcs11.node');
  fs.copyFileSync(join(root, ADDON), addonCopy);
  const shlibs = run('dpkg-shlibdeps', ['-O', `-e${program}`, `-e${addonCopy}`], {
    cwd: shlib,
    stdio: 'pipe',
  });
  const depends = /shlibs:Depends=(.*)/.exec(shlibs)?.[1]?.trim();
  if (!depends) throw new Error(`dpkg-shlibdeps gave no Depends: ${shlibs}`);

  // As dpkg-gencontrol counts it: KiB per file rounded up, one per folder or link.
  let installedKb = 0;
  for (const d of fs.readdirSync(tree, { recursive: true, withFileTypes: true })) {
    const file = join(d.parentPath ?? d.path, d.name);
    if (relative(tree, file).startsWith('DEBIAN')) continue;
    installedKb += d.isFile() ? Math.ceil(fs.statSync(file).size / 1024) : 1;
  }
  const control = fs
    .readFileSync(join(debian, 'control'), 'utf8')
    .replaceAll('@VERSION@', version)
    .replaceAll('@DEPENDS@', depends)
    .replaceAll('@INSTALLED_SIZE@', String(installedKb));
  fs.writeFileSync(join(tree, 'DEBIAN/control'), control);
  const debFile = join(outDir, debName);
  fs.rmSync(debFile, { force: true });
  run(
    'dpkg-deb',
    ['--root-owner-group', fast ? '-Zgzip' : '-Zxz', fast ? '-z1' : '-z6', '--build', tree, debFile],
    {
      stdio: 'pipe',
    },
  );

  const mb = (f) => `${(fs.statSync(f).size / 1e6).toFixed(1)} MB`;
  console.log(`package: ${relative(process.cwd(), program) || program} (${mb(program)})`);
  console.log(
    `package: ${relative(process.cwd(), debFile) || debFile} (${mb(debFile)}), Depends: ${depends}`,
  );
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
