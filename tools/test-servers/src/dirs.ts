import {
  chownSync,
  constants,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunAs, trackDir, untrackDir } from './process.js';

/** Every directory made here starts with this, so a sweep never touches anything else. */
const PREFIX = 'cagey-test-server-';
const OWNER_FILE = 'owner.json';

let swept = false;

/**
 * A fresh temporary directory for one server, owned by `runAs` when given, removed by `removeServerDir` or when
 * this process exits. Directories left by killed runs are removed on the first call.
 */
export function makeServerDir(kind: string, runAs?: RunAs): string {
  const base = baseDir(runAs);
  if (!swept) {
    swept = true;
    sweepStaleDirs(base);
  }
  const dir = mkdtempSync(join(base, `${PREFIX}${kind}-`));
  trackDir(dir);
  writeFileSync(join(dir, OWNER_FILE), JSON.stringify({ pid: process.pid }));
  if (runAs) chownSync(dir, runAs.uid, runAs.gid);
  return dir;
}

export function removeServerDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  untrackDir(dir);
}

/** The server's user must be able to reach its directory; a private TMPDIR (e.g. under /root) is not. */
function baseDir(runAs?: RunAs): string {
  const base = tmpdir();
  if (!runAs) return base;
  try {
    if (statSync(base).mode & constants.S_IXOTH) return base;
  } catch {
    // Fall through to /tmp.
  }
  return '/tmp';
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readPid(file: string, json: boolean): number | undefined {
  try {
    const text = readFileSync(file, 'utf8');
    const pid = json
      ? (JSON.parse(text) as { pid?: unknown }).pid
      : Number.parseInt(text.split('\n')[0] ?? '', 10);
    return typeof pid === 'number' && Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Removes directories whose owning process is gone and whose PostgreSQL (if any) is not running. */
function sweepStaleDirs(base: string): void {
  let entries: string[];
  try {
    entries = readdirSync(base).filter((name) => name.startsWith(PREFIX));
  } catch {
    return;
  }
  for (const name of entries.slice(0, 1_000)) {
    const dir = join(base, name);
    const owner = readPid(join(dir, OWNER_FILE), true);
    if (owner === undefined || alive(owner)) continue;
    const postmaster = join(dir, 'data', 'postmaster.pid');
    if (existsSync(postmaster)) {
      const pid = readPid(postmaster, false);
      if (pid !== undefined && alive(pid)) continue;
    }
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Another process may be sweeping the same directory.
    }
  }
}
