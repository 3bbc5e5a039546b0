// Package clustertest runs tier, through its public API only, against a
// real Redis Cluster of three masters on loopback (started once per test
// binary by redistest.LaunchCluster), to show that what holds on one
// server holds on a cluster: reads, writes and deletes of keys in slots on
// different nodes; GetMany across slots in one network round per node
// touched; invalidation from any replica reaching every other one, whichever
// node the PUBLISH lands on; hash-tagged keys kept on one node; and the
// soak checker's freshness bound under concurrent load.
//
// The package has no non-test code.
package clustertest
