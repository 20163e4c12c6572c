export { ADAPTER_NAME, createMongoAdapter, MongoAdapter } from './adapter.js';
export { MAX_DOCUMENT_BYTES, type UserDocument } from './documents.js';
export {
  type CreateMongoAdapterOptions,
  DEFAULT_BATCH_SIZE,
  DEFAULT_COLLECTION,
  DEFAULT_CONNECT_TIMEOUT,
  type MongoAdapterOptions,
} from './options.js';
