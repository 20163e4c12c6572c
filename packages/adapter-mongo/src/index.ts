export { MAX_DOCUMENT_BYTES, type UserDocument } from './documents.js';
export { createMongoAdapter, MongoAdapter, type MongoAdapterOptions } from './adapter.js';
