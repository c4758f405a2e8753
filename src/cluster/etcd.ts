// The etcd client of a node, configured as DESIGN.md decision 2 demands.
//
// etcd holds metadata only (membership, shard map, configuration, elections);
// it is never in the path of a write or a read. So a slow or absent etcd must
// cost a node nothing but a stale view, and every call here must fail fast:
//
// - every unary call carries a gRPC deadline (callTimeoutMs, default 1.5 s);
//   the etcd3 client has none by default and, measured here, a call to a
//   follower during an election hung and was retried silently for 6-7 s;
// - etcd3's fault handling is replaced by pass-through policies: its default
//   global policy retries 3 times, and its default per-host circuit breaker
//   shuts a host out for 5 s after 3 failures (so a member that came back is
//   ignored for 5 s). The callers retry on their own schedule (the membership
//   loop ticks every second or so) and each call picks a random endpoint; a
//   call refused at connection is tried again at once on another draw (it
//   never reached etcd), so a dead member costs a few milliseconds;
// - every failure becomes a typed HqError: UnavailableError (code
//   "unavailable", retryable) for anything transient (no connection, deadline,
//   no leader, cancelled), HqError "internal" (not retryable) otherwise.

import { Etcd3, type IOptions } from "etcd3";
import { HqError, UnavailableError, isHqError } from "../core/errors.js";

export const DEFAULT_CALL_TIMEOUT_MS = 1500;

type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;
type Backoff = NonNullable<NonNullable<IOptions["faultHandling"]>["watchBackoff"]>;

const noEvent = (): { dispose(): void } => ({ dispose: () => undefined });

/**
 * A cockatiel-compatible policy that just runs the call once: no retry, no
 * circuit breaker. (cockatiel's own `noop` would do, but it is not a
 * dependency of ours; etcd3 only calls execute().)
 */
function passThroughPolicy(): Policy {
  const p = {
    onSuccess: noEvent,
    onFailure: noEvent,
    execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> =>
      await fn({ signal: signal ?? new AbortController().signal }),
  };
  return p as unknown as Policy;
}

/** Reconnect backoff of a broken watch stream: a constant delay (etcd3's default grows to 10+ s). */
function constantBackoff(ms: number): Backoff {
  const b = { duration: ms, next: () => b };
  return b as unknown as Backoff;
}

export interface EtcdOptions {
  /** Client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: readonly string[];
  /** Deadline of every unary call. */
  callTimeoutMs?: number;
  /** Delay before a broken watch stream reconnects. */
  watchRetryMs?: number;
}

/** Splits "--etcd URL[,URL...]" into a list of endpoints; accepts host:port and adds http://. */
export function parseEndpoints(raw: string): string[] {
  const list = raw
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => (/^https?:\/\//.test(s) ? s : `http://${s}`));
  for (const e of list) {
    let u: URL;
    try {
      u = new URL(e);
    } catch {
      throw new HqError("bad_input", `etcd endpoint "${e}" is not a URL`, { details: { field: "--etcd" } });
    }
    if (u.port === "" || u.pathname !== "/") throw new HqError("bad_input", `etcd endpoint "${e}": expected http://HOST:PORT`, { details: { field: "--etcd" } });
  }
  if (list.length === 0) throw new HqError("bad_input", "no etcd endpoint given", { details: { field: "--etcd" } });
  return list;
}

const TRANSIENT_NAMES = new Set([
  "GRPCUnavailableError",
  "GRPCDeadlineExceededError",
  "GRPCCancelledError",
  "GRPCUnknownError",
  "GRPCInternalError",
  "GRPCAbortedError",
  "GRPCResourceExhastedError",
  "GRPCGenericError",
  "GRPCProtocolError",
  "EtcdWatchStreamEnded",
  "BrokenCircuitError",
  "TaskCancelledError",
]);

/** Turns anything an etcd call threw into a typed HqError naming the operation. */
export function toHqError(op: string, e: unknown, endpoints: readonly string[]): HqError {
  if (isHqError(e)) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const name = err.constructor?.name ?? err.name;
  const msg = err.message;
  const details = { etcdOp: op, etcdError: name, endpoints: [...endpoints] };
  if (name === "EtcdLeaseInvalidError" || /lease not found/i.test(msg))
    return new HqError("not_found", `etcd ${op}: the lease has expired or is unknown (${msg})`, { cause: err, details });
  if (
    TRANSIENT_NAMES.has(name) ||
    /unavailable|deadline|timed? ?out|ECONNREFUSED|ECONNRESET|no leader|leader changed|too many requests|connection|closed/i.test(msg)
  )
    return new UnavailableError(`etcd ${op} failed: ${msg.split("\n")[0]}`, 1, { cause: err, details });
  return new HqError("internal", `etcd ${op} failed: ${msg.split("\n")[0]}`, { cause: err, details });
}

/** A thin, fail-fast wrapper around the etcd3 client. */
export class EtcdMeta {
  readonly client: Etcd3;
  readonly endpoints: readonly string[];
  readonly callTimeoutMs: number;
  private closed = false;

  constructor(opts: EtcdOptions) {
    this.endpoints = [...opts.endpoints];
    this.callTimeoutMs = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const timeout = this.callTimeoutMs;
    this.client = new Etcd3({
      hosts: [...this.endpoints],
      dialTimeout: timeout,
      // Unary calls get a deadline; streams (watch, keepalive) are long-lived and get theirs per use.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      faultHandling: { host: () => passThroughPolicy(), global: passThroughPolicy(), watchBackoff: constantBackoff(opts.watchRetryMs ?? 1000) },
      grpcOptions: {
        // Let gRPC give up on a dead endpoint quickly and retry the connection soon.
        "grpc.initial_reconnect_backoff_ms": 200,
        "grpc.max_reconnect_backoff_ms": 1000,
        "grpc.enable_retries": 0,
      },
    });
  }

  /** The deadline for a call starting now. */
  deadline(): { deadline: number } {
    return { deadline: Date.now() + this.callTimeoutMs };
  }

  /**
   * Runs one etcd call, mapping every failure to a typed HqError. A call refused at connection (the request never
   * left this node, so running it again is safe) is tried again at once, up to once per other endpoint: etcd3 picks
   * a random endpoint per call and would otherwise keep drawing a dead member's, costing a membership tick each time.
   */
  async call<T>(op: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const started = Date.now();
      try {
        return await this.callOnce(op, fn);
      } catch (e) {
        const refused = e instanceof HqError && e.code === "unavailable" && /ECONNREFUSED|No connection established|connect/i.test(e.message);
        if (!refused || attempt >= this.endpoints.length - 1 || Date.now() - started > 250 || this.closed) throw e;
      }
    }
  }

  private async callOnce<T>(op: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new UnavailableError(`etcd ${op}: the client is closed`, 1, { details: { etcdOp: op } });
    let timer: NodeJS.Timeout | undefined;
    const guard = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new UnavailableError(`etcd ${op} timed out after ${this.callTimeoutMs + 500} ms`, 1, { details: { etcdOp: op, endpoints: [...this.endpoints] } })),
        this.callTimeoutMs + 500,
      );
      timer.unref();
    });
    const run = fn();
    run.catch(() => undefined); // settled after the guard fired: nothing to do
    try {
      return await Promise.race([run, guard]);
    } catch (e) {
      throw toHqError(op, e, this.endpoints);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The value of one key (utf8), or null. */
  get(key: string): Promise<string | null> {
    return this.call(`get ${key}`, () => this.client.get(key).options(this.deadline()).string());
  }

  /** Every key under a prefix with its value (utf8) and the revision of the read. */
  async getPrefix(prefix: string): Promise<{ kvs: Map<string, string>; revision: string }> {
    const res = await this.call(`get ${prefix}*`, () => this.client.getAll().prefix(prefix).options(this.deadline()).exec());
    const kvs = new Map<string, string>();
    for (const kv of res.kvs) kvs.set(kv.key.toString("utf8"), kv.value.toString("utf8"));
    return { kvs, revision: res.header.revision };
  }

  async put(key: string, value: string, leaseId?: string): Promise<void> {
    await this.call(`put ${key}`, () => {
      const b = this.client.put(key).value(value);
      if (leaseId !== undefined) b.lease(leaseId);
      return b.options(this.deadline()).exec();
    });
  }

  /**
   * Atomically puts key=value if the key does not exist (a txn on create_revision == 0).
   * Returns whether this call created it, and the value the key holds afterwards.
   */
  async putIfAbsent(key: string, value: string, leaseId?: string): Promise<{ created: boolean; value: string }> {
    const res = await this.call(`put-if-absent ${key}`, () =>
      this.client.kv.txn(
        {
          compare: [{ key: Buffer.from(key), target: "Create", result: "Equal", create_revision: "0" }],
          success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(value), ...(leaseId !== undefined ? { lease: leaseId } : {}) } }],
          failure: [{ request_range: { key: Buffer.from(key) } }],
        },
        this.deadline(),
      ),
    );
    if (res.succeeded) return { created: true, value };
    const kv = res.responses[0]?.response_range?.kvs[0];
    return { created: false, value: kv ? kv.value.toString("utf8") : "" };
  }

  /**
   * Compare-and-swap: if `key` holds exactly `expected` (null: does not exist), puts key=value and every `also` pair,
   * in one transaction. Returns whether it did, and what the key holds now when it did not ("" if absent).
   */
  async putIfValue(key: string, expected: string | null, value: string, also: readonly (readonly [string, string])[] = []): Promise<{ swapped: boolean; current: string | null }> {
    const compare =
      expected === null
        ? [{ key: Buffer.from(key), target: "Create" as const, result: "Equal" as const, create_revision: "0" }]
        : [{ key: Buffer.from(key), target: "Value" as const, result: "Equal" as const, value: Buffer.from(expected) }];
    const res = await this.call(`put-if-value ${key}`, () =>
      this.client.kv.txn(
        {
          compare,
          success: [[key, value] as const, ...also].map(([k, v]) => ({ request_put: { key: Buffer.from(k), value: Buffer.from(v) } })),
          failure: [{ request_range: { key: Buffer.from(key) } }],
        },
        this.deadline(),
      ),
    );
    if (res.succeeded) return { swapped: true, current: value };
    const kv = res.responses[0]?.response_range?.kvs[0];
    return { swapped: false, current: kv ? kv.value.toString("utf8") : null };
  }

  /** The keys under a prefix, without their values. */
  async keysWithPrefix(prefix: string): Promise<string[]> {
    return this.call(`keys ${prefix}*`, () => this.client.getAll().prefix(prefix).options(this.deadline()).keys());
  }

  async delete(key: string): Promise<void> {
    await this.call(`delete ${key}`, () => this.client.delete().key(key).options(this.deadline()).exec());
  }

  /** Deletes key only if it holds exactly `value` (so a node never deletes another's registration). */
  async deleteIfValue(key: string, value: string): Promise<boolean> {
    const res = await this.call(`delete-if ${key}`, () =>
      this.client.kv.txn(
        {
          compare: [{ key: Buffer.from(key), target: "Value", result: "Equal", value: Buffer.from(value) }],
          success: [{ request_delete_range: { key: Buffer.from(key) } }],
          failure: [],
        },
        this.deadline(),
      ),
    );
    return res.succeeded;
  }

  async grantLease(ttlS: number): Promise<string> {
    const res = await this.call("lease grant", () => this.client.leaseClient.leaseGrant({ TTL: ttlS }, this.deadline()));
    if (res.error) throw new UnavailableError(`etcd lease grant: ${res.error}`, 1, { details: { etcdOp: "lease grant" } });
    return res.ID;
  }

  /** One keep-alive of a lease; returns the remaining TTL (s). Throws not_found when the lease is gone. */
  async keepAliveOnce(leaseId: string): Promise<number> {
    const res = await this.call("lease keepalive", async () => {
      const stream = await this.client.leaseClient.leaseKeepAlive(this.deadline());
      try {
        return await new Promise<{ TTL: string }>((resolve, reject) => {
          stream.on("data", resolve);
          stream.on("error", reject);
          stream.on("end", () => reject(new Error("keepalive stream ended (connection closed)")));
          stream.write({ ID: leaseId });
        });
      } finally {
        stream.end();
      }
    });
    const ttl = Number(res.TTL);
    if (!(ttl > 0)) throw new HqError("not_found", `etcd lease ${leaseId} has expired`, { details: { etcdOp: "lease keepalive" } });
    return ttl;
  }

  async revokeLease(leaseId: string): Promise<void> {
    await this.call("lease revoke", () => this.client.leaseClient.leaseRevoke({ ID: leaseId }, this.deadline()));
  }

  /**
   * Watches a prefix; onChange is called (debounced by the event loop) after
   * every put or delete, and after every (re)connection of the stream, so the
   * caller re-reads the prefix and never depends on having seen every event.
   * Returns a function that cancels the watch.
   */
  async watchPrefix(prefix: string, onChange: () => void): Promise<() => Promise<void>> {
    const watcher = await this.client.watch().prefix(prefix).create();
    let pending = false;
    const fire = (): void => {
      if (pending) return;
      pending = true;
      queueMicrotask(() => {
        pending = false;
        onChange();
      });
    };
    watcher.on("put", fire);
    watcher.on("delete", fire);
    watcher.on("connected", fire);
    watcher.on("error", () => undefined); // the watch manager reconnects; the caller's resync covers the gap
    watcher.on("disconnected", () => undefined);
    return async () => {
      await watcher.cancel().catch(() => undefined);
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }
}

/** Status of one etcd member, asked at its own endpoint (like `etcdctl endpoint status`). */
export interface EndpointStatus {
  endpoint: string;
  ok: boolean;
  memberId?: string;
  leaderId?: string;
  isLeader?: boolean;
  raftTerm?: string;
  version?: string;
  dbSizeBytes?: number;
  error?: string;
}

export async function endpointStatus(endpoint: string, timeoutMs = DEFAULT_CALL_TIMEOUT_MS): Promise<EndpointStatus> {
  const meta = new EtcdMeta({ endpoints: [endpoint], callTimeoutMs: timeoutMs });
  try {
    const s = await meta.call("status", () => meta.client.maintenance.status(meta.deadline()));
    return {
      endpoint,
      ok: true,
      memberId: s.header.member_id,
      leaderId: s.leader,
      isLeader: s.leader === s.header.member_id,
      raftTerm: s.raftTerm,
      version: s.version,
      dbSizeBytes: Number(s.dbSize),
    };
  } catch (e) {
    return { endpoint, ok: false, error: (e as Error).message };
  } finally {
    meta.close();
  }
}

/** Keys of a cluster named `cluster` (several HQ-TS clusters may share one etcd). */
export function clusterKeys(cluster: string): {
  root: string;
  members: string;
  member(id: string): string;
  shards: string;
  config: string;
  election(name: string): string;
  /** Node public keys, kept after rotation: keys/<node>/<key id hex> = verifier key string. */
  keys: string;
  /** The newest signed checkpoint of the Merkle log ({size, note}). */
  checkpoint: string;
  /** Recent sequencer cuts: cuts/<first leaf index, 12 digits> = {start, entries, note}. */
  cuts: string;
} {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(cluster)) throw new HqError("bad_input", `cluster name "${cluster}": use 1-64 of [A-Za-z0-9_.-]`, { details: { field: "--cluster" } });
  const root = `/hqts/${cluster}`;
  return {
    root,
    members: `${root}/members/`,
    member: (id) => `${root}/members/${id}`,
    shards: `${root}/shards`,
    config: `${root}/config`,
    election: (name) => `${root}/elections/${name}`,
    keys: `${root}/keys/`,
    checkpoint: `${root}/ledger/checkpoint`,
    cuts: `${root}/ledger/cuts/`,
  };
}
