// The playground repairs an etcd member whose WAL is damaged. etcd 3.4 shows
// that damage in several ways depending on where the bytes land; these are the
// log lines seen on this machine, and a port clash that a wipe would not cure.

import assert from "node:assert/strict";
import { test } from "node:test";
import { damagedWalReason } from "../../src/cluster/playground/playground.js";

test("every observed form of etcd WAL damage is recognised, and a port clash is not", () => {
  const seen: [string, string][] = [
    ['{"level":"fatal","msg":"failed to open WAL","error":"walpb: crc mismatch"}', "walpb: crc mismatch"],
    ['{"level":"fatal","caller":"etcdmain/etcd.go:271","msg":"discovery failed","error":"proto: Record: wiretype end group for non-group"}', "proto: Record: wiretype end group for non-group"],
    ['{"level":"fatal","caller":"etcdmain/etcd.go:271","msg":"discovery failed","error":"proto: wrong wireType = 0 for field Data","stacktrace":"x"}', "proto: wrong wireType = 0 for field Data"],
    ['panic: tocommit(45) is out of range [lastIndex(20)]. Was the raft log corrupted, truncated, or lost?', "tocommit(45) is out of range [lastIndex(20)]. Was the raft log corrupted, truncated, or lost?"],
  ];
  for (const [line, reason] of seen) assert.equal(damagedWalReason(`{"level":"info","msg":"starting"}\n${line}\n`), reason);
  assert.equal(damagedWalReason('{"level":"fatal","msg":"discovery failed","error":"listen tcp 127.0.0.1:2380: bind: address already in use"}'), null);
  assert.equal(damagedWalReason('{"level":"info","msg":"ready to serve client requests"}'), null);
});
