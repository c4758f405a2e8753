// The cluster layer: etcd membership and metadata (this issue), the quorum
// protocol (arriving separately).
export { EtcdMeta, parseEndpoints, endpointStatus, clusterKeys, toHqError, type EtcdOptions, type EndpointStatus } from "./etcd.js";
export { ClusterAgent, type AgentOptions, type ClusterView, type MemberInfo } from "./membership.js";
export { initialShardMap, parseShardMap, DEFAULT_CLUSTER_CONFIG, type ShardMap, type ShardInfo, type ClusterConfig } from "./shard-map.js";
