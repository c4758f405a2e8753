// The cluster layer's etcd side: membership, the shard map and the cluster
// configuration. The rest of the layer is imported from its own modules: the
// quorum protocol as pure state machines in ./protocol/ (docs/protocol.md),
// its wire format and transport, node-to-node and majority reads, point sync
// and the playground.
export { EtcdMeta, parseEndpoints, endpointStatus, clusterKeys, toHqError, type EtcdOptions, type EndpointStatus } from "./etcd.js";
export { ClusterAgent, type AgentOptions, type ClusterView, type MemberInfo } from "./membership.js";
export { initialShardMap, parseShardMap, DEFAULT_CLUSTER_CONFIG, type ShardMap, type ShardInfo, type ClusterConfig } from "./shard-map.js";
