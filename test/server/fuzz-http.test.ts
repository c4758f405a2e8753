// Bad input never crashes a node: a bounded run of mutated and random bodies
// against every ingest endpoint of a real node process. Every answer must be a
// well-formed client error (or a success for a mutation that stayed valid), the
// node must stay healthy, and data acked before the storm must be intact.

import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import fc from "fast-check";
import { exportSeries, http } from "../helpers/http.js";
import { startNode, stopAll } from "../helpers/node-proc.js";

after(stopAll);

const SEEDS: Record<string, string> = {
  "/api/v1/import": '{"metric":{"__name__":"fz","k":"v"},"values":[1,"NaN",3.5],"timestamps":[1700000000000,1700000001000,1700000002000]}\n',
  "/api/v2/write?precision=ms": 'fz,host=a\\ b v=1.5,n=2i,s="x\\"y" 1700000000000\nfz,host=b v=-Inf 1700000001000\n',
  "/write?precision=s": "fz,host=c v=1 1700000000\n",
  "/api/v1/import/csv": "__name__,host,timestamp,value\nfz,d,1700000000000,1.25\n",
  "/api/v1/import/csv?format=1:metric:fz,2:label:host,3:time:unix_ms": "5,e,1700000000000\n",
};

function mutate(seed: Uint8Array, edits: { pos: number; kind: number; byte: number }[]): Uint8Array {
  let b = Array.from(seed);
  for (const e of edits) {
    const pos = b.length === 0 ? 0 : e.pos % b.length;
    if (e.kind === 0) b[pos] = e.byte;
    else if (e.kind === 1) b.splice(pos, 0, e.byte);
    else if (e.kind === 2) b.splice(pos, 1);
    else b = b.slice(0, pos);
  }
  return Uint8Array.from(b);
}

describe("HTTP ingest under malformed input", () => {
  it("answers every mutated or random body with a clean status and stays up", async () => {
    const node = await startNode();
    const anchor = await http(`${node.url}/api/v1/import`, { body: '{"metric":{"__name__":"anchor"},"values":[42],"timestamps":[1600000000000]}' });
    assert.equal(anchor.status, 200);
    const rng = fc.sample(
      fc.record({
        route: fc.constantFrom(...Object.keys(SEEDS)),
        random: fc.boolean(),
        bytes: fc.uint8Array({ maxLength: 300 }),
        edits: fc.array(fc.record({ pos: fc.nat(), kind: fc.integer({ min: 0, max: 3 }), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }),
      }),
      { numRuns: 600, seed: 20261124 },
    );
    const statuses = new Map<number, number>();
    for (const c of rng) {
      const seed = new TextEncoder().encode(SEEDS[c.route]!);
      const body = c.random ? c.bytes : mutate(seed, c.edits);
      const a = await http(`${node.url}${c.route}`, { body });
      statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
      assert.ok([200, 204, 400, 409, 413].includes(a.status), `${c.route} answered ${a.status}: ${a.text.slice(0, 300)}`);
      if (a.status >= 400) {
        const err = a.json() as { status: string; error: string; code: string };
        assert.equal(err.status, "error");
        assert.ok(err.error.length > 0 && typeof err.code === "string", `an error without a message: ${a.text}`);
      }
    }
    assert.ok((statuses.get(400) ?? 0) > 100, `the fuzz run produced too few rejections to mean anything: ${JSON.stringify([...statuses])}`);
    assert.equal((await http(`${node.url}/health`)).status, 200);
    const back = await exportSeries(node.url, "anchor");
    assert.deepEqual(back.map((l) => l.values), [[42]]);
    const { code } = await node.stop();
    assert.equal(code, 0, "the node exits cleanly after the storm");
  });
});
