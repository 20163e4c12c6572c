export {
  INSTALL_HINT,
  type ServerAvailability,
  type ServerKind,
  ServerUnavailableError,
  type StartForTestsOptions,
  serverAvailability,
  startForTests,
} from './availability.js';
export {
  FERRETDB_BUILD_HINT,
  FERRETDB_VERSION,
  type FerretDBServer,
  type FerretDBServerOptions,
  ferretdbBinary,
  pingOk,
  startFerretDB,
} from './ferretdb.js';
export { canConnect, freePort, isPortFree } from './ports.js';
export { type PostgresServer, type PostgresServerOptions, startPostgres } from './postgres.js';
export {
  type RedisCluster,
  type RedisClusterNode,
  type RedisClusterOptions,
  type RedisServer,
  type RedisServerOptions,
  startRedis,
  startRedisCluster,
} from './redis.js';
export type { RunningServer } from './types.js';
