import type { ClaimResult } from '@cagey-sessions/core';
import { describe, expect, it } from 'vitest';
import { randomTable, serverUrl } from './helpers.js';
import { holderRow, presenceWorld, tokenOf } from './presence-helpers.js';

const url = serverUrl('adapter-postgres: presence races');

describe.skipIf(url === null)('PostgresPresence under concurrency, on a real server', () => {
  const world = presenceWorld('server', url);
  const { raw } = world;

  it('of 8 processes claiming the same 30 users at once, exactly one acquires each, and the record names it', async () => {
    const table = randomTable('race');
    const nodes = await Promise.all(Array.from({ length: 8 }, () => world.presence(table)));
    await Promise.all(nodes.map((presence, i) => presence.join(`n${i}`, 60_000, () => {})));
    const users = Array.from({ length: 30 }, (_, i) => `race-${i}`);
    // Every claim of every user in flight together: 240 statements on 8 pools of 2 connections.
    const results = await Promise.all(
      users.map((userId) => Promise.all(nodes.map((presence, i) => presence.claim(userId, `n${i}`)))),
    );
    for (const [u, perNode] of results.entries()) {
      const winners = perNode.flatMap((result, i) => (result.acquired ? [`n${i}`] : []));
      expect(winners).toHaveLength(1);
      for (const result of perNode) {
        expect(result).toEqual(result.acquired ? { acquired: true } : { acquired: false, owner: winners[0] });
      }
      expect(await holderRow(raw, table, users[u]!)).toEqual({
        node_id: winners[0],
        token: await tokenOf(raw, table, winners[0]!),
      });
    }
  });

  it('claims racing a lease expiry: each user is taken over exactly once, naming the expired node', async () => {
    const table = randomTable('race');
    const holder = await world.presence(table);
    const claimers = await Promise.all(Array.from({ length: 6 }, () => world.presence(table)));
    await holder.join('old', 60_000, () => {});
    await Promise.all(claimers.map((presence, i) => presence.join(`c${i}`, 60_000, () => {})));
    const users = Array.from({ length: 40 }, (_, i) => `lapse-${i}`);
    for (const userId of users) expect(await holder.claim(userId, 'old')).toEqual({ acquired: true });

    // The lease runs out while every claimer keeps claiming every user, each until it learns a live owner.
    expect(await holder.renew('old', 200)).toBe(true);
    const outcomes = await Promise.all(
      claimers.map(async (presence, i) => {
        const mine: Array<{ userId: string; result: ClaimResult }> = [];
        for (const userId of users) {
          for (let attempt = 0; attempt < 2_000; attempt++) {
            const result = await presence.claim(userId, `c${i}`);
            if (result.acquired || result.owner !== 'old') {
              mine.push({ userId, result });
              break;
            }
          }
        }
        return mine;
      }),
    );
    for (const userId of users) {
      const results = outcomes.flatMap((mine, i) =>
        mine.filter((entry) => entry.userId === userId).map((entry) => ({ node: `c${i}`, ...entry.result })),
      );
      expect(results).toHaveLength(claimers.length);
      const takeovers = results.filter((result) => result.acquired);
      expect(takeovers).toHaveLength(1);
      expect(takeovers[0]).toMatchObject({ previousOwner: 'old' });
      for (const result of results) {
        if (!result.acquired) expect(result).toMatchObject({ owner: takeovers[0]!.node });
      }
      expect((await holderRow(raw, table, userId))?.node_id).toBe(takeovers[0]!.node);
    }
    expect(await holder.renew('old', 60_000)).toBe(false);
  });

  it('claims racing releases and re-joins never leave a user with two holders or a claim with a wrong answer', async () => {
    const table = randomTable('race');
    const nodes = await Promise.all(Array.from({ length: 4 }, () => world.presence(table)));
    await Promise.all(nodes.map((presence, i) => presence.join(`n${i}`, 60_000, () => {})));
    const users = Array.from({ length: 10 }, (_, i) => `churn-${i}`);
    const answers: Array<{ node: string; result: ClaimResult }> = [];
    await Promise.all(
      nodes.map(async (presence, i) => {
        for (let round = 0; round < 25; round++) {
          for (const userId of users) {
            const result = await presence.claim(userId, `n${i}`);
            answers.push({ node: `n${i}`, result });
            // Holders let go of some users, and one node restarts now and then (a new incarnation).
            if (result.acquired && (round + i) % 3 === 0) await presence.release(`n${i}`, [userId]);
          }
          if (i === 0 && round % 8 === 7) await presence.join('n0', 60_000, () => {});
        }
      }),
    );
    expect(answers).toHaveLength(4 * 25 * users.length);
    for (const { node, result } of answers) {
      // Only n0's earlier incarnations are ever dead here; a live holder is never taken over.
      if (result.acquired) expect([undefined, 'n0']).toContain(result.previousOwner);
      // A node is never told that it (its current incarnation) holds a user it did not get.
      else expect(result.owner).not.toBe(node);
    }
    for (const userId of users) {
      const record = await holderRow(raw, table, userId);
      if (record !== undefined && record.token === (await tokenOf(raw, table, record.node_id))) {
        expect(await nodes[0]!.locate(userId)).toBe(record.node_id);
      }
    }
  });
});
