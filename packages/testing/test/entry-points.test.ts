/**
 * The package root (MemoryAdapter, FaultyAdapter) must load without vitest: game servers and other test
 * runners import it. Only `@cagey-sessions/testing/conformance` may reach vitest. Checked on the sources'
 * import graph, which is what the build emits module for module.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const srcDir = fileURLToPath(new URL('../src/', import.meta.url));

/** Every module reachable from `entry`, with the bare specifiers (packages) each one imports. */
async function importGraph(entry: string): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  const pending = [join(srcDir, entry)];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (graph.has(file)) continue;
    const source = await readFile(file, 'utf8');
    const specifiers = [
      ...source.matchAll(/^(?:import|export)\s[^;]*?from\s+'([^']+)'|^import\s+'([^']+)'/gms),
    ]
      .map((match) => match[1] ?? match[2]!)
      .concat([...source.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((match) => match[1]!));
    const packages: string[] = [];
    for (const specifier of specifiers) {
      if (specifier.startsWith('.')) pending.push(join(dirname(file), specifier.replace(/\.js$/, '.ts')));
      else packages.push(specifier);
    }
    graph.set(file, packages);
  }
  return graph;
}

function importersOf(graph: Map<string, string[]>, pkg: string): string[] {
  return [...graph]
    .filter(([, packages]) => packages.some((p) => p === pkg || p.startsWith(`${pkg}/`)))
    .map(([file]) => relative(srcDir, file));
}

describe('entry points', () => {
  it('the package root reaches no module that imports vitest', async () => {
    const graph = await importGraph('index.ts');
    expect(graph.size, 'the walk found the memory and faulty adapters').toBeGreaterThan(2);
    expect(importersOf(graph, 'vitest')).toEqual([]);
  });

  it('the conformance entry point is where vitest comes in', async () => {
    const graph = await importGraph('conformance/index.ts');
    expect(importersOf(graph, 'vitest').length).toBeGreaterThan(0);
  });
});
