import type { PersistenceAdapter } from '@cagey-sessions/core';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { batchChecks, isolationChecks } from './checks-batches.js';
import { idChecks, loadChecks, roundTripChecks } from './checks-data.js';
import { lifecycleChecks } from './checks-lifecycle.js';
import { restoreChecks, restoreConcurrencyChecks } from './checks-restore.js';
import { scanChecks } from './checks-scan.js';
import { concurrencyChecks, deleteChecks, versionChecks } from './checks-versions.js';
import { writeIdChecks } from './checks-write-ids.js';
import { type Check, CheckContext } from './context.js';
import {
  type CheckOutcome,
  type ConformanceGroup,
  type ConformanceOptions,
  type ConformanceReport,
  conformanceGroups,
} from './types.js';

/** Every check of the suite, by group. */
export const conformanceChecks: Readonly<Record<ConformanceGroup, readonly Check[]>> = {
  load: loadChecks,
  roundTrip: roundTripChecks,
  versions: [...versionChecks, ...writeIdChecks],
  isolation: isolationChecks,
  batches: batchChecks,
  delete: deleteChecks,
  concurrency: [...concurrencyChecks, ...restoreConcurrencyChecks],
  ids: idChecks,
  scan: scanChecks,
  restore: restoreChecks,
  lifecycle: lifecycleChecks,
};

/** What is not covered, stated as a test title and a warning. */
interface Notice {
  title: string;
  message: string;
}

type PlanEntry = { check: Check } | { notice: Notice };

interface Plan {
  notices: Notice[];
  groups: { group: ConformanceGroup; entries: PlanEntry[] }[];
}

const capabilityNotices: Record<NonNullable<Check['requires']>, Notice> = {
  rejectedUserData: {
    title: 'capability: rejectedUserData not declared',
    message:
      'capabilities.rejectedUserData is not declared: isolation of a value the store itself refuses is not ' +
      'checked. Declare a JSON value your store rejects (e.g. "\\u0000" for PostgreSQL jsonb) if there is one.',
  },
  injectedClient: {
    title: 'capability: injectedClient not declared',
    message:
      'injectedClient is not provided: that close() leaves a caller-owned client open is not checked. ' +
      'Provide it if the adapter accepts an existing client.',
  },
};

function planConformance(options: ConformanceOptions<PersistenceAdapter>): Plan {
  const notices: Notice[] = [];
  if (!options.inspect) {
    notices.push({
      title: 'capability: inspect not declared',
      message:
        'inspect is not provided: stored values are checked only through load of the adapter under test, ' +
        'not against what the store really holds.',
    });
  }
  const groups: Plan['groups'] = [];
  for (const group of conformanceGroups) {
    const left = (options.only && !options.only.includes(group)) || options.skip?.includes(group);
    if (left) {
      notices.push({
        title: `group ${group}: not run (left out by the only/skip options)`,
        message: `group "${group}" was left out by the only/skip options: its ${conformanceChecks[group].length} checks did not run.`,
      });
      continue;
    }
    const entries = conformanceChecks[group].map((check): PlanEntry => {
      const missing = check.requires !== undefined && !hasCapability(options, check.requires);
      return missing ? { notice: capabilityNotices[check.requires!] } : { check };
    });
    groups.push({ group, entries });
  }
  return { notices, groups };
}

function hasCapability(
  options: ConformanceOptions<PersistenceAdapter>,
  capability: NonNullable<Check['requires']>,
) {
  return capability === 'injectedClient'
    ? options.injectedClient !== undefined
    : options.capabilities?.rejectedUserData !== undefined;
}

function checkOptions(options: ConformanceOptions<PersistenceAdapter>): void {
  const problems: string[] = [];
  if (typeof options?.name !== 'string' || options.name === '')
    problems.push('name must be a non-empty string');
  if (typeof options?.createAdapter !== 'function') problems.push('createAdapter must be a function');
  for (const key of ['only', 'skip'] as const) {
    const groups = options?.[key];
    if (groups === undefined) continue;
    const unknown = Array.isArray(groups) ? groups.filter((g) => !conformanceGroups.includes(g)) : [groups];
    if (unknown.length > 0) {
      problems.push(
        `${key} has unknown groups ${JSON.stringify(unknown)} (groups: ${conformanceGroups.join(', ')})`,
      );
    }
  }
  const batchSize = options?.capabilities?.batchSize;
  if (batchSize !== undefined && !(Number.isSafeInteger(batchSize) && batchSize >= 1)) {
    problems.push('capabilities.batchSize must be a positive integer');
  }
  const scanUsers = options?.capabilities?.scanUsers;
  if (scanUsers !== undefined && !(Number.isSafeInteger(scanUsers) && scanUsers >= 100)) {
    problems.push('capabilities.scanUsers must be an integer of at least 100');
  }
  const delivery = options?.capabilities?.scanDelivery;
  if (delivery !== undefined && delivery !== 'exactlyOnce' && delivery !== 'atLeastOnce') {
    problems.push("capabilities.scanDelivery must be 'exactlyOnce' or 'atLeastOnce'");
  }
  const rejected = options?.capabilities?.rejectedUserData;
  if (rejected !== undefined && (typeof rejected !== 'object' || rejected === null)) {
    problems.push('capabilities.rejectedUserData must be an object (a userData value)');
  }
  if (problems.length > 0) throw new TypeError(`Invalid conformance options: ${problems.join('; ')}.`);
}

async function runCheck(
  options: ConformanceOptions<PersistenceAdapter>,
  check: Check,
  namespaces: string[],
): Promise<CheckOutcome> {
  const t = new CheckContext(options, namespaces);
  let error: unknown;
  let failed = false;
  let uncovered: string | undefined;
  try {
    const method = check.method;
    if (method !== undefined && typeof (await t.adapter())[method] !== 'function') {
      uncovered =
        `the adapter has no ${method}(): the ${check.group} group's checks did not run. ` +
        `${method}() is optional; implement it (see WRITING-AN-ADAPTER.md) to have it checked.`;
    } else {
      await check.run(t);
    }
  } catch (caught) {
    failed = true;
    error = caught;
  }
  try {
    await t.dispose();
  } catch (caught) {
    if (!failed) {
      failed = true;
      error = caught;
    }
  }
  const outcome: CheckOutcome = { group: check.group, name: check.name, notes: t.notes };
  if (uncovered !== undefined) outcome.uncovered = uncovered;
  if (failed) outcome.error = error ?? new Error('the check failed with an undefined error');
  return outcome;
}

/**
 * Registers the conformance suite as vitest tests. Call it at the top level of an adapter's test file.
 * What the options leave uncovered (no inspect, no injected client, skipped groups) shows up as passing tests
 * titled "capability: …" or "group …: not run" that log a warning, never as silently skipped tests.
 */
export function runAdapterConformance<A extends PersistenceAdapter>(options: ConformanceOptions<A>): void {
  const opts = options as unknown as ConformanceOptions<PersistenceAdapter>;
  checkOptions(opts);
  const plan = planConformance(opts);
  const namespaces: string[] = [];
  const timeout = opts.testTimeout ?? 60_000;
  const warn = (message: string) => console.warn(`[conformance: ${opts.name}] ${message}`);
  const noticeTest = (notice: Notice) =>
    it(notice.title, async (context) => {
      warn(notice.message);
      await annotate(context, notice.message);
    });

  describe(`adapter conformance: ${opts.name}`, () => {
    if (opts.beforeAll) beforeAll(() => opts.beforeAll!(), timeout);
    if (opts.afterAll) afterAll(() => opts.afterAll!({ namespaces }), timeout);
    for (const notice of plan.notices) noticeTest(notice);
    for (const { group, entries } of plan.groups) {
      describe(group, () => {
        for (const entry of entries) {
          if ('notice' in entry) {
            noticeTest(entry.notice);
            continue;
          }
          it(
            entry.check.name,
            async (context) => {
              const outcome = await runCheck(opts, entry.check, namespaces);
              if (outcome.uncovered !== undefined) {
                warn(outcome.uncovered);
                await annotate(context, outcome.uncovered);
              }
              for (const note of outcome.notes) {
                warn(`${entry.check.name}: ${note}`);
                await annotate(context, note);
              }
              if ('error' in outcome) throw outcome.error;
            },
            timeout,
          );
        }
      });
    }
  });
}

/**
 * Runs the suite's checks directly, without registering tests, and reports each outcome. Useful to assert that
 * a deliberately broken adapter fails, or to run the checks from a script. Uses vitest's `expect`.
 */
export async function checkConformance<A extends PersistenceAdapter>(
  options: ConformanceOptions<A>,
): Promise<ConformanceReport> {
  const opts = options as unknown as ConformanceOptions<PersistenceAdapter>;
  checkOptions(opts);
  const plan = planConformance(opts);
  const namespaces: string[] = [];
  const report: ConformanceReport = { passed: [], failed: [], notices: plan.notices.map((n) => n.message) };
  await opts.beforeAll?.();
  try {
    for (const { entries } of plan.groups) {
      for (const entry of entries) {
        if ('notice' in entry) {
          if (!report.notices.includes(entry.notice.message)) report.notices.push(entry.notice.message);
          continue;
        }
        const outcome = await runCheck(opts, entry.check, namespaces);
        if ('error' in outcome) report.failed.push(outcome);
        else if (outcome.uncovered === undefined) report.passed.push(outcome);
        else if (!report.notices.includes(outcome.uncovered)) report.notices.push(outcome.uncovered);
      }
    }
  } finally {
    await opts.afterAll?.({ namespaces });
  }
  return report;
}

async function annotate(context: unknown, message: string): Promise<void> {
  const fn = (context as { annotate?: (message: string, type?: string) => Promise<unknown> }).annotate;
  if (typeof fn === 'function') await fn(message, 'warning');
}
