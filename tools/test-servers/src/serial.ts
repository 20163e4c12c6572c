/**
 * Runs lifecycle operations (restart, stop) one at a time in call order, so a stop() issued during a restart()
 * waits for it instead of racing it.
 */
export function serialQueue(): <T>(operation: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(operation: () => Promise<T>) => {
    const result = tail.then(operation);
    tail = result.catch(() => undefined);
    return result;
  };
}
