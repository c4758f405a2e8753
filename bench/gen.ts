// Writes the synthetic data set as JSON lines (VictoriaMetrics /api/v1/import
// format), e.g. to inspect it or feed it to another tool:
//   npx tsx bench/gen.ts --series 1000 --samples 150 [--seed 1] > synth.jsonl
// The benchmark itself generates the same bytes in memory (bench/ingest.ts).

import { DEFAULT_SYNTHETIC_START_MS, generateSynthetic, syntheticLine, type SyntheticOptions } from "./lib/synthetic.js";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    series: { type: "string", default: "100000" },
    samples: { type: "string", default: "150" },
    seed: { type: "string", default: "1" },
    start: { type: "string" },
  },
});

const opts: SyntheticOptions = {
  series: Number(values.series),
  samplesPerSeries: Number(values.samples),
  seed: Number(values.seed),
  startMs: values.start !== undefined ? Date.parse(values.start) : DEFAULT_SYNTHETIC_START_MS,
};
if (Number.isNaN(opts.startMs)) throw new Error(`--start: not a date: ${values.start}`);

process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

let buf: string[] = [];
let bufLen = 0;
const flush = (): void => {
  if (buf.length > 0) process.stdout.write(buf.join(""));
  buf = [];
  bufLen = 0;
};
const kinds = generateSynthetic(opts, (s) => {
  const line = syntheticLine(s) + "\n";
  buf.push(line);
  bufLen += line.length;
  if (bufLen > 4 << 20) flush();
});
flush();
process.stderr.write(`series by kind: ${JSON.stringify(kinds)}\n`);
