// The ingest formats, in a module of their own so that index.ts and
// detect.ts can both name them without importing each other.

export type IngestFormat = "vmjson" | "influx" | "csv";
