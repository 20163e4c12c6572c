/**
 * Whether PostgreSQL (or PGlite) answered that the table does not exist (`undefined_table`, 42P01): a wrong
 * `--table` or a URL naming another database, which retrying cannot fix. Looks through the adapter's error to
 * the driver's. (A target's table is created by `setup()`; only a store that is read can miss it.)
 */
export function tableMissing(error: unknown): boolean {
  let cause = error;
  for (let depth = 0; cause instanceof Error && depth < 5; depth++) {
    if ((cause as { code?: unknown }).code === '42P01') return true;
    cause = cause.cause;
  }
  return false;
}
