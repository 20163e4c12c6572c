/**
 * What the sources say the reference tables must hold: the names of options, events, stats fields and error
 * codes, read through the TypeScript compiler from the packages' public types.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { namesInCell, type Table } from './markdown.js';
import { compilerOptions } from './typecheck.js';
import { cacheDir } from './workspace.js';

/** Each documented type, by the name the tests use, as TypeScript source (imports first). */
const TYPES = `
import type {
  ErrorCode,
  PersistenceAdapter,
  SessionManagerEvents,
  SessionManagerOptions,
  SessionManagerStats,
} from '@cagey-sessions/core';
import type { MongoAdapterOptions, CreateMongoAdapterOptions } from '@cagey-sessions/adapter-mongo';
import type { PostgresAdapterOptions, CreatePostgresAdapterOptions } from '@cagey-sessions/adapter-postgres';
import type { RedisAdapterOptions, CreateRedisAdapterOptions } from '@cagey-sessions/adapter-redis';
import type { FaultyAdapterOptions, MemoryAdapterOptions } from '@cagey-sessions/testing';
import type { ConformanceOptions } from '@cagey-sessions/testing/conformance';

export type CoreErrorCode = ErrorCode;
export type CoreOptions = SessionManagerOptions;
export type CoreEvents = SessionManagerEvents;
export type CoreStats = SessionManagerStats;
export type CoreAdapter = PersistenceAdapter;
export type MongoOptions = MongoAdapterOptions | CreateMongoAdapterOptions;
export type PostgresOptions = PostgresAdapterOptions | CreatePostgresAdapterOptions;
export type RedisOptions = RedisAdapterOptions | CreateRedisAdapterOptions;
export type MemoryOptions = MemoryAdapterOptions;
export type FaultyOptions = FaultyAdapterOptions;
export type ConformanceSuiteOptions = ConformanceOptions;
`;

export type ReferenceType =
  | 'CoreErrorCode'
  | 'CoreOptions'
  | 'CoreEvents'
  | 'CoreStats'
  | 'CoreAdapter'
  | 'MongoOptions'
  | 'PostgresOptions'
  | 'RedisOptions'
  | 'MemoryOptions'
  | 'FaultyOptions'
  | 'ConformanceSuiteOptions';

export interface Reference {
  /** The string literals of a union of them (`ErrorCode`). */
  literals(name: ReferenceType): string[];
  /**
   * The property names of an object type (of every member, for a union), sorted. A property named in `expand`
   * is replaced by its own properties, as `parent.child` (`userData.persistence.retry.maxDelay`).
   */
  properties(name: ReferenceType, expand?: readonly string[]): string[];
}

export function loadReference(): Reference {
  const dir = join(cacheDir, 'reference');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'types.ts');
  writeFileSync(file, TYPES);
  const program = ts.createProgram({ rootNames: [file], options: compilerOptions() });
  const source = program.getSourceFile(file);
  if (source === undefined) throw new Error(`the compiler did not load ${file}`);
  const problems = [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)];
  if (problems.length > 0) {
    throw new Error(
      `the documented types do not resolve: ${problems.map((d) => ts.flattenDiagnosticMessageText(d.messageText, ' ')).join('; ')}`,
    );
  }
  const checker = program.getTypeChecker();
  const types = new Map<string, ts.Type>();
  for (const statement of source.statements) {
    if (ts.isTypeAliasDeclaration(statement))
      types.set(statement.name.text, checker.getTypeAtLocation(statement.name));
  }
  const typeOf = (name: string) => {
    const type = types.get(name);
    if (type === undefined) throw new Error(`no type ${name}`);
    return type;
  };

  const propertiesOf = (type: ts.Type, prefix: string, expand: readonly string[]): string[] => {
    const names = new Set<string>();
    const members = type.isUnion() ? type.types : [type];
    for (const member of members) {
      for (const property of checker.getPropertiesOfType(member)) {
        const path = `${prefix}${property.name}`;
        if (expand.includes(path)) {
          const propertyType = checker.getNonNullableType(checker.getTypeOfSymbol(property));
          for (const nested of propertiesOf(propertyType, `${path}.`, expand)) names.add(nested);
        } else {
          names.add(path);
        }
      }
    }
    return [...names].sort();
  };

  return {
    literals(name) {
      const type = typeOf(name);
      const members = type.isUnion() ? type.types : [type];
      return members
        .map((member) => (member.isStringLiteral() ? member.value : undefined))
        .filter((value): value is string => value !== undefined)
        .sort();
    },
    properties(name, expand = []) {
      return propertiesOf(typeOf(name), '', expand);
    },
  };
}

/** A table of a README, found by the heading above it and the title of its first column. */
export function findTable(tables: readonly Table[], heading: string, firstColumn: string): Table {
  const table = tables.find(
    (candidate) =>
      candidate.heading === heading && candidate.header[0]?.toLowerCase() === firstColumn.toLowerCase(),
  );
  if (table === undefined)
    throw new Error(`no table with first column "${firstColumn}" under the heading "${heading}"`);
  return table;
}

/**
 * The names a column documents: the names in backticks in each cell (`` `only` / `skip` `` gives both), in
 * table order, repeated names included (so that a test can see a name documented twice).
 */
export function documentedNames(table: Table, column = 0): string[] {
  return table.rows.flatMap((row) => namesInCell(row.cells[column] ?? ''));
}
