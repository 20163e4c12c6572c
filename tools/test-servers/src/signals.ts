import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** A process's parent and its state letter (`R`, `S`, `T` stopped, `Z` zombie, …). */
interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly state: string;
}

/** One process from /proc/<pid>/stat; the command name may hold spaces and parentheses, so parse after the last ')'. */
function readStat(pid: number): ProcessInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state = '', ppid = ''] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { pid, ppid: Number(ppid), state };
  } catch {
    return undefined;
  }
}

/** Every process on the machine: /proc on Linux, `ps` elsewhere (macOS). */
function allProcesses(): ProcessInfo[] {
  if (process.platform === 'linux') {
    return readdirSync('/proc').flatMap((name) => {
      const info = /^\d+$/.test(name) ? readStat(Number(name)) : undefined;
      return info ? [info] : [];
    });
  }
  const listing = execFileSync('ps', ['-A', '-o', 'pid=,ppid=,stat='], { encoding: 'utf8', timeout: 5_000 });
  return listing.split('\n').flatMap((line) => {
    const [pid, ppid, stat] = line.trim().split(/\s+/);
    return pid && ppid && stat ? [{ pid: Number(pid), ppid: Number(ppid), state: stat.charAt(0) }] : [];
  });
}

/** `root` followed by all its descendants (for PostgreSQL: the postmaster, its backends and helpers). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const { pid, ppid } of allProcesses()) {
    const siblings = children.get(ppid);
    if (siblings) siblings.push(pid);
    else children.set(ppid, [pid]);
  }
  const tree: number[] = [];
  const pending = [root];
  // A process tree has no cycles; the bound only guards against a listing that changed while it was read.
  while (pending.length > 0 && tree.length < 10_000) {
    const pid = pending.pop()!;
    tree.push(pid);
    pending.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** The state letter of `pid`, or undefined when it no longer exists. */
export function processState(pid: number): string | undefined {
  if (process.platform === 'linux') return readStat(pid)?.state;
  try {
    const stat = execFileSync('ps', ['-o', 'stat=', '-p', String(pid)], { encoding: 'utf8', timeout: 5_000 });
    return stat.trim().charAt(0) || undefined;
  } catch {
    return undefined;
  }
}

/** Gone: no such process, or a zombie (dead, waiting to be reaped by a parent that may never do so). */
export function isGone(pid: number): boolean {
  const state = processState(pid);
  return state === undefined || state === 'Z' || state === 'X';
}

/** Stopped by a signal (`T`; `t` when traced), or gone. */
export function isStopped(pid: number): boolean {
  const state = processState(pid);
  return state === 'T' || state === 't' || isGone(pid);
}

export function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** Polls `condition` every 10 ms; false when it still does not hold after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 0; attempt < 100_000 && Date.now() < deadline; attempt++) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return condition();
}
