// CPU time of processes read from /proc/<pid>/stat (utime + stime of each
// process, plus cutime + cstime: the children it has already waited for), for
// a process and every descendant of it, so that a wrapper, a helper child or a
// child that exits within the window still counts.

import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";

let ticks: number | null = null;

/** Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if getconf is missing). */
export function clockTicks(): number {
  if (ticks !== null) return ticks;
  try {
    const v = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8", timeout: 5_000 }).trim());
    ticks = Number.isInteger(v) && v > 0 ? v : 100;
  } catch {
    ticks = 100;
  }
  return ticks;
}

interface StatLine {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime + cutime + cstime, in clock ticks. */
  ticks: number;
  /** utime + stime alone (the process's own threads), in clock ticks. */
  selfTicks: number;
}

/** Parses /proc/<pid>/stat; null if the process is gone. The command name may hold spaces and parentheses: fields start after the last ')'. */
function readStat(pid: number): StatLine | null {
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  const close = s.lastIndexOf(")");
  const f = s.slice(close + 2).split(" ");
  // After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17); f[0] is field 3.
  const num = (field: number): number => Number(f[field - 3] ?? "0");
  return { pid, ppid: num(4), comm: s.slice(s.indexOf("(") + 1, close), ticks: num(14) + num(15) + num(16) + num(17), selfTicks: num(14) + num(15) };
}

function allStats(): StatLine[] {
  const out: StatLine[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(name)) continue;
    const st = readStat(Number(name));
    if (st !== null) out.push(st);
  }
  return out;
}

/** A named set of root processes whose trees are counted together (e.g. "hqts nodes": the 3 node pids). */
export interface ProcGroup {
  name: string;
  pids: readonly number[];
}

export interface CpuSnapshot {
  /** Seconds of CPU per group name. */
  groups: Record<string, number>;
  /** Pids seen per group (roots and descendants). */
  pids: Record<string, number[]>;
  /** Every process on the machine then (for what else ran: otherProcesses). */
  all: Map<number, StatLine>;
}

/**
 * CPU seconds of every group: each root and its descendants, not descending
 * into another group's root (the playground's `cluster up` is the parent of the
 * nodes and etcd members, which are groups of their own).
 */
export function cpuSnapshot(groups: readonly ProcGroup[]): CpuSnapshot {
  const stats = allStats();
  const children = new Map<number, StatLine[]>();
  for (const s of stats) {
    const list = children.get(s.ppid);
    if (list === undefined) children.set(s.ppid, [s]);
    else list.push(s);
  }
  const byPid = new Map(stats.map((s) => [s.pid, s]));
  const roots = new Set(groups.flatMap((g) => g.pids));
  const hz = clockTicks();
  const out: CpuSnapshot = { groups: {}, pids: {}, all: byPid };
  for (const g of groups) {
    let t = 0;
    const seen: number[] = [];
    const stack = g.pids.filter((p) => byPid.has(p));
    while (stack.length > 0) {
      const pid = stack.pop()!;
      const st = byPid.get(pid);
      if (st === undefined) continue;
      t += st.ticks;
      seen.push(pid);
      for (const c of children.get(pid) ?? []) if (!roots.has(c.pid)) stack.push(c.pid);
    }
    out.groups[g.name] = (out.groups[g.name] ?? 0) + t / hz;
    out.pids[g.name] = [...(out.pids[g.name] ?? []), ...seen];
  }
  return out;
}

/**
 * What else ran on the machine between two snapshots: the processes outside `exclude` (the target's, the harness)
 * by their own CPU time (utime + stime; one that started in between counts whole), the `top` largest, and the sum
 * over all of them. Processes that started and ended in between (a compiler, a test) are not seen: the caller
 * compares the sum with /proc/stat's busy time for that.
 */
export function otherProcesses(before: CpuSnapshot, after: CpuSnapshot, exclude: ReadonlySet<number>, top = 5): { top: { pid: number; comm: string; cpuS: number }[]; totalS: number } {
  const hz = clockTicks();
  const all: { pid: number; comm: string; cpuS: number }[] = [];
  let total = 0;
  for (const [pid, st] of after.all) {
    if (exclude.has(pid)) continue;
    const d = (st.selfTicks - (before.all.get(pid)?.selfTicks ?? 0)) / hz;
    if (d <= 0) continue;
    total += d;
    all.push({ pid, comm: st.comm, cpuS: d });
  }
  return { top: all.sort((a, b) => b.cpuS - a.cpuS).slice(0, top), totalS: total };
}

/** after − before per group (a group missing before counts from 0). */
export function cpuDelta(before: CpuSnapshot, after: CpuSnapshot): Record<string, number> {
  const d: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.groups)) d[k] = v - (before.groups[k] ?? 0);
  return d;
}

/** The harness's own CPU (user + system) in seconds since `start`. */
export function selfCpuSeconds(start: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(start);
  return (u.user + u.system) / 1e6;
}

/** Machine-wide CPU time from /proc/stat's first line, seconds summed over all cores. */
export interface MachineCpu {
  /** user + nice + system + irq + softirq. */
  busy: number;
  idle: number;
  iowait: number;
  /** Time the hypervisor ran something else while this machine wanted a core. */
  steal: number;
}

export function machineCpu(): MachineCpu {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const hz = clockTicks();
  const at = (i: number): number => (f[i] ?? 0) / hz;
  return { busy: at(0) + at(1) + at(2) + at(5) + at(6), idle: at(3), iowait: at(4), steal: at(7) };
}

export function machineDelta(a: MachineCpu, b: MachineCpu): MachineCpu {
  return { busy: b.busy - a.busy, idle: b.idle - a.idle, iowait: b.iowait - a.iowait, steal: b.steal - a.steal };
}
