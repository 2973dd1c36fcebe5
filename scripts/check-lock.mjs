#!/usr/bin/env node
// Fails when package-lock.json does not match package.json. `npm ci` refuses a lock whose tree no
// longer satisfies package.json, but only once it has asked the registry; it lets through a lock
// whose root entry is stale as long as the old tree still satisfies the new ranges (a dependency
// added that happens to be installed transitively, a range edited, one removed). `npm install`
// rewrites the root entry every time, so a root entry that differs means the lock was not
// regenerated after package.json changed. Offline, no dependencies, milliseconds.
//   node scripts/check-lock.mjs [directory]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2] ?? process.cwd();
const fields = ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies'];

const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
let lock;
try {
  lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));
} catch (error) {
  fail([`cannot read package-lock.json: ${error.message}`]);
}

const problems = [];
if (!(lock.lockfileVersion >= 2)) problems.push(`lockfileVersion ${lock.lockfileVersion}: need 2 or 3`);
const root = lock.packages?.[''] ?? {};
for (const field of fields) {
  const wanted = pkg[field] ?? {};
  const locked = root[field] ?? {};
  for (const name of new Set([...Object.keys(wanted), ...Object.keys(locked)])) {
    if (wanted[name] === locked[name]) continue;
    if (wanted[name] === undefined) problems.push(`${field}.${name}: in the lock, not in package.json`);
    else if (locked[name] === undefined) problems.push(`${field}.${name}: in package.json, not in the lock`);
    else problems.push(`${field}.${name}: package.json ${wanted[name]}, lock ${locked[name]}`);
  }
  for (const name of Object.keys(wanted)) {
    if (lock.packages?.[`node_modules/${name}`] === undefined && field !== 'peerDependencies') {
      problems.push(`${field}.${name}: no node_modules/${name} entry in the lock`);
    }
  }
}
if (problems.length > 0) fail(problems);

function fail(lines) {
  console.error('package-lock.json is out of sync with package.json. Run `npm install` and commit both:');
  for (const line of lines) console.error(`  ${line}`);
  process.exit(1);
}
