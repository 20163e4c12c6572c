/**
 * Type tests, checked by `tsc` (the package's typecheck) and by vitest's typecheck mode (`pnpm test`): the
 * user-data type flows from one type argument or from `defaults`, and durations are `ms` strings or numbers.
 */
import type ms from 'ms';
import { describe, expectTypeOf, it } from 'vitest';
import {
  create,
  type Duration,
  type DurationString,
  type PersistenceOptions,
  type Session,
  SessionManager,
  type UserData,
} from '../src/index.js';

interface Player {
  gold: number;
  inventory: string[];
}

type PlayerLiteral = { gold: number; inventory: string[] };

describe('user data type', () => {
  it('create<Player>() once: identify resolves with a Player, with or without defaults', async () => {
    const manager = create<Player>();
    expectTypeOf(manager).toEqualTypeOf<SessionManager<Player>>();
    const session = await manager.create();
    expectTypeOf(session).toEqualTypeOf<Session<Player>>();
    expectTypeOf(
      await session.identify('u', { defaults: { gold: 0, inventory: [] } }),
    ).toEqualTypeOf<Player>();
    expectTypeOf(await session.identify('u')).toEqualTypeOf<Player>();
    expectTypeOf(session.userData).toEqualTypeOf<Player | undefined>();
    expectTypeOf(await session.reload()).toEqualTypeOf<Player>();
  });

  it('a type literal works like an interface', async () => {
    const session = await create<PlayerLiteral>().create();
    expectTypeOf(
      await session.identify('u', { defaults: { gold: 0, inventory: [] } }),
    ).toEqualTypeOf<PlayerLiteral>();
    expectTypeOf(await new SessionManager<PlayerLiteral>().create()).toEqualTypeOf<Session<PlayerLiteral>>();
  });

  it('with a user-data type, defaults must be one', async () => {
    const session = await create<Player>().create();
    // @ts-expect-error inventory is missing
    await session.identify('u', { defaults: { gold: 0 } });
    // @ts-expect-error gold is a number
    await session.identify('u', { defaults: { gold: '0', inventory: [] } });
    // @ts-expect-error an unknown property
    await session.identify('u', { defaults: { gold: 0, inventory: [], gems: 0 } });
  });

  it('without a type argument, identify infers the type from defaults', async () => {
    const session = await create().create();
    const player = await session.identify('u', { defaults: { gold: 0, name: 'new player' } });
    expectTypeOf(player).toEqualTypeOf<{ gold: number; name: string }>();
    expectTypeOf(player.gold).toBeNumber();
    expectTypeOf(await new SessionManager().create()).toEqualTypeOf<Session<UserData>>();
  });

  it('without a type argument, identify takes one itself, interfaces included', async () => {
    const session = await create().create();
    expectTypeOf(await session.identify<Player>('u')).toEqualTypeOf<Player>();
    expectTypeOf(
      await session.identify<Player>('u', { defaults: { gold: 0, inventory: [] } }),
    ).toEqualTypeOf<Player>();
    // @ts-expect-error defaults must match the type argument
    await session.identify<Player>('u', { defaults: { gold: 0 } });
  });

  it('without defaults or any type, identify resolves with UserData', async () => {
    const session = await create().create();
    expectTypeOf(await session.identify('u')).toEqualTypeOf<UserData>();
  });

  it('events carry the user-data type', () => {
    const manager = create<Player>();
    manager.on('identified', (session, _userId, userData) => {
      expectTypeOf(session).toEqualTypeOf<Session<Player>>();
      expectTypeOf(userData).toEqualTypeOf<Player>();
    });
  });
});

describe('durations', () => {
  it('take milliseconds or ms strings', () => {
    expectTypeOf<30_000>().toExtend<Duration>();
    expectTypeOf<'30s'>().toExtend<Duration>();
    expectTypeOf<'250ms'>().toExtend<Duration>();
    expectTypeOf<'5 min'>().toExtend<Duration>();
    expectTypeOf<'30 secs'>().toExtend<Duration>(); // ms parses it: 30,000
    expectTypeOf<'1.5h'>().toExtend<Duration>();
    expectTypeOf<'7D'>().toExtend<Duration>();
    expectTypeOf<'1500'>().toExtend<Duration>();
  });

  it('refuse a string ms cannot parse at compile time', () => {
    expectTypeOf<'30 sekunden'>().not.toExtend<Duration>();
    expectTypeOf<'thirty seconds'>().not.toExtend<Duration>();
    expectTypeOf<'30ss'>().not.toExtend<Duration>();
    expectTypeOf<'5mins.'>().not.toExtend<Duration>();
    expectTypeOf<''>().not.toExtend<Duration>();
    expectTypeOf<string>().not.toExtend<Duration>();
  });

  it('are the strings of ms itself', () => {
    expectTypeOf<DurationString>().toEqualTypeOf<ms.StringValue>();
  });

  it('every duration option is a Duration', () => {
    expectTypeOf<PersistenceOptions['interval']>().toEqualTypeOf<Duration | undefined>();
    expectTypeOf<PersistenceOptions['shutdownTimeout']>().toEqualTypeOf<Duration | undefined>();
    expectTypeOf<PersistenceOptions['callTimeout']>().toEqualTypeOf<Duration | undefined>();
    expectTypeOf<NonNullable<PersistenceOptions['retry']>['initialDelay']>().toEqualTypeOf<
      Duration | undefined
    >();
    expectTypeOf<NonNullable<PersistenceOptions['retry']>['maxDelay']>().toEqualTypeOf<
      Duration | undefined
    >();
  });

  it('a typo in an option is a compile error', () => {
    const options = (persistence: PersistenceOptions) => ({ userData: { persistence } });
    // @ts-expect-error not an ms string
    options({ interval: '30 sekunden' });
    // @ts-expect-error not an ms string
    options({ shutdownTimeout: '15 sec.' });
    // @ts-expect-error a string from the environment must be checked or cast first
    options({ callTimeout: process.env.CALL_TIMEOUT ?? '10s' });
    options({ interval: '30s', shutdownTimeout: 15_000, retry: { initialDelay: '250ms', maxDelay: '30 s' } });
  });
});
