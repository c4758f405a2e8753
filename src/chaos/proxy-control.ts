// Named link proxies ("n1->n2", "*->etcd-n2", ...) and their JSON control
// API, served as a node:http handler (docs/chaos.md, "Link-fault proxy"):
//
//   GET  /links             every link: listen address, target, faults, counters
//   GET  /links/<pattern>   the links the pattern matches ({links: [...]})
//   PUT  /links/<pattern>   change faults on every link it matches:
//                           {"up": {...}, "down": {...}} and/or fault fields
//                           at the top level (both directions)
//   POST /heal              all faults off on every link
//
// A pattern is a link name in which "*" stands for any run of characters:
// "n1->*" is everything n1 sends to its peers, "*->n1" everything they send
// to n1, "*" every link. A pattern that matches nothing is a 404.
//
// Errors are JSON {error, code, field?}: 400 bad_input (naming the field),
// 404 not_found, 405, 413 too_large.

import type { IncomingMessage, ServerResponse } from "node:http";
import { BadInputError, HqError, NotFoundError } from "../core/errors.js";
import { DIRECTIONS, LinkProxy, type Direction, type FaultState, type LinkCounters, type LinkFaults, type LinkProxyOptions } from "./proxy.js";
import { readJsonBody } from "../net/body.js";

export interface LinkInfo {
  name: string;
  listen: { host: string; port: number };
  target: { host: string; port: number };
  faults: LinkFaults;
  counters: LinkCounters;
}

export type FaultChange = Partial<Record<Direction, Partial<FaultState>>>;

const FAULT_FIELDS: readonly (keyof FaultState)[] = ["delayMs", "jitterMs", "bytesPerSecond", "dropRate", "partitioned"];
// "*" in a link's own name stands for every source ("*->etcd-n2": one proxy in front of etcd-n2).
const LINK_NAME = /^[A-Za-z0-9_.:>*-]{1,64}$/;
/** Control request bodies are tiny; anything larger is refused. */
export const CONTROL_BODY_BYTES_MAX = 16 * 1024;

/** Whether link `name` matches `pattern` ("*" = any run of characters, everything else literal). */
export function linkMatches(pattern: string, name: string): boolean {
  const parts = pattern.split("*");
  if (parts.length === 1) return pattern === name;
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (!name.startsWith(first) || name.length < first.length + last.length) return false;
  let at = first.length;
  for (const mid of parts.slice(1, -1)) {
    const k = name.indexOf(mid, at);
    if (k < 0) return false;
    at = k + mid.length;
  }
  return name.length - last.length >= at && name.endsWith(last);
}

export class LinkRegistry {
  private readonly links = new Map<string, LinkProxy>();

  /** Creates, starts and registers a link proxy; resolves with it (its port is chosen by the OS unless given). */
  async add(name: string, opts: LinkProxyOptions): Promise<LinkProxy> {
    if (!LINK_NAME.test(name)) throw new BadInputError(`link name "${name.slice(0, 80)}" must match ${LINK_NAME}`, { field: "name" });
    if (this.links.has(name)) throw new BadInputError(`link "${name}" already exists`, { field: "name" });
    const proxy = new LinkProxy(opts);
    this.links.set(name, proxy);
    try {
      await proxy.listen();
    } catch (e) {
      this.links.delete(name);
      throw e;
    }
    return proxy;
  }

  get(name: string): LinkProxy {
    const p = this.links.get(name);
    if (p === undefined) throw new NotFoundError(`no link "${name.slice(0, 80)}"`);
    return p;
  }

  names(): string[] {
    return [...this.links.keys()].sort();
  }

  /** The names `pattern` matches, sorted; NotFoundError when none. */
  match(pattern: string): string[] {
    if (!LINK_NAME.test(pattern)) throw new BadInputError(`link pattern "${pattern.slice(0, 80)}" must match ${LINK_NAME}`, { field: "name" });
    const names = this.names().filter((n) => linkMatches(pattern, n));
    if (names.length === 0) throw new NotFoundError(`no link matches "${pattern}"`);
    return names;
  }

  info(name: string): LinkInfo {
    const p = this.get(name);
    return {
      name,
      listen: { host: p.host, port: p.port },
      target: { host: p.targetHost, port: p.targetPort },
      faults: p.getFaults(),
      counters: p.stats(),
    };
  }

  list(): LinkInfo[] {
    return this.names().map((n) => this.info(n));
  }

  /** Applies a validated change to one link (all-or-nothing). */
  set(name: string, change: FaultChange): LinkFaults {
    return this.get(name).setFaults(change);
  }

  healAll(): void {
    for (const p of this.links.values()) p.heal();
  }

  async close(): Promise<void> {
    const all = [...this.links.values()];
    this.links.clear();
    await Promise.all(all.map((p) => p.close()));
  }
}

/**
 * Parses a PUT body: {"up": {...}, "down": {...}} and/or fault fields at the
 * top level, which apply to both directions (a direction's own field wins).
 * Unknown fields are refused; values are checked by LinkProxy.setFaults.
 */
export function parseFaultChange(body: unknown): FaultChange {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new BadInputError("body must be a JSON object", { field: "body" });
  const both: Partial<FaultState> = {};
  const change: FaultChange = {};
  for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
    if (k === "up" || k === "down") {
      if (typeof v !== "object" || v === null || Array.isArray(v)) throw new BadInputError("must be an object of fault fields", { field: k });
      const dirChange: Partial<FaultState> = {};
      for (const [fk, fv] of Object.entries(v as Record<string, unknown>)) {
        if (!(FAULT_FIELDS as readonly string[]).includes(fk)) throw new BadInputError(`unknown fault field (want ${FAULT_FIELDS.join(", ")})`, { field: `${k}.${fk}` });
        (dirChange as Record<string, unknown>)[fk] = fv;
      }
      change[k] = dirChange;
    } else if ((FAULT_FIELDS as readonly string[]).includes(k)) {
      (both as Record<string, unknown>)[k] = v;
    } else {
      throw new BadInputError(`unknown field (want up, down or ${FAULT_FIELDS.join(", ")})`, { field: k });
    }
  }
  if (Object.keys(both).length > 0) for (const d of DIRECTIONS) change[d] = { ...both, ...change[d] };
  return change;
}

function statusOf(e: HqError): number {
  switch (e.code) {
    case "bad_input":
      return 400;
    case "not_found":
      return 404;
    case "too_large":
      return 413;
    default:
      return 500;
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": String(Buffer.byteLength(text)) });
  res.end(text);
}


/** The control API as a node:http request listener. */
export function controlHandler(registry: LinkRegistry): (req: IncomingMessage, res: ServerResponse) => void {
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const path = url.pathname;
    const method = req.method ?? "GET";
    if (path === "/links") {
      if (method !== "GET") return void send(res, 405, { error: "use GET", code: "method_not_allowed" });
      return void send(res, 200, { links: registry.list() });
    }
    if (path === "/heal") {
      if (method !== "POST") return void send(res, 405, { error: "use POST", code: "method_not_allowed" });
      req.resume();
      registry.healAll();
      return void send(res, 200, { links: registry.list() });
    }
    if (path.startsWith("/links/")) {
      let name: string;
      try {
        name = decodeURIComponent(path.slice("/links/".length));
      } catch {
        throw new BadInputError("link name is not valid percent-encoding", { field: "name" });
      }
      const names = registry.match(name); // 404 before reading the body
      if (method === "GET") return void send(res, 200, { links: names.map((n) => registry.info(n)) });
      if (method === "PUT") {
        const change = parseFaultChange(await readJsonBody(req, CONTROL_BODY_BYTES_MAX));
        // Validated on every link before any changes, so a bad value leaves all of them as they were.
        for (const n of names) registry.get(n).checkFaults(change);
        for (const n of names) registry.set(n, change);
        return void send(res, 200, { links: names.map((n) => registry.info(n)) });
      }
      return void send(res, 405, { error: "use GET or PUT", code: "method_not_allowed" });
    }
    send(res, 404, { error: `no route ${path.slice(0, 100)}`, code: "not_found" });
  };
  return (req, res) => {
    handle(req, res).catch((e: unknown) => {
      req.resume();
      if (res.headersSent) return void res.destroy();
      if (e instanceof HqError) send(res, statusOf(e), { error: e.message, ...e.toJSON() });
      else send(res, 500, { error: e instanceof Error ? e.message : String(e), code: "internal" });
    });
  };
}
