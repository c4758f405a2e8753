// Public surface of the write-ahead log.
export * from "./record.js";
export * from "./wal.js";
