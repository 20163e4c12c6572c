import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FaultProxy, matchesText, postgresReplyComplete, startFaultProxy } from '../src/index.js';
import { connect, type EchoServer, type Peer, settledWithin, sleep, startEcho } from './helpers.js';

let echo: EchoServer;
let proxy: FaultProxy;
const peers: Peer[] = [];

async function client(): Promise<Peer> {
  const peer = await connect(proxy.port);
  peers.push(peer);
  return peer;
}

/** Milliseconds from writing `text` until it is echoed back. */
async function roundTrip(peer: Peer, text: string): Promise<number> {
  const started = performance.now();
  peer.socket.write(text);
  expect(await peer.waitFor(text, 5_000)).toBe(true);
  return performance.now() - started;
}

beforeEach(async () => {
  echo = await startEcho();
  proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: echo.port } });
});

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.socket.destroy();
  await proxy.close();
  await echo.close();
});

describe('forwarding', () => {
  it('listens on 127.0.0.1 and forwards both ways, counting open client connections', async () => {
    expect(proxy.host).toBe('127.0.0.1');
    expect(proxy.port).toBeGreaterThan(0);
    expect(proxy.port).not.toBe(echo.port);
    const a = await client();
    const b = await client();
    expect(await roundTrip(a, 'from a')).toBeLessThan(1_000);
    expect(await roundTrip(b, 'from b')).toBeLessThan(1_000);
    expect(a.received()).toBe('from a');
    expect(b.received()).toBe('from b');
    expect(proxy.connections).toBe(2);
    expect(echo.accepted).toBe(2);
    a.socket.end();
    await a.closed;
    await sleep(50);
    expect(proxy.connections).toBe(1);
  });

  it('forwards a large transfer intact and in order (the slow side holds the fast one back)', async () => {
    const peer = await client();
    const payload = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32BE(i, i);
    const received: Buffer[] = [];
    let length = 0;
    const all = new Promise<void>((resolve) => {
      peer.socket.on('data', (chunk: Buffer) => {
        received.push(chunk);
        length += chunk.length;
        if (length >= payload.length) resolve();
      });
    });
    peer.socket.write(payload);
    expect(await settledWithin(all, 10_000)).toEqual({ value: undefined });
    expect(Buffer.concat(received).equals(payload)).toBe(true);
  });

  it('urlFor points postgres, redis and mongodb URLs at the proxy and keeps credentials, path and query', () => {
    const at = `127.0.0.1:${proxy.port}`;
    expect(proxy.urlFor('postgres://postgres:p%40ss%2Fw@127.0.0.1:5432/postgres?sslmode=disable')).toBe(
      `postgres://postgres:p%40ss%2Fw@${at}/postgres?sslmode=disable`,
    );
    expect(proxy.urlFor('redis://:secret@127.0.0.1:6379')).toBe(`redis://:secret@${at}`);
    expect(proxy.urlFor('redis://127.0.0.1:6379/2')).toBe(`redis://${at}/2`);
    expect(proxy.urlFor('mongodb://127.0.0.1:27017/')).toBe(`mongodb://${at}/`);
    expect(proxy.urlFor('mongodb://user:pw@localhost/db?directConnection=true')).toBe(
      `mongodb://user:pw@${at}/db?directConnection=true`,
    );
    expect(() => proxy.urlFor('not a url')).toThrow(/urlFor/);
  });

  it('refuses a target that is not a loopback address', async () => {
    await expect(startFaultProxy({ target: { host: '10.0.0.1', port: 5432 } })).rejects.toThrow(/loopback/);
    await expect(startFaultProxy({ target: { host: 'example.com', port: 5432 } })).rejects.toThrow(
      /loopback/,
    );
  });

  it('listens on a given port', async () => {
    const other = await startFaultProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const port = other.port;
    await other.close();
    const again = await startFaultProxy({ target: { host: '127.0.0.1', port: echo.port }, port });
    try {
      expect(again.port).toBe(port);
      const peer = await connect(port);
      expect(await roundTrip(peer, 'given port')).toBeLessThan(1_000);
      peer.socket.destroy();
    } finally {
      await again.close();
    }
  });
});

describe('setLatency', () => {
  it('delays every chunk in both directions and keeps their order; 0 removes the delay', async () => {
    const peer = await client();
    expect(await roundTrip(peer, 'warm')).toBeLessThan(150);
    proxy.setLatency(150);
    // Two directions of 150 ms each.
    const slow = await roundTrip(peer, 'slow');
    expect(slow).toBeGreaterThanOrEqual(290);
    expect(slow).toBeLessThan(2_000);
    for (const part of ['1', '2', '3', '4', '5']) {
      peer.socket.write(part);
      await sleep(10);
    }
    expect(await peer.waitFor('12345', 3_000)).toBe(true);
    proxy.setLatency(0);
    expect(await roundTrip(peer, 'fast')).toBeLessThan(150);
    expect(() => proxy.setLatency(-1)).toThrow(RangeError);
  });
});

describe('blackhole and heal', () => {
  it('holds bytes in both directions on open and new connections, and delivers them in order after heal()', async () => {
    const before = await client();
    expect(await roundTrip(before, 'a0')).toBeLessThan(1_000);
    proxy.blackhole();
    before.socket.write('a1');
    before.socket.write('a2');
    const during = await client();
    during.socket.write('b1');
    expect(await before.waitFor('a1', 300)).toBe(false);
    expect(await during.waitFor('b1', 10)).toBe(false);
    expect(proxy.connections).toBe(2);
    // The new connection has not reached the server; the open one stays open.
    expect(echo.accepted).toBe(1);
    expect(before.socket.destroyed).toBe(false);

    proxy.heal();
    expect(await before.waitFor('a0a1a2')).toBe(true);
    expect(await during.waitFor('b1')).toBe(true);
    expect(echo.accepted).toBe(2);
  });

  it('holds bytes the server sends on its own while blackholed', async () => {
    const peer = await client();
    expect(await roundTrip(peer, 'hello')).toBeLessThan(1_000);
    proxy.blackhole();
    echo.sockets[0]!.write(' pushed');
    expect(await peer.waitFor('pushed', 300)).toBe(false);
    proxy.heal();
    expect(await peer.waitFor('hello pushed')).toBe(true);
  });
});

describe('reset', () => {
  it('resets both sides of every open connection; new connections still work', async () => {
    const a = await client();
    const b = await client();
    expect(await roundTrip(a, 'a')).toBeLessThan(1_000);
    expect(await roundTrip(b, 'b')).toBeLessThan(1_000);
    const serverSide = echo.sockets[0]!;
    const serverClosed = new Promise<void>((resolve) => serverSide.once('close', () => resolve()));
    proxy.reset();
    expect(await a.closed).toEqual({ code: 'ECONNRESET' });
    expect(await b.closed).toEqual({ code: 'ECONNRESET' });
    await serverClosed;
    expect(proxy.connections).toBe(0);

    const c = await client();
    expect(await roundTrip(c, 'after reset')).toBeLessThan(1_000);
  });
});

describe('refuse', () => {
  it('resets open connections and every new one until heal()', async () => {
    const open = await client();
    expect(await roundTrip(open, 'x')).toBeLessThan(1_000);
    proxy.refuse();
    expect(await open.closed).toEqual({ code: 'ECONNRESET' });

    // The kernel completes the handshake before the proxy sees the connection, which it then resets: the client
    // sees ECONNRESET, while connecting or just after.
    const refused = await connect(proxy.port).then(
      async (peer) => {
        peers.push(peer);
        const closed = await Promise.race([peer.closed, sleep(2_000).then(() => ({ code: 'still open' }))]);
        return { code: closed.code, received: peer.received() };
      },
      (error: NodeJS.ErrnoException) => ({ code: error.code, received: '' }),
    );
    expect(refused).toEqual({ code: 'ECONNRESET', received: '' });
    expect(echo.accepted).toBe(1);

    proxy.heal();
    const after = await client();
    expect(await roundTrip(after, 'back')).toBeLessThan(1_000);
    expect(echo.accepted).toBe(2);
  });
});

describe('cutAfterReply', () => {
  it('matches a request split across reads, discards its reply and resets that connection only', async () => {
    const bystander = await client();
    const victim = await client();
    const cut = proxy.cutAfterReply({ request: matchesText('HELLO') });
    victim.socket.write('HEL');
    expect(await victim.waitFor('HEL')).toBe(true);
    victim.socket.write('LO');
    expect(await settledWithin(cut, 2_000)).toEqual({ value: undefined });
    expect(await victim.closed).toEqual({ code: 'ECONNRESET' });
    // The server got the whole request; the client never saw the reply to its second half.
    expect(victim.received()).toBe('HEL');
    expect(echo.sockets[1]).toBeDefined();

    // One-shot: the same text later goes through.
    expect(await roundTrip(bystander, 'HELLO again')).toBeLessThan(1_000);
    expect(bystander.socket.destroyed).toBe(false);
  });

  it('does not match bytes sent before it was called', async () => {
    const peer = await client();
    const other = await client();
    // The peer's bytes are watched while an earlier cut is pending, then that cut happens on another connection.
    const first = proxy.cutAfterReply({ request: matchesText('first') });
    expect(await roundTrip(peer, 'SET k')).toBeLessThan(1_000);
    other.socket.write('first');
    expect(await settledWithin(first, 2_000)).toEqual({ value: undefined });

    const cut = proxy.cutAfterReply({ request: matchesText('SET k1') });
    // "SET k" + "1" would match across the earlier bytes, which were sent before this cut was requested.
    expect(await roundTrip(peer, '1')).toBeLessThan(1_000);
    expect(await settledWithin(cut, 100)).toBe('pending');
    peer.socket.write('SET k1');
    expect(await settledWithin(cut, 2_000)).toEqual({ value: undefined });
  });

  it('buffers the reply until replyComplete says it is whole', async () => {
    const peer = await client();
    const cut = proxy.cutAfterReply({
      request: matchesText('begin'),
      replyComplete: (reply) => reply.toString().endsWith('end'),
    });
    peer.socket.write('begin');
    await sleep(50);
    peer.socket.write('middle');
    await sleep(50);
    expect(await settledWithin(cut, 100)).toBe('pending');
    expect(peer.socket.destroyed).toBe(false);
    peer.socket.write('end');
    expect(await settledWithin(cut, 2_000)).toEqual({ value: undefined });
    expect(await peer.closed).toEqual({ code: 'ECONNRESET' });
    expect(peer.received()).toBe('');
  });

  it('allows one cut at a time, and close() rejects a pending one', async () => {
    const cut = proxy.cutAfterReply({ request: matchesText('never') });
    await expect(proxy.cutAfterReply({ request: matchesText('other') })).rejects.toThrow(/already pending/);
    await proxy.close();
    await expect(cut).rejects.toThrow(/closed/);
  });

  it('rejects when the matched connection closes before the reply is complete', async () => {
    const peer = await client();
    const cut = proxy.cutAfterReply({ request: matchesText('req'), replyComplete: () => false });
    peer.socket.write('req');
    await sleep(50);
    peer.socket.destroy();
    expect(await settledWithin(cut, 2_000)).toMatchObject({ error: expect.any(Error) });
  });
});

describe('close', () => {
  it('closes every socket and frees the port', async () => {
    const peer = await client();
    expect(await roundTrip(peer, 'x')).toBeLessThan(1_000);
    const port = proxy.port;
    await proxy.close();
    await proxy.close();
    expect(await settledWithin(peer.closed, 1_000)).not.toBe('pending');
    await expect(connect(port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});

describe('matchesText', () => {
  it('matches UTF-8 text, case-sensitive unless ignoreCase', () => {
    expect(matchesText('INSERT')(Buffer.from('xx INSERT INTO t'))).toBe(true);
    expect(matchesText('INSERT')(Buffer.from('insert into t'))).toBe(false);
    expect(matchesText('SET', { ignoreCase: true })(Buffer.from('*3\r\n$3\r\nset\r\n'))).toBe(true);
    expect(matchesText('joueur é')(Buffer.from('le joueur é'))).toBe(true);
    expect(() => matchesText('')).toThrow(RangeError);
  });
});

describe('postgresReplyComplete', () => {
  const message = (type: string, body: Buffer) => {
    const header = Buffer.alloc(5);
    header.write(type, 0, 'latin1');
    header.writeInt32BE(body.length + 4, 1);
    return Buffer.concat([header, body]);
  };
  const commandComplete = message('C', Buffer.from('INSERT 0 1\0'));
  const ready = (status: string) => message('Z', Buffer.from(status));

  it('is true only for whole messages ending in ReadyForQuery with status idle', () => {
    expect(postgresReplyComplete(Buffer.concat([commandComplete, ready('I')]))).toBe(true);
    expect(postgresReplyComplete(ready('I'))).toBe(true);
    expect(postgresReplyComplete(commandComplete)).toBe(false);
    expect(postgresReplyComplete(Buffer.concat([commandComplete, ready('T')]))).toBe(false);
    expect(postgresReplyComplete(Buffer.concat([commandComplete, ready('E')]))).toBe(false);
    const whole = Buffer.concat([commandComplete, ready('I')]);
    expect(postgresReplyComplete(whole.subarray(0, whole.length - 1))).toBe(false);
    expect(postgresReplyComplete(Buffer.alloc(0))).toBe(false);
    // A 'Z' and 'I' inside another message's body are not a ReadyForQuery.
    expect(postgresReplyComplete(message('D', Buffer.from('Z\0\0\0\x05I')))).toBe(false);
    // A length below 4 is not a message.
    expect(postgresReplyComplete(Buffer.from([0x5a, 0, 0, 0, 1, 0x49]))).toBe(false);
  });
});
