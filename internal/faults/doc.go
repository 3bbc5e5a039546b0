// Package faults holds tier's fault scenarios against a real redis-server
// (started by internal/redistest): Redis killed during loads and far
// reads, Redis slow, the invalidation subscription killed, Redis
// restarted, Redis over TLS, outages under a steady workload (kill -9,
// SIGSTOP, CLIENT PAUSE, the subscription alone: TestOutageAtFullSpeed,
// about 50s; its outages last 5s instead of 10s with -short), and tests
// of known bugs. Each scenario asserts what a caller sees and logs the
// figures it measured (run `go test -v ./internal/faults`); README.md's
// "Failure modes" quotes them. The package has no code of its own: it
// uses tier's public API only, as a user would.
package faults
