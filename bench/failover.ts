// Failover benchmark (issue 3): on a real 3-node playground, a writer streams
// batches through the node beside etcd's leader; that node and its etcd member
// are SIGKILLed; we measure from the kill to the writer's first successful
// retry (same Idempotency-Key) through another node. Repeated --runs times,
// restarting the killed node in between; then every acknowledged point is
// checked on every node (none lost, none duplicated).
//   node --import tsx bench/failover.ts [--runs 10]      (after `npx tsc -p .`)
// It reuses the test suite's playground helper: the same processes, started and
// stopped by pid the same way.

import { parseArgs } from "node:util";
import { cli, readClusterFile, startPlayground, waitReplicationReady } from "../test/helpers/playground.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs: a positive integer");

interface Outcome {
  status: number | "dropped";
}

async function write(url: string, seq: number): Promise<Outcome> {
  try {
    const res = await fetch(`${url}/api/v2/write?precision=ns`, {
      method: "POST",
      body: `failover value=${seq} ${1_700_000_300_000_000_000n + BigInt(seq)}`,
      headers: { "Idempotency-Key": `failover-${seq}`, Accept: "application/json" },
      signal: AbortSignal.timeout(15_000),
    });
    await res.arrayBuffer();
    return { status: res.status };
  } catch {
    return { status: "dropped" };
  }
}

const pct = (xs: number[], p: number): number => xs[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;

const pg = await startPlayground();
const stopAll = async (): Promise<void> => {
  await pg.cleanup();
};
process.on("SIGINT", () => void stopAll().then(() => process.exit(130)));
try {
  const urls = pg.nodes().map((n) => n.http);
  await waitReplicationReady(urls);
  const failoverMs: number[] = [];
  const acked = new Set<number>();
  let seq = 0;
  let nonRetryable = 0;
  for (let run = 1; run <= runs; run++) {
    const st = cli("cluster", "status", "--dir", pg.dir, "--json");
    if (st.status !== 0) throw new Error(`cluster status: ${st.stderr}`);
    const leader = (JSON.parse(st.stdout) as { etcdLeader: string | null }).etcdLeader;
    const nodes = readClusterFile(pg.dir).nodes;
    const victim = nodes.find((n) => n.etcd.name === leader) ?? nodes[0]!;
    const others = nodes.filter((n) => n !== victim).map((n) => n.http);
    // Warm: 20 acked writes through the victim.
    for (let k = 0; k < 20; seq++) {
      const r = await write(victim.http, seq);
      if (r.status !== 200) throw new Error(`warm-up write through ${victim.id}: ${r.status}`);
      acked.add(seq);
      k++;
    }
    // The write in flight when the kill lands, then retries of the same key through the others.
    const inFlight = write(victim.http, seq);
    const killedAt = performance.now();
    process.kill(victim.pid!, "SIGKILL");
    if (victim.etcd.pid !== null) process.kill(victim.etcd.pid, "SIGKILL");
    let r = await inFlight;
    let attempt = 0;
    while (r.status !== 200) {
      if (typeof r.status === "number" && r.status < 500 && r.status !== 429) nonRetryable++;
      r = await write(others[attempt++ % others.length]!, seq);
    }
    const ms = performance.now() - killedAt;
    failoverMs.push(ms);
    acked.add(seq);
    seq++;
    console.log(`run ${run}: killed ${victim.id} (beside ${leader ?? "?"}); retry acked after ${ms.toFixed(0)} ms, ${attempt} retries`);
    const back = cli("cluster", "start-node", victim.id, "--dir", pg.dir);
    if (back.status !== 0) throw new Error(`start-node ${victim.id}: ${back.stderr}${back.stdout}`);
    await waitReplicationReady(urls, 60_000);
  }

  // Every acked point on every node, exactly once (catch-up included).
  const deadline = Date.now() + 30_000;
  let report = "";
  for (;;) {
    const per = await Promise.all(
      urls.map(async (u) => {
        const text = await (await fetch(`${u}/api/v1/export?match[]=failover_value`)).text();
        const values = text.split("\n").filter((l) => l !== "").flatMap((l) => (JSON.parse(l) as { values: number[] }).values);
        const lost = [...acked].filter((v) => !values.includes(v)).length;
        const dup = values.length - new Set(values).size;
        return { u, lost, dup };
      }),
    );
    report = per.map((p) => `${p.u}: lost ${p.lost}, duplicated ${p.dup}`).join("; ");
    if (per.every((p) => p.lost === 0 && p.dup === 0) || Date.now() > deadline) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  const sorted = [...failoverMs].sort((a, b) => a - b);
  console.log(`\nfailover over ${runs} kills (ms from SIGKILL to the acked retry): min ${sorted[0]!.toFixed(0)}, p50 ${pct(sorted, 50).toFixed(0)}, p90 ${pct(sorted, 90).toFixed(0)}, p99 ${pct(sorted, 99).toFixed(0)}, max ${sorted[sorted.length - 1]!.toFixed(0)}`);
  console.log(`non-retryable answers during failover: ${nonRetryable}`);
  console.log(`acked points: ${acked.size}; ${report}`);
} finally {
  await stopAll();
}
