/**
 * Every option, event, stats field and error code is documented once, in the README of the package that owns
 * it: each table lists exactly the names of the type it documents, each name in one row. A name added to a type
 * fails here until the README has it; a name removed fails until the README drops it.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Table } from '../src/markdown.js';
import { documentedNames, findTable, loadReference, type Reference } from '../src/reference.js';
import { readReadme } from '../src/workspace.js';

let reference: Reference;
beforeAll(() => {
  reference = loadReference();
});

const tablesOf = (path: string) => readReadme(path).tables;
const core = tablesOf('packages/core/README.md');

/** The names a table documents, each once, sorted: what `expected` must equal. */
function documented(table: Table, column = 0): string[] {
  const names = documentedNames(table, column);
  const twice = names.filter((name, index) => names.indexOf(name) !== index);
  expect(twice, `documented more than once in the table at line ${table.line}`).toEqual([]);
  return [...names].sort();
}

/** The codes every adapter's errors can carry (see the conformance suite's groups). */
const ADAPTER_CONTRACT_CODES = [
  'ADAPTER_CLOSED',
  'ADAPTER_ERROR',
  'DUPLICATE_KEY',
  'INVALID_CURSOR',
  'INVALID_OPTIONS',
  'INVALID_USER_DATA',
  'INVALID_USER_ID',
  'INVALID_VERSION',
  'VERSION_CONFLICT',
];

describe('core README', () => {
  it('documents every ErrorCode once in its Errors table, and no other code', () => {
    const table = findTable(core, 'Errors', 'Class');
    expect(documented(table, 1)).toEqual(reference.literals('CoreErrorCode'));
  });

  it('documents every manager option once, userData.persistence and retry key by key', () => {
    const table = findTable(core, '`create(apis?, options?)` and `new SessionManager(options?)`', 'Option');
    expect(documented(table)).toEqual(
      reference.properties('CoreOptions', ['userData', 'userData.persistence', 'userData.persistence.retry']),
    );
  });

  it('documents every event once', () => {
    expect(documented(findTable(core, 'Events', 'Event'))).toEqual(reference.properties('CoreEvents'));
  });

  it('documents every stats() field once', () => {
    expect(documented(findTable(core, 'SessionManager', 'Field'))).toEqual(reference.properties('CoreStats'));
  });

  it('shows every member of PersistenceAdapter in Writing an adapter', () => {
    const readme = readReadme('packages/core/README.md');
    const block = readme.blocks.find((b) => /interface PersistenceAdapter \{/.test(b.code));
    expect(block, 'the PersistenceAdapter block under Writing an adapter').toBeDefined();
    const members = [...block!.code.matchAll(/^\s+(?:readonly\s+)?(\w+)\??[(:]/gm)].map((m) => m[1]!).sort();
    expect(members).toEqual(reference.properties('CoreAdapter'));
  });
});

describe.each([
  { path: 'packages/adapter-postgres/README.md', type: 'PostgresOptions' as const },
  { path: 'packages/adapter-redis/README.md', type: 'RedisOptions' as const },
  { path: 'packages/adapter-mongo/README.md', type: 'MongoOptions' as const },
])('$path', ({ path, type }) => {
  const tables = tablesOf(path);

  it('documents every option once in its Options table', () => {
    expect(documented(findTable(tables, 'Options', 'option'))).toEqual(reference.properties(type));
  });

  it('lists every code of the adapter contract in its Errors table, once, and only ErrorCodes', () => {
    const codes = documented(findTable(tables, 'Errors', 'code'));
    expect(codes).toEqual(expect.arrayContaining(ADAPTER_CONTRACT_CODES));
    expect(codes.filter((code) => !reference.literals('CoreErrorCode').includes(code))).toEqual([]);
  });
});

describe('packages/testing/README.md', () => {
  const tables = tablesOf('packages/testing/README.md');

  it('documents every MemoryAdapter option once', () => {
    const table = findTable(tables, '`new MemoryAdapter(options?)`', 'option');
    expect(documented(table)).toEqual(reference.properties('MemoryOptions'));
  });

  it('documents every FaultyAdapter option once', () => {
    const table = findTable(tables, '`new FaultyAdapter(inner, options?)`', 'option');
    expect(documented(table)).toEqual(reference.properties('FaultyOptions'));
  });

  it('documents every conformance suite option once, capabilities key by key', () => {
    const table = findTable(
      tables,
      '`runAdapterConformance(options)` / `checkConformance(options)`',
      'option',
    );
    expect(documented(table)).toEqual(reference.properties('ConformanceSuiteOptions', ['capabilities']));
  });

  it('lists the codes of the adapter contract in its Errors table, once, and only ErrorCodes', () => {
    const codes = documented(findTable(tables, 'Errors', 'code'));
    expect(codes).toEqual(expect.arrayContaining(ADAPTER_CONTRACT_CODES));
    expect(codes.filter((code) => !reference.literals('CoreErrorCode').includes(code))).toEqual([]);
  });
});
