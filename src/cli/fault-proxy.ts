// `hqts cluster up --fault-proxy` and `hqts cluster fault|heal`: the link
// proxies of src/chaos (rank 6) composed with the playground of src/cluster
// (rank 3), here in the cli layer, which may import both.
//
// Links (docs/chaos.md, "Link-fault proxy"): "nI->nJ", one proxy per ordered
// pair of nodes, in front of nJ's HTTP port for nI's traffic only (nI's
// --peer-route names it; clients keep the direct port), so a fault can cut one
// direction of one pair; "*->etcd-nK", one per destination, in front of etcd
// member nK's peer port (its advertised peer URL: etcd dials every member at
// the one URL it advertises, so its links cannot be told apart by source).
// Ports from the base port B, node indexes i, j: B+40+i (etcd peers), B+50
// (control), B+60+10i+j (node pairs).

import { createServer, type Server } from "node:http";
import { LinkRegistry, controlHandler, linkMatches, type LinkInfo } from "../chaos/proxy-control.js";
import {
  FAULT_PROXY_CONTROL_OFFSET,
  FAULT_PROXY_ETCD_PEER_OFFSET,
  faultProxyPairPort,
  MAX_NODES,
  PlaygroundError,
  readClusterFile,
  type FaultProxyRecord,
} from "../cluster/playground/layout.js";
import type { FaultProxySetup } from "../cluster/playground/playground.js";
import type { FaultState } from "../chaos/proxy.js";
import { CliError } from "./http.js";

const HOST = "127.0.0.1";

export interface FaultProxies {
  setup: FaultProxySetup;
  /** Stops the control API and every proxy (idempotent). */
  close(): Promise<void>;
}

/** Plans the proxies for a playground of `nodes` nodes at `basePort` (node ids n1..nN, as planCluster names them); `setup.start` starts them. */
export function planFaultProxies(basePort: number, nodes: number): FaultProxies {
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > MAX_NODES) throw new PlaygroundError(`--nodes must be 1..${MAX_NODES}`, 2);
  const lastPort = faultProxyPairPort(basePort, nodes - 1, nodes - 1);
  if (lastPort > 65535) throw new PlaygroundError(`--fault-proxy needs ports base..base+${lastPort - basePort} within 1024..65535`, 2);
  const links: FaultProxyRecord["links"] = {};
  const nodePeerRoutes: Record<string, Record<string, string>> = {};
  const etcdPeerAdvertise: Record<string, string> = {};
  for (let i = 0; i < nodes; i++) {
    const id = `n${i + 1}`;
    const peerProxy = basePort + FAULT_PROXY_ETCD_PEER_OFFSET + i;
    links[`*->etcd-${id}`] = { listen: `${HOST}:${peerProxy}`, target: `${HOST}:${basePort + 20 + i}` };
    etcdPeerAdvertise[id] = `http://${HOST}:${peerProxy}`;
    const routes: Record<string, string> = {};
    for (let j = 0; j < nodes; j++) {
      if (j === i) continue;
      const pairPort = faultProxyPairPort(basePort, i, j);
      links[`${id}->n${j + 1}`] = { listen: `${HOST}:${pairPort}`, target: `${HOST}:${basePort + j}` };
      routes[`n${j + 1}`] = `http://${HOST}:${pairPort}`;
    }
    nodePeerRoutes[id] = routes;
  }
  const controlPort = basePort + FAULT_PROXY_CONTROL_OFFSET;
  const record: FaultProxyRecord = { control: `http://${HOST}:${controlPort}`, links };
  const registry = new LinkRegistry();
  let server: Server | null = null;
  let closed: Promise<void> | null = null;
  const port = (hostPort: string): number => Number(hostPort.slice(hostPort.lastIndexOf(":") + 1));

  const start = async (): Promise<void> => {
    try {
      for (const [name, l] of Object.entries(links)) await registry.add(name, { listenHost: HOST, listenPort: port(l.listen), targetHost: HOST, targetPort: port(l.target) });
      const srv = createServer(controlHandler(registry));
      server = srv;
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(controlPort, HOST, () => {
          srv.off("error", reject);
          resolve();
        });
      });
    } catch (e) {
      await close();
      throw new PlaygroundError(`fault proxy: cannot listen (${(e as Error).message}); pick another --base-port`);
    }
  };
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      const srv = server;
      if (srv !== null) {
        srv.closeAllConnections();
        await new Promise<void>((r) => srv.close(() => r()));
      }
      await registry.close();
    })());
  return { setup: { nodePeerRoutes, etcdPeerAdvertise, record, start }, close };
}

// ---------------------------------------------------------------- fault / heal / status

/** "500ms", "2s", "1.5s", "250" (ms). */
export function parseDurationMs(flag: string, v: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s)?$/.exec(v.trim());
  if (m === null) throw new CliError(`${flag}: want a duration like 500ms or 2s, got "${v}"`, 2);
  const n = Number(m[1]) * (m[2] === "s" ? 1000 : 1);
  if (!Number.isFinite(n) || n < 0) throw new CliError(`${flag}: want a non-negative duration`, 2);
  return n;
}

export interface FaultOptions {
  dir: string;
  link: string[];
  delay?: string;
  jitter?: string;
  bandwidth?: string;
  drop?: string;
  partition?: boolean;
  direction: "up" | "down" | "both";
}

function controlOf(dir: string): FaultProxyRecord {
  const c = readClusterFile(dir);
  if (c.faultProxy === undefined || c.faultProxy === null) throw new CliError(`the playground in ${c.dir} runs without fault proxies (start it with: hqts cluster up --fault-proxy)`, 2);
  return c.faultProxy;
}

async function call(base: string, method: string, path: string, body?: unknown): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(5000),
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code;
    throw new CliError(`fault proxy control ${base}: ${cause ?? (e as Error).message} (is \`hqts cluster up --fault-proxy\` running?)`);
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CliError(`fault proxy control ${base}${path}: HTTP ${res.status} ${text.slice(0, 200)}`);
  }
  if (res.status !== 200) {
    const e = json as { error?: string; field?: string };
    throw new CliError(`fault proxy control ${path}: HTTP ${res.status} ${e.error ?? text.slice(0, 200)}${e.field !== undefined ? ` (field ${e.field})` : ""}`, res.status === 400 || res.status === 404 ? 2 : 1);
  }
  return json;
}

export const getLinks = async (control: string): Promise<LinkInfo[]> => ((await call(control, "GET", "/links")) as { links: LinkInfo[] }).links;

/** One direction's faults as text, "-" when none. */
function faultText(f: FaultState): string {
  const parts: string[] = [];
  if (f.partitioned) parts.push("PARTITIONED");
  if (f.delayMs > 0) parts.push(`delay ${f.delayMs}ms`);
  if (f.jitterMs > 0) parts.push(`jitter ${f.jitterMs}ms`);
  if (f.bytesPerSecond !== null) parts.push(`bandwidth ${f.bytesPerSecond}B/s`);
  if (f.dropRate > 0) parts.push(`drop ${f.dropRate}`);
  return parts.length === 0 ? "-" : parts.join(", ");
}

export function formatLinks(links: readonly LinkInfo[]): string {
  const rows: string[][] = [["LINK", "LISTEN", "TARGET", "UP (to target)", "DOWN (from target)", "OPEN", "BYTES UP", "BYTES DOWN"]];
  for (const l of links)
    rows.push([
      l.name,
      `${l.listen.host}:${l.listen.port}`,
      `${l.target.host}:${l.target.port}`,
      faultText(l.faults.up),
      faultText(l.faults.down),
      String(l.counters.connectionsOpen),
      String(l.counters.bytesUp),
      String(l.counters.bytesDown),
    ]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") + "\n";
}

/** The status line: "faults: *->n1 up delay 500ms; ..." or "faults: none". */
export function activeFaultsLine(links: readonly LinkInfo[]): string {
  const active: string[] = [];
  for (const l of links) {
    const up = faultText(l.faults.up);
    const down = faultText(l.faults.down);
    if (up === "-" && down === "-") continue;
    active.push(up === down ? `${l.name} ${up}` : `${l.name} ${[up !== "-" ? `up ${up}` : "", down !== "-" ? `down ${down}` : ""].filter((s) => s !== "").join(" / ")}`);
  }
  return `faults: ${active.length === 0 ? "none" : active.join("; ")}`;
}

/** `hqts cluster fault`: sets the given fault fields on the given links (every link without --link); prints every link's state. */
export async function runFault(o: FaultOptions): Promise<string> {
  const fp = controlOf(o.dir);
  const fields: Partial<FaultState> = {};
  if (o.delay !== undefined) fields.delayMs = parseDurationMs("--delay", o.delay);
  if (o.jitter !== undefined) fields.jitterMs = parseDurationMs("--jitter", o.jitter);
  if (o.bandwidth !== undefined) {
    const b = Number(o.bandwidth);
    if (!/^[0-9]+$/.test(o.bandwidth) || b < 0) throw new CliError("--bandwidth: want bytes per second (0 = unlimited)", 2);
    fields.bytesPerSecond = b === 0 ? null : b;
  }
  if (o.drop !== undefined) {
    const d = Number(o.drop);
    if (!(d >= 0 && d <= 1)) throw new CliError("--drop: want a rate 0..1", 2);
    fields.dropRate = d;
  }
  if (o.partition === true) fields.partitioned = true;
  if (Object.keys(fields).length === 0) throw new CliError("give at least one of --delay, --jitter, --bandwidth, --drop, --partition (hqts cluster heal clears faults)", 2);
  const known = Object.keys(fp.links);
  const targets = o.link.length === 0 ? ["*"] : o.link;
  const unknown = targets.filter((l) => !known.some((k) => linkMatches(l, k)));
  if (unknown.length > 0) throw new CliError(`no link matches ${unknown.join(", ")} (links: ${known.join(", ")})`, 2);
  const body = o.direction === "both" ? fields : { [o.direction]: fields };
  for (const l of targets) await call(fp.control, "PUT", `/links/${encodeURIComponent(l)}`, body);
  return formatLinks(await getLinks(fp.control));
}

/** `hqts cluster heal`: every fault off on every link; prints the links. */
export async function runHeal(dir: string): Promise<string> {
  const fp = controlOf(dir);
  const r = (await call(fp.control, "POST", "/heal")) as { links: LinkInfo[] };
  return formatLinks(r.links);
}
