// Picks the ingest format of a file for `hqts write FILE`: by extension when
// it is telling, else by the shape of the first meaningful line.

import type { IngestFormat } from "./format.js";

const BY_EXTENSION: Readonly<Record<string, IngestFormat>> = {
  jsonl: "vmjson",
  json: "vmjson",
  ndjson: "vmjson",
  csv: "csv",
  lp: "influx",
  txt: "influx",
  influx: "influx",
  line: "influx",
};

/** Bytes of the sample looked at when sniffing; the first line is enough. */
const SNIFF_BYTES_MAX = 64 * 1024;

export function detectFormat(sample: Uint8Array, fileName?: string): IngestFormat {
  if (fileName !== undefined) {
    // A compressed file is named for its content plus .gz; the caller decompresses.
    const base = fileName.toLowerCase().replace(/\.(gz|zst|snappy)$/, "");
    const dot = base.lastIndexOf(".");
    if (dot >= 0) {
      const ext = base.slice(dot + 1);
      if (Object.hasOwn(BY_EXTENSION, ext)) return BY_EXTENSION[ext]!;
    }
  }
  return sniff(new TextDecoder("utf-8").decode(sample.subarray(0, SNIFF_BYTES_MAX)));
}

function sniff(text: string): IngestFormat {
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("{")) return "vmjson";
    // Influx: a series part, a space, then field=value; CSV rows have no such space-then-equals shape.
    const space = firstUnescapedSpace(line);
    if (space > 0 && line.indexOf("=", space) > space) return "influx";
    return "csv";
  }
  return "csv";
}

function firstUnescapedSpace(line: string): number {
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 92) i++;
    else if (c === 32) return i;
  }
  return -1;
}
