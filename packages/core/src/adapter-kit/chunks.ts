/**
 * Splits items into chunks of at most `maxCount` items and `maxSize` total size (by `sizeOf`), in order. An
 * item larger than `maxSize` alone makes a chunk of its own, so nothing is ever left out.
 */
export function chunkByCountAndSize<T>(
  items: readonly T[],
  sizeOf: (item: T) => number,
  { maxCount, maxSize }: { maxCount: number; maxSize: number },
): T[][] {
  const chunks: T[][] = [];
  let chunk: T[] = [];
  let size = 0;
  for (const item of items) {
    const itemSize = sizeOf(item);
    if (chunk.length > 0 && (chunk.length >= maxCount || size + itemSize > maxSize)) {
      chunks.push(chunk);
      chunk = [];
      size = 0;
    }
    chunk.push(item);
    size += itemSize;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}
