// A TCP proxy that injects link faults (delay, bandwidth, drops, partitions)
// for the chaos scenarios and campaign (docs/chaos.md): the kernel here has no
// netem, so every node-to-node connection of a playground can be routed
// through a LinkProxy whose faults are changed at run time. One proxy is one
// link: it listens on a loopback port and forwards each accepted connection to
// one target host:port. Faults are per direction: "up" is client -> target,
// "down" is target -> client. Semantics (docs/chaos.md, "Link-fault proxy"):
//
// - delay: each chunk read from a source is due at
//   max(arrival + delayMs + U[0, jitterMs], due time of the previous chunk of
//   that direction), so jitter never reorders bytes (TCP could not either).
// - bandwidth: a due chunk is serialised on the link: it is written at
//   max(due, link free) + bytes / bytesPerSecond, so the last byte of N bytes
//   leaves no earlier than N / rate after the first; large chunks are split.
// - dropRate: probability that a NEW connection is reset right after accept
//   (a lost SYN or SYN-ACK: p = 1 - (1 - up.dropRate)(1 - down.dropRate)).
//   Bytes of established connections are never dropped: TCP would retransmit
//   them, which is a delay, not a loss.
// - partitioned: a cut cable. Queued and new bytes of that direction are held,
//   not forwarded and not refused; end-of-stream and resets are held too, so
//   the peers see silence (timeouts), never a reset from the proxy. A
//   connection accepted while either direction is partitioned is not
//   connected to the target until the link heals (a SYN would not get
//   through). Held bytes are bounded per connection and direction: at the
//   bound the source is paused ("pause", the default: the sender's kernel
//   buffers fill and its writes block, as with a real cut cable) or the
//   connection is destroyed ("destroy").
// - heal: held connections resume forwarding, in order (TCP retransmits after
//   a short outage; a peer that gave up meanwhile has closed its socket, and
//   the proxy carries that close on). Bytes that became due during the
//   partition are then written at once, paced by the bandwidth limit if any.
//
// Every buffer has an explicit bound: queued bytes per connection and
// direction (the source is paused at the bound: backpressure), connections per
// proxy (beyond it new connections are reset). Fault changes apply to chunks
// not yet due; a partition applies at once.

import { createConnection, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { BadInputError } from "../core/errors.js";

export type Direction = "up" | "down";
export const DIRECTIONS: readonly Direction[] = ["up", "down"];

export interface FaultState {
  /** Fixed one-way delay added to every chunk, ms. */
  delayMs: number;
  /** Extra delay, uniform in [0, jitterMs], per chunk (order is kept), ms. */
  jitterMs: number;
  /** Bandwidth limit in bytes per second; null = unlimited. */
  bytesPerSecond: number | null;
  /** Probability (0..1) that a new connection is reset right after accept. */
  dropRate: number;
  /** Cut cable: nothing is forwarded in this direction until healed. */
  partitioned: boolean;
}

export type LinkFaults = Record<Direction, FaultState>;

export const NO_FAULTS: Readonly<FaultState> = Object.freeze({ delayMs: 0, jitterMs: 0, bytesPerSecond: null, dropRate: 0, partitioned: false });

/** Time source and timers; injectable so schedules can be tested without real time. */
export interface ProxyClock {
  /** Monotonic milliseconds. */
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const realClock: ProxyClock = {
  now: () => performance.now(),
  setTimer: (fn, ms) => setTimeout(fn, Math.max(0, Math.ceil(ms))),
  clearTimer: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

export interface LinkProxyOptions {
  targetHost: string;
  targetPort: number;
  /** Address to listen on; loopback by default. */
  listenHost?: string;
  /** 0 (default) = chosen by the OS. */
  listenPort?: number;
  /** Open connections at most; beyond it new connections are reset. Default 256. */
  connectionsMax?: number;
  /** Bytes queued (delayed, paced or held) per connection and direction before the source is paused. Default 1 MiB. */
  queueBytesMax?: number;
  /** What to do when a partitioned direction's queue is full: pause the source (default) or destroy the connection. */
  partitionOverflow?: "pause" | "destroy";
  /** Largest chunk written at once under a bandwidth limit, bytes (smooths pacing). Default 16 KiB. */
  pacedChunkBytesMax?: number;
  initialFaults?: Partial<Record<Direction, Partial<FaultState>>>;
  clock?: ProxyClock;
  /** Uniform [0, 1); injectable for tests. */
  random?: () => number;
}

export interface LinkCounters {
  connectionsAccepted: number;
  connectionsOpen: number;
  /** Reset at accept by dropRate. */
  connectionsDropped: number;
  /** Reset at accept because connectionsMax were open. */
  connectionsRefusedLimit: number;
  /** Destroyed because a partitioned queue overflowed (partitionOverflow "destroy"). */
  connectionsDestroyedOverflow: number;
  /** The target refused or failed the connection. */
  targetConnectFailures: number;
  bytesUp: number;
  bytesDown: number;
  /** Chunks that waited for a delay, jitter or bandwidth before being written. */
  chunksDelayed: number;
  /** Bytes queued in the proxy right now, all connections and directions. */
  queuedBytes: number;
  /** Times a source socket was paused because its direction's queue was full. */
  sourcePauses: number;
}

interface Chunk {
  data: Buffer | null; // null = end-of-stream marker
  reset: boolean; // with data null: the source died without a clean end
  dueAt: number;
  sendAt: number | null; // set when the chunk starts on a bandwidth-limited link
  delayed: boolean; // had to wait (delay, jitter, pacing, partition, backpressure)
}

/** One direction of one connection: reads `src`, writes `dst` after the faults. */
class Pipe {
  readonly queue: Chunk[] = [];
  queuedBytes = 0;
  lastDueAt = -Infinity;
  linkFreeAt = -Infinity;
  timer: unknown = null;
  timerAt = Infinity;
  dstBlocked = false; // dst.write returned false; waiting for 'drain'
  srcPaused = false;
  srcDone = false; // end-of-stream marker queued

  constructor(
    readonly conn: Conn,
    readonly dir: Direction,
    readonly src: Socket,
    readonly dst: Socket,
  ) {}
}

class Conn {
  up!: Pipe;
  down!: Pipe;
  connected = false; // to the target
  closed = false;
  constructor(
    readonly client: Socket,
    readonly target: Socket,
  ) {}
}

export class LinkProxy {
  private readonly server: Server;
  private readonly conns = new Set<Conn>();
  private readonly pending = new Set<{ client: Socket; connect: () => void }>();
  private readonly faults: LinkFaults;
  private readonly clock: ProxyClock;
  private readonly random: () => number;
  readonly targetHost: string;
  readonly targetPort: number;
  readonly connectionsMax: number;
  readonly queueBytesMax: number;
  readonly partitionOverflow: "pause" | "destroy";
  readonly pacedChunkBytesMax: number;
  private readonly counters: Omit<LinkCounters, "connectionsOpen" | "queuedBytes"> = {
    connectionsAccepted: 0,
    connectionsDropped: 0,
    connectionsRefusedLimit: 0,
    connectionsDestroyedOverflow: 0,
    targetConnectFailures: 0,
    bytesUp: 0,
    bytesDown: 0,
    chunksDelayed: 0,
    sourcePauses: 0,
  };
  private closing = false;
  private listenHost: string;
  private listenPortWanted: number;

  constructor(opts: LinkProxyOptions) {
    this.targetHost = opts.targetHost;
    this.targetPort = opts.targetPort;
    this.listenHost = opts.listenHost ?? "127.0.0.1";
    this.listenPortWanted = opts.listenPort ?? 0;
    this.connectionsMax = opts.connectionsMax ?? 256;
    this.queueBytesMax = opts.queueBytesMax ?? 1024 * 1024;
    this.partitionOverflow = opts.partitionOverflow ?? "pause";
    this.pacedChunkBytesMax = opts.pacedChunkBytesMax ?? 16 * 1024;
    if (!(this.connectionsMax >= 1)) throw new BadInputError("must be at least 1", { field: "connectionsMax" });
    if (!(this.queueBytesMax >= 1)) throw new BadInputError("must be at least 1", { field: "queueBytesMax" });
    if (!(this.pacedChunkBytesMax >= 1)) throw new BadInputError("must be at least 1", { field: "pacedChunkBytesMax" });
    this.clock = opts.clock ?? realClock;
    this.random = opts.random ?? Math.random;
    this.faults = { up: { ...NO_FAULTS }, down: { ...NO_FAULTS } };
    for (const d of DIRECTIONS) {
      const init = opts.initialFaults?.[d];
      if (init) this.faults[d] = validateFaultState({ ...NO_FAULTS, ...init }, d);
    }
    this.server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (s) => this.accept(s));
  }

  /** Starts listening; resolves with the port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.listenPortWanted, this.listenHost, () => {
        this.server.off("error", reject);
        resolve(this.port);
      });
    });
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0;
  }

  get host(): string {
    return this.listenHost;
  }

  getFaults(): LinkFaults {
    return { up: { ...this.faults.up }, down: { ...this.faults.down } };
  }

  /** Changes faults of one or both directions; fields left out keep their value. */
  /** The faults `change` would leave; throws BadInputError (naming the field) and changes nothing when a value is bad. */
  checkFaults(change: Partial<Record<Direction, Partial<FaultState>>>): LinkFaults {
    const next: LinkFaults = { up: { ...this.faults.up }, down: { ...this.faults.down } };
    for (const d of DIRECTIONS) {
      const c = change[d];
      if (c) next[d] = validateFaultState({ ...next[d], ...c }, d);
    }
    return next;
  }

  setFaults(change: Partial<Record<Direction, Partial<FaultState>>>): LinkFaults {
    const next = this.checkFaults(change);
    this.faults.up = next.up;
    this.faults.down = next.down;
    this.afterFaultChange();
    return this.getFaults();
  }

  /** All faults off; held connections resume. */
  heal(): LinkFaults {
    return this.setFaults({ up: { ...NO_FAULTS }, down: { ...NO_FAULTS } });
  }

  stats(): LinkCounters {
    let queued = 0;
    for (const c of this.conns) queued += c.up.queuedBytes + c.down.queuedBytes;
    return { ...this.counters, connectionsOpen: this.conns.size + this.pending.size, queuedBytes: queued };
  }

  /** Stops listening and destroys every connection and timer. */
  close(): Promise<void> {
    this.closing = true;
    for (const p of this.pending) p.client.destroy();
    this.pending.clear();
    for (const c of [...this.conns]) this.destroyConn(c);
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
  }

  // --- connections ----------------------------------------------------------

  private accept(client: Socket): void {
    this.counters.connectionsAccepted++;
    client.on("error", () => {});
    if (this.closing) return void client.destroy();
    if (this.conns.size + this.pending.size >= this.connectionsMax) {
      this.counters.connectionsRefusedLimit++;
      return void client.resetAndDestroy();
    }
    const pass = (1 - this.faults.up.dropRate) * (1 - this.faults.down.dropRate);
    if (pass < 1 && this.random() >= pass) {
      this.counters.connectionsDropped++;
      return void client.resetAndDestroy();
    }
    client.setNoDelay(true);
    client.pause(); // resumed once the target is connected
    if (this.faults.up.partitioned || this.faults.down.partitioned) {
      // Blackhole: accepted (the kernel did), but no SYN reaches the target
      // until heal. The client's bytes stay in its kernel buffers meanwhile.
      const entry = {
        client,
        connect: () => {
          this.pending.delete(entry);
          this.connectTarget(client);
        },
      };
      this.pending.add(entry);
      client.once("close", () => this.pending.delete(entry));
      return;
    }
    this.connectTarget(client);
  }

  private connectTarget(client: Socket): void {
    if (client.destroyed) return;
    const target = createConnection({ host: this.targetHost, port: this.targetPort, allowHalfOpen: true });
    target.setNoDelay(true);
    const conn = new Conn(client, target);
    conn.up = new Pipe(conn, "up", client, target);
    conn.down = new Pipe(conn, "down", target, client);
    this.conns.add(conn);
    target.once("connect", () => {
      conn.connected = true;
      client.resume();
      this.pump(conn.up);
    });
    target.pause(); // read only through the pipe's flow control
    target.once("connect", () => target.resume());
    for (const p of [conn.up, conn.down]) this.wirePipe(p);
    target.on("error", () => {
      if (!conn.connected) {
        this.counters.targetConnectFailures++;
        // The target refused: the client sees a reset, as it would without the proxy.
        if (!client.destroyed) client.resetAndDestroy();
        this.destroyConn(conn);
      }
    });
  }

  private wirePipe(p: Pipe): void {
    p.src.on("data", (data: Buffer) => this.onData(p, data));
    p.src.on("end", () => this.onSourceEnd(p, false));
    p.src.on("close", (hadError) => {
      if (!p.srcDone) this.onSourceEnd(p, hadError || !p.src.readableEnded);
      this.maybeFinish(p.conn);
    });
    p.dst.on("close", () => this.pump(p)); // discards what can no longer be delivered
    p.dst.on("drain", () => {
      p.dstBlocked = false;
      this.pump(p);
    });
  }

  private onData(p: Pipe, data: Buffer): void {
    const f = this.faults[p.dir];
    const now = this.clock.now();
    const delay = f.delayMs + (f.jitterMs > 0 ? this.random() * f.jitterMs : 0);
    const dueAt = Math.max(now + delay, p.lastDueAt);
    p.lastDueAt = dueAt;
    p.queue.push({ data, reset: false, dueAt, sendAt: null, delayed: dueAt > now });
    p.queuedBytes += data.length;
    if (p.queuedBytes >= this.queueBytesMax) {
      if (f.partitioned && this.partitionOverflow === "destroy") {
        this.counters.connectionsDestroyedOverflow++;
        this.destroyConn(p.conn);
        return;
      }
      if (!p.srcPaused) {
        p.srcPaused = true;
        this.counters.sourcePauses++;
        p.src.pause();
      }
    }
    this.pump(p);
  }

  private onSourceEnd(p: Pipe, reset: boolean): void {
    if (p.srcDone) return;
    p.srcDone = true;
    const dueAt = Math.max(this.clock.now() + this.faults[p.dir].delayMs, p.lastDueAt);
    p.lastDueAt = dueAt;
    p.queue.push({ data: null, reset, dueAt, sendAt: null, delayed: false });
    this.pump(p);
  }

  /** Writes what is due, in order, unless partitioned or the destination is full. */
  private pump(p: Pipe): void {
    const conn = p.conn;
    if (conn.closed || !conn.connected) return;
    const f = this.faults[p.dir];
    while (p.queue.length > 0) {
      if (p.dst.destroyed) {
        // Nobody to deliver to: discard, and let the source go on (its own end closes it).
        p.queue.length = 0;
        p.queuedBytes = 0;
        this.resumeSource(p);
        return this.clearTimer(p);
      }
      const head = p.queue[0]!;
      if (f.partitioned || p.dstBlocked) {
        head.delayed = true;
        return this.clearTimer(p);
      }
      const now = this.clock.now();
      if (head.dueAt > now) return this.armTimer(p, head.dueAt);
      if (head.data !== null && f.bytesPerSecond !== null) {
        if (head.sendAt === null) {
          if (head.data.length > this.pacedChunkBytesMax) {
            // Split so one big read does not make a long silent gap.
            const rest = head.data.subarray(this.pacedChunkBytesMax);
            head.data = head.data.subarray(0, this.pacedChunkBytesMax);
            p.queue.splice(1, 0, { data: rest, reset: false, dueAt: head.dueAt, sendAt: null, delayed: true });
          }
          head.sendAt = Math.max(now, p.linkFreeAt) + (head.data.length * 1000) / f.bytesPerSecond;
          p.linkFreeAt = head.sendAt;
        }
        if (head.sendAt > now) {
          head.delayed = true;
          return this.armTimer(p, head.sendAt);
        }
      }
      p.queue.shift();
      if (head.data === null) {
        // A source that died without a clean end is passed on as a reset.
        if (head.reset) p.dst.resetAndDestroy();
        else p.dst.end();
        return this.clearTimer(p);
      }
      p.queuedBytes -= head.data.length;
      if (head.delayed) this.counters.chunksDelayed++;
      if (p.dir === "up") this.counters.bytesUp += head.data.length;
      else this.counters.bytesDown += head.data.length;
      if (!p.dst.write(head.data)) p.dstBlocked = true;
      if (p.queuedBytes < this.queueBytesMax) this.resumeSource(p);
    }
    this.clearTimer(p);
  }

  private resumeSource(p: Pipe): void {
    if (p.srcPaused && !p.src.destroyed) {
      p.srcPaused = false;
      p.src.resume();
    }
  }

  private armTimer(p: Pipe, at: number): void {
    if (p.timer !== null && p.timerAt <= at) return;
    this.clearTimer(p);
    p.timerAt = at;
    p.timer = this.clock.setTimer(() => {
      p.timer = null;
      p.timerAt = Infinity;
      this.pump(p);
    }, at - this.clock.now());
  }

  private clearTimer(p: Pipe): void {
    if (p.timer !== null) this.clock.clearTimer(p.timer);
    p.timer = null;
    p.timerAt = Infinity;
  }

  private afterFaultChange(): void {
    if (!this.faults.up.partitioned && !this.faults.down.partitioned) {
      for (const entry of [...this.pending]) entry.connect();
    }
    for (const c of this.conns) {
      this.pump(c.up);
      this.pump(c.down);
    }
  }

  /** A connection is forgotten once both its sockets are closed. */
  private maybeFinish(conn: Conn): void {
    if (!conn.closed && conn.client.destroyed && conn.target.destroyed) this.destroyConn(conn);
  }

  private forget(conn: Conn): void {
    conn.closed = true;
    this.clearTimer(conn.up);
    this.clearTimer(conn.down);
    this.conns.delete(conn);
  }

  private destroyConn(conn: Conn): void {
    this.forget(conn);
    conn.up.queue.length = 0;
    conn.down.queue.length = 0;
    conn.up.queuedBytes = 0;
    conn.down.queuedBytes = 0;
    conn.client.destroy();
    conn.target.destroy();
  }
}

/** Checks a complete fault state; errors name the field (e.g. "up.dropRate"). */
export function validateFaultState(f: FaultState, dir: Direction | "" = ""): FaultState {
  const field = (name: string): { field: string } => ({ field: dir === "" ? name : `${dir}.${name}` });
  const nonNegative = (name: "delayMs" | "jitterMs"): void => {
    const v = f[name];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new BadInputError(`must be a finite number >= 0, got ${JSON.stringify(v)}`, field(name));
  };
  nonNegative("delayMs");
  nonNegative("jitterMs");
  if (f.bytesPerSecond !== null && (typeof f.bytesPerSecond !== "number" || !Number.isFinite(f.bytesPerSecond) || f.bytesPerSecond <= 0)) {
    throw new BadInputError(`must be null (unlimited) or a finite number > 0, got ${JSON.stringify(f.bytesPerSecond)}`, field("bytesPerSecond"));
  }
  if (typeof f.dropRate !== "number" || !(f.dropRate >= 0 && f.dropRate <= 1)) {
    throw new BadInputError(`must be a number in [0, 1], got ${JSON.stringify(f.dropRate)}`, field("dropRate"));
  }
  if (typeof f.partitioned !== "boolean") throw new BadInputError(`must be true or false, got ${JSON.stringify(f.partitioned)}`, field("partitioned"));
  return { delayMs: f.delayMs, jitterMs: f.jitterMs, bytesPerSecond: f.bytesPerSecond, dropRate: f.dropRate, partitioned: f.partitioned };
}
