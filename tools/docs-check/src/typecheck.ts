/**
 * Type-checks programs written out by `writePrograms` with the repository's TypeScript and compiler options
 * (`tsconfig.dev.json`: strict, NodeNext, `@cagey-sessions/*` mapped to the sources), JavaScript included
 * (`checkJs`). Diagnostics point at README lines.
 */
import ts from 'typescript';
import type { DocProgram } from './programs.js';
import { readmeLine } from './programs.js';
import { tsconfigPath } from './workspace.js';

export interface DocDiagnostic {
  program: DocProgram;
  /** README line the diagnostic is on. */
  line: number;
  code: number;
  message: string;
}

/** `packages/core/README.md:60: TS2304 Cannot find name 'userId'.` */
export function formatDiagnostic(diagnostic: DocDiagnostic): string {
  return `${diagnostic.program.readme}:${diagnostic.line}: TS${diagnostic.code} ${diagnostic.message}`;
}

export function compilerOptions(): ts.CompilerOptions {
  const parsed = ts.getParsedCommandLineOfConfigFile(
    tsconfigPath,
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
        throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
      },
    },
  );
  if (parsed === undefined) throw new Error(`cannot read ${tsconfigPath}`);
  return { ...parsed.options, noEmit: true, allowJs: true, checkJs: true };
}

/**
 * Type-checks programs: those of one README together (one TypeScript program, so that a declaration one of
 * its blocks makes, such as a module augmentation, is seen by the others, as in one project), each README apart
 * from the others. Resolves with every diagnostic in the programs' own code.
 */
export function typecheck(files: ReadonlyMap<DocProgram, string>): DocDiagnostic[] {
  const options = compilerOptions();
  const host = cachingHost(options);
  const byReadme = new Map<string, Map<string, DocProgram>>();
  for (const [program, file] of files) {
    const group = byReadme.get(program.readme) ?? new Map<string, DocProgram>();
    group.set(ts.sys.resolvePath(file), program);
    byReadme.set(program.readme, group);
  }
  const diagnostics: DocDiagnostic[] = [];
  let previous: ts.Program | undefined;
  for (const group of byReadme.values()) {
    const program = ts.createProgram({ rootNames: [...group.keys()], options, host, oldProgram: previous });
    previous = program;
    for (const diagnostic of program.getOptionsDiagnostics()) {
      throw new Error(`compiler options: ${ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')}`);
    }
    for (const [file, docProgram] of group) {
      const source = program.getSourceFile(file);
      if (source === undefined) throw new Error(`the compiler did not load ${file}`);
      for (const diagnostic of [
        ...program.getSyntacticDiagnostics(source),
        ...program.getSemanticDiagnostics(source),
      ]) {
        const { line } = source.getLineAndCharacterOfPosition(diagnostic.start ?? 0);
        diagnostics.push({
          program: docProgram,
          line: readmeLine(docProgram, line),
          code: diagnostic.code,
          message: ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n  '),
        });
      }
    }
  }
  return diagnostics;
}

/** A compiler host that parses each library and workspace source once for all the READMEs' programs. */
function cachingHost(options: ts.CompilerOptions): ts.CompilerHost {
  const host = ts.createCompilerHost(options);
  const parsed = new Map<string, ts.SourceFile | undefined>();
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    if (fileName.includes('/.cache/docs/'))
      return getSourceFile(fileName, languageVersion, onError, shouldCreate);
    if (!parsed.has(fileName))
      parsed.set(fileName, getSourceFile(fileName, languageVersion, onError, shouldCreate));
    return parsed.get(fileName);
  };
  return host;
}
