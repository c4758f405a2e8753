// Child process for crash.test.ts: appends records forever and prints the id
// of each one once its append() resolved (i.e. after fsync). Killed by SIGKILL.
import { Wal } from "../../src/wal/wal.js";
import { payloadFor } from "./util.js";

const [dir, baseArg] = process.argv.slice(2);
if (dir === undefined || baseArg === undefined) throw new Error("usage: crash-child.ts <dir> <base id>");
const base = Number(baseArg);

const { wal } = await Wal.open(dir, { segmentBytesMax: 256 * 1024, recordBytesMax: 64 * 1024 });
process.stdout.write("ready\n");
let next = base;
const inFlight = new Set<Promise<void>>();
for (;;) {
  while (inFlight.size < 32) {
    const id = next++;
    const size = 8 + ((id * 2654435761) % 20_000);
    const p = wal.append(id % 4, payloadFor(id, size)).then(() => {
      process.stdout.write(`${id}\n`); // only after the ack
    });
    const tracked = p.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  }
  await Promise.race(inFlight);
}
