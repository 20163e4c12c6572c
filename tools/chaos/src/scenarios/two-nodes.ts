/**
 * Two game-server processes on one store; the same players move between them at random while they play
 * (purchases acknowledged after `persistNow()`, changes written on the interval).
 *
 * - `two-nodes-clean`: every move is a logout on one node (`session.destroy()`, persisting) and a login on the
 *   other. Each login must load exactly what the logout left; no conflict may happen.
 * - `two-nodes-unclean`: half the moves skip the logout (the old node is partitioned away and keeps the player's
 *   session: a stale node), stale nodes keep playing now and then, and halfway one node is killed with SIGKILL
 *   and replaced (a crashed node). The stale node's writes must be refused (`conflict`); it recovers by
 *   `reload()`.
 *
 * Both: 0 acknowledged changes lost (every acknowledged token is in the final stored data), 0 stale overwrites
 * (the stored data of a player only ever grows by appending: sampled with the raw driver every 500 ms, and at
 * the end it equals what the player's last node held).
 */
import { describeExit, GameCommandError, type GameProcess, type GameStats, sleep } from '../lib/game.js';
import {
  expect,
  proxyFor,
  readStored,
  recordStall,
  round,
  type Scenario,
  type ScenarioContext,
  type ScenarioResult,
  startGame,
  storeTuning,
  userIds,
  waitFor,
} from '../lib/scenario.js';
import { readPlayers, STORE_KINDS, type StoredPlayer } from '../lib/stores.js';

const USERS = 40;
const WORKERS = 6;
const SAMPLE_EVERY_MS = 500;

/** The issue asks for a minute; the default run is scaled down to keep the whole suite near 5 minutes. */
export function twoNodesDurationMs(): number {
  const seconds = Number(process.env.CHAOS_TWO_NODES_SECONDS ?? 20);
  return Number.isFinite(seconds) && seconds > 0 && seconds <= 600 ? seconds * 1_000 : 20_000;
}

function scenario(unclean: boolean): Scenario {
  return {
    name: unclean ? 'two-nodes-unclean' : 'two-nodes-clean',
    summary: unclean
      ? 'two game processes, players move without logging out (partitioned node) and one node is SIGKILLed: 0 stale overwrites, 0 acked lost, conflict then reload()'
      : 'two game processes, players log out of one and into the other at random: 0 stale overwrites, 0 acked lost, no conflicts',
    stores: STORE_KINDS,
    ...(unclean
      ? {
          onlyWhenNamed: {
            mongo:
              "FerretDB 1.x's conditional update is not atomic between concurrent writers (lost updates), so no version fence can hold on it; run two-nodes-unclean:mongo to see",
          },
        }
      : {}),
    limitMs: twoNodesDurationMs() + 60_000,
    run: (context, result) => run(context, result, unclean),
  };
}

export const twoNodesClean = scenario(false);
export const twoNodesUnclean = scenario(true);

interface Node {
  name: string;
  game: GameProcess;
  /** Stats fetched just before it was killed, if it was. */
  lastStats?: GameStats;
  /** Set just before the SIGKILL: errors from then on are the crash's. */
  killed?: boolean;
}

interface Player {
  id: string;
  home: Node | undefined;
  /** Nodes that still hold a session of this player that the player left without logging out. */
  ghosts: Set<Node>;
  busy: boolean;
  /** Acknowledged tokens and when the acknowledgement arrived. */
  acked: { token: string; at: number }[];
}

interface Counts {
  ops: number;
  acked: number;
  moves: number;
  uncleanMoves: number;
  ghostPurchases: number;
  ghostConflicts: number;
  homeConflicts: number;
  /** Operations that failed with the store up and the node alive. */
  errors: string[];
  /** Operations cut short by the crash. */
  cutShort: number;
  /** Logins that did not load what the logout before them left. */
  badHandoffs: string[];
  /** Logins whose identify() did not give the stored version (unsaved data of an earlier session taken over). */
  staleLogins: string[];
  /** Sampled stored data that did not extend the data sampled before it. */
  staleOverwrites: string[];
  /** Sampled stored data missing a token acknowledged before the sample began. */
  missingAcked: string[];
}

const isPrefix = (prefix: readonly string[], of: readonly string[]) =>
  prefix.length <= of.length && prefix.every((token, index) => of[index] === token);

async function run(context: ScenarioContext, result: ScenarioResult, unclean: boolean): Promise<void> {
  const durationMs = twoNodesDurationMs();
  result.notes.push(`${durationMs / 1000} s (the issue's minute, scaled down; CHAOS_TWO_NODES_SECONDS)`);
  const proxy = await proxyFor(context);
  const url = proxy.urlFor(context.url);
  const start = (name: string) =>
    startGame(context, {
      node: name,
      url,
      onConflict: 'reload',
      checkLogins: true,
      traceSessions: process.env.CHAOS_LOG_DIR !== undefined,
      persistence: {
        events: ['disconnect', 'shutdown'],
        interval: 1_000,
        callTimeout: 2_000,
        shutdownTimeout: 10_000,
        retry: { initialDelay: 100, maxDelay: 1_000 },
        ...storeTuning(context.store.kind),
      },
    }).then((game): Node => ({ name, game }));
  const nodes: Node[] = await Promise.all([start('A'), start('B')]);
  const everyNode: Node[] = [...nodes];
  const players: Player[] = userIds(USERS).map((id) => ({
    id,
    home: undefined,
    ghosts: new Set(),
    busy: false,
    acked: [],
  }));
  const counts: Counts = {
    ops: 0,
    acked: 0,
    moves: 0,
    uncleanMoves: 0,
    ghostPurchases: 0,
    ghostConflicts: 0,
    homeConflicts: 0,
    errors: [],
    cutShort: 0,
    badHandoffs: [],
    staleLogins: [],
    staleOverwrites: [],
    missingAcked: [],
  };
  const random = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
  const alive = () => nodes.filter((node) => node.game.alive);
  const failed = (node: Node, what: string, error: unknown) => {
    if (!node.game.alive || node.killed) counts.cutShort++;
    else
      counts.errors.push(
        `${what} on ${node.name}: ${error instanceof Error ? error.message : String(error)}`,
      );
  };

  const login = async (node: Node, player: Player) => {
    const { loaded, failed: refused } = await node.game.request<{
      loaded: Record<string, { counter: number; log: string[]; version?: number; storedVersion?: number }>;
      failed: Record<string, { code?: string; message?: string }>;
    }>('login', { users: [player.id], withLog: true }, 15_000);
    const data = loaded[player.id];
    if (data === undefined) throw new Error(JSON.stringify(refused[player.id]));
    if (data.storedVersion !== undefined && data.version !== data.storedVersion) {
      counts.staleLogins.push(
        `${player.id} on ${node.name}: identify() gave version ${data.version} (counter ${data.counter}), the store holds version ${data.storedVersion}`,
      );
    }
    return data;
  };

  const step = async (player: Player) => {
    counts.ops++;
    const live = alive();
    if (player.home === undefined || !player.home.game.alive) {
      const target = random(live);
      player.home = undefined;
      await login(target, player).then(
        () => {
          player.home = target;
          player.ghosts.delete(target);
        },
        (error) => failed(target, 'login', error),
      );
      return;
    }
    const home = player.home;
    const ghosts = [...player.ghosts].filter((node) => node.game.alive);
    const roll = Math.random();
    if (unclean && ghosts.length > 0 && roll < 0.15) {
      // The partitioned node still runs the player's session and persists a change.
      const ghost = random(ghosts);
      counts.ghostPurchases++;
      await buy(ghost, player, true);
    } else if (roll < 0.5) {
      await buy(home, player, false);
    } else if (roll < 0.7) {
      await home.game
        .request('mutate', { users: [player.id] }, 15_000)
        .catch((error) => failed(home, 'mutate', error));
    } else {
      const others = live.filter((node) => node !== home);
      if (others.length === 0) return;
      const target = random(others);
      counts.moves++;
      if (unclean && Math.random() < 0.5) {
        counts.uncleanMoves++;
        await login(target, player).then(
          () => {
            player.ghosts.add(home);
            player.ghosts.delete(target);
            player.home = target;
          },
          (error) => failed(target, 'login', error),
        );
        return;
      }
      let left: { counter: number; log: string[]; failed: boolean };
      try {
        left = await home.game.request('logout', { userId: player.id, persist: true }, 15_000);
      } catch (error) {
        failed(home, 'logout', error);
        return;
      }
      player.home = undefined;
      try {
        const arrived = await login(target, player);
        player.home = target;
        player.ghosts.delete(target);
        // A clean handoff: the login loads what the logout stored (with stale nodes around, a stale node may
        // have written since, but only on top of it).
        const exact = arrived.log.length === left.log.length && isPrefix(left.log, arrived.log);
        const ok = left.failed || (unclean ? isPrefix(left.log, arrived.log) : exact);
        if (!ok) {
          counts.badHandoffs.push(
            `${player.id} ${home.name}->${target.name}: logout left counter ${left.counter} (last token ${left.log.at(-1)}), login loaded ${arrived.counter} (last token ${arrived.log.at(-1)}, version ${arrived.version ?? '?'}, stored version ${arrived.storedVersion ?? '?'})`,
          );
        }
      } catch (error) {
        failed(target, 'login', error);
      }
    }
  };

  const buy = async (node: Node, player: Player, ghost: boolean) => {
    try {
      const reply = await node.game.request<{ token: string }>('purchase', { userId: player.id }, 15_000);
      player.acked.push({ token: reply.token, at: performance.now() });
      counts.acked++;
    } catch (error) {
      if (error instanceof GameCommandError && error.code === 'VERSION_CONFLICT') {
        if (ghost) counts.ghostConflicts++;
        else counts.homeConflicts++;
      } else {
        failed(node, 'purchase', error);
      }
    }
  };

  // The sampler: the stored data of a player may only grow by appending.
  const observed = new Map<string, StoredPlayer>();
  let sampling = true;
  let samples = 0;
  const sampler = (async () => {
    for (let round = 0; sampling && round < 10_000; round++) {
      const began = performance.now();
      const stored = await readPlayers(context.store, context.namespace).catch(() => undefined);
      if (stored !== undefined) {
        samples++;
        for (const player of players) {
          const now = stored.get(player.id);
          const before = observed.get(player.id);
          if (before !== undefined && (now === undefined || !isPrefix(before.log, now.log))) {
            counts.staleOverwrites.push(
              `${player.id}: stored counter ${before.counter} (v${before.version}, tail ${before.log.slice(-3).join(' ')}) replaced by ${now?.counter ?? 'nothing'} (v${now?.version}, tail ${now?.log.slice(-3).join(' ')}) not descending from it`,
            );
          }
          if (now !== undefined) {
            observed.set(player.id, now);
            const tokens = new Set(now.log);
            const missing = player.acked.filter((ack) => ack.at < began && !tokens.has(ack.token));
            if (missing.length > 0) {
              counts.missingAcked.push(
                `${player.id}: acked ${missing[0]!.token} missing from a later read (v${now.version}, counter ${now.counter}, tail ${now.log.slice(-3).join(' ')})`,
              );
            }
          }
        }
      }
      await sleep(SAMPLE_EVERY_MS);
    }
  })();

  // Play.
  const started = performance.now();
  const end = started + durationMs;
  let crashed = false;
  const crash = async () => {
    const victim = nodes[0]!;
    victim.lastStats = await victim.game.stats().catch(() => undefined);
    victim.killed = true;
    victim.game.kill9();
    await victim.game.waitExit(10_000);
    context.progress(`node ${victim.name} SIGKILLed`);
    for (const player of players) player.ghosts.delete(victim);
    const replacement = await start(`${victim.name}2`);
    nodes[0] = replacement;
    everyNode.push(replacement);
  };
  const worker = async () => {
    for (let i = 0; i < 1_000_000 && performance.now() < end; i++) {
      if (unclean && !crashed && performance.now() - started > durationMs * 0.45) {
        crashed = true;
        await crash();
      }
      const free = players.filter((player) => !player.busy);
      if (free.length === 0) {
        await sleep(5);
        continue;
      }
      const player = random(free);
      player.busy = true;
      try {
        await step(player);
      } finally {
        player.busy = false;
      }
      // Players act about every 20-40 ms each worker: a busy but not saturated server.
      await sleep(20 + Math.random() * 20);
    }
  };
  await Promise.race([Promise.all(Array.from({ length: WORKERS }, worker)), sleep(durationMs + 30_000)]);
  context.progress(`played ${round(performance.now() - started)} ms: ${counts.ops} operations`);

  // End: stale sessions are dropped (a partitioned node that is finally told), each player's last node stores
  // its data (reloading after a conflict) and logs out, the nodes shut down.
  for (const node of alive()) {
    const held = await node.game.request<Record<string, number>>('data', {}, 15_000);
    for (const userId of Object.keys(held)) {
      const player = players.find((p) => p.id === userId);
      if (player?.home === node) continue;
      await node.game
        .request('logout', { userId, persist: false }, 15_000)
        .catch((error) => failed(node, 'logout stale', error));
    }
  }
  await waitFor(async () => {
    const stats = await Promise.all(alive().map((node) => node.game.stats()));
    return stats.every((s) => s.inFlight === 0);
  }, 10_000);
  const finals = new Map<string, string[]>();
  const unstored: string[] = [];
  for (const player of players) {
    const home = player.home;
    if (home === undefined || !home.game.alive) continue;
    try {
      const last = await home.game.request<{ log: string[]; stored: boolean }>(
        'finalLogout',
        { userId: player.id },
        20_000,
      );
      finals.set(player.id, last.log);
      if (!last.stored) unstored.push(player.id);
    } catch (error) {
      failed(home, 'final logout', error);
    }
  }
  const stats = await Promise.all(alive().map((node) => node.game.stats().catch(() => undefined)));
  for (const figures of [...stats, ...everyNode.map((n) => n.lastStats)]) recordStall(result, figures);
  sampling = false;
  await sampler;

  for (const node of alive()) node.game.terminate();
  const exits = await Promise.all(everyNode.map((node) => node.game.waitExit(20_000)));
  result.exits = everyNode.map((node, index) => `${node.name}:${describeExit(exits[index]!)}`).join(' ');

  // Conflicts and reloads, from each node's last words (or its stats before it was killed).
  const totals = { conflicts: 0, reloads: 0, reloadFailures: 0, maxReloadMs: 0 };
  for (const node of everyNode) {
    const line =
      node.game.find('info', 'game server: every player stored')[0] ??
      node.game.find('error', 'game server: shutdown incomplete')[0];
    const source = (line ?? node.lastStats ?? {}) as Partial<typeof totals>;
    totals.conflicts += source.conflicts ?? 0;
    totals.reloads += source.reloads ?? 0;
    totals.reloadFailures += source.reloadFailures ?? 0;
    totals.maxReloadMs = Math.max(totals.maxReloadMs, source.maxReloadMs ?? 0);
  }

  // Judge against the store.
  const stored = await readStored(context, result);
  if (stored === undefined) return;
  let aheadOfLastNode = 0;
  const lostUsers: string[] = [];
  let lostTokens = 0;
  const staleUsers: string[] = [];
  for (const player of players) {
    const now = stored.get(player.id);
    const tokens = new Set(now?.log ?? []);
    const missing = player.acked.filter((ack) => !tokens.has(ack.token));
    if (missing.length > 0) {
      lostUsers.push(
        `${player.id} (${missing.length} acked tokens missing, e.g. ${missing[0]!.token}; stored v${now?.version}, counter ${now?.counter}, tail ${now?.log.slice(-3).join(' ')})`,
      );
      lostTokens += missing.length;
    }
    // The last node's data must be stored. With clean logouts it is exactly what is stored; with stale nodes
    // about, a stale node may have written on top of it (fenced, from the version it was based on) while the
    // last node did not write: then the stored data descends from it.
    const final = finals.get(player.id);
    const storedIt =
      now !== undefined &&
      isPrefix(final ?? [], now.log) &&
      (unclean || now.log.length === (final ?? []).length);
    if (final !== undefined && now !== undefined && storedIt && now.log.length > final.length)
      aheadOfLastNode++;
    if (final !== undefined && !storedIt) {
      staleUsers.push(
        `${player.id}: stored counter ${now?.counter ?? 'nothing'}, its last node held ${final.length}${now !== undefined && !isPrefix(now.log, final) && !isPrefix(final, now.log) ? ' (diverged)' : ''}`,
      );
    }
  }
  result.lost = lostUsers.length;
  result.stale = staleUsers.length + counts.staleOverwrites.length;
  if (unclean) result.recoverMs = round(totals.maxReloadMs);
  result.notes.push(
    `${counts.ops} ops, ${counts.acked} acked, ${counts.moves} moves (${counts.uncleanMoves} without logout), ` +
      `conflicts ${totals.conflicts} (stale-node purchases refused ${counts.ghostConflicts}/${counts.ghostPurchases}, home ${counts.homeConflicts}), ` +
      `reloads ${totals.reloads}, ${samples} store samples, ${aheadOfLastNode} stored ahead of the last node (a stale node's fenced write)${counts.cutShort > 0 ? `, ${counts.cutShort} cut short by the crash` : ''}`,
  );

  /** The unsaved users a node's shutdown reported (SHUTDOWN_INCOMPLETE), if any. */
  const shutdownUnsaved = (node: Node) => {
    const line = node.game.find('error', 'game server: shutdown incomplete')[0];
    const err = line?.err as
      | { unsaved?: { userId: string; maybeStored?: boolean; error?: string }[] }
      | undefined;
    return err?.unsaved ?? [];
  };
  /** What a node said last when its exit was not the expected one. */
  const lastWords = (node: Node) => {
    const line = [...node.game.logs].reverse().find((l) => l.level === 'error');
    const text = line === undefined ? node.game.otherOutput.slice(-3).join(' / ') : JSON.stringify(line);
    return text.slice(0, 600);
  };
  const list = (items: readonly string[]) => `${items.length}: ${items.slice(0, 3).join('; ')}`;
  expect(
    result,
    lostUsers.length === 0,
    `acknowledged changes lost (${lostTokens} tokens), users ${list(lostUsers)}`,
  );
  expect(
    result,
    counts.missingAcked.length === 0,
    `acknowledged token missing from a later store read ${list(counts.missingAcked)}`,
  );
  expect(
    result,
    counts.staleOverwrites.length === 0,
    `stale overwrites seen in the store ${list(counts.staleOverwrites)}`,
  );
  expect(result, staleUsers.length === 0, `stored data is not what the last node held ${list(staleUsers)}`);
  expect(
    result,
    counts.badHandoffs.length === 0,
    `logins that did not load the logout's data ${list(counts.badHandoffs)}`,
  );
  expect(result, counts.errors.length === 0, `operations failed with the store up ${list(counts.errors)}`);
  expect(
    result,
    counts.staleLogins.length === 0,
    `logins that did not load the stored data (stale data shown to the player) ${list(counts.staleLogins)}`,
  );
  expect(result, unstored.length === 0, `final logout could not store ${list(unstored)}`);
  expect(result, totals.reloadFailures === 0, `${totals.reloadFailures} reloads after a conflict failed`);
  expect(result, counts.acked >= 50, `only ${counts.acked} purchases acknowledged: too few to mean anything`);
  if (unclean) {
    expect(
      result,
      totals.conflicts > 0 && totals.reloads > 0,
      `the stale node never saw a conflict / reloaded (conflicts ${totals.conflicts}, reloads ${totals.reloads})`,
    );
    // A node whose last write of a player lost a fenced race (a stale node's logout) kept that data and
    // reports it unsaved at shutdown (exit 1): accurate, since it was not stored. Any other unsaved user, or
    // any other exit, is a failure.
    const killed = everyNode[0]!;
    everyNode.forEach((node, index) => {
      const exit = describeExit(exits[index]!);
      if (node === killed) {
        expect(result, exit === 'SIGKILL', `${node.name} exit ${exit}, expected SIGKILL: ${lastWords(node)}`);
        return;
      }
      const unsaved = shutdownUnsaved(node);
      const conflicted = unsaved.filter((u) => u.error === 'VERSION_CONFLICT' && u.maybeStored === false);
      if (exit === '1' && unsaved.length > 0 && conflicted.length === unsaved.length) {
        result.notes.push(
          `${node.name} exit 1: ${unsaved.length} player(s) whose last data lost a fenced race reported unsaved (${unsaved.map((u) => u.userId).join(', ')})`,
        );
        return;
      }
      expect(result, exit === '0', `${node.name} exit ${exit}, expected 0: ${lastWords(node)}`);
    });
  } else {
    expect(
      result,
      totals.conflicts === 0 && counts.homeConflicts === 0,
      `conflicts with clean logouts only: ${totals.conflicts} events, ${counts.homeConflicts} purchases refused`,
    );
    everyNode.forEach((node, index) => {
      const exit = exits[index]!;
      expect(
        result,
        describeExit(exit) === '0',
        `${node.name} exit ${describeExit(exit)}, expected 0: ${lastWords(node)}`,
      );
    });
  }
}
