// Package bench compares tier with its peers and with the floors that no
// cache can beat, measured in the same run on the same machine. It is a
// module of its own so that the peers never enter the go.mod of tier.
//
// The whole comparison, written to RESULTS.md:
//
//	cd bench && go run ./cmd/report
//
// The CI smoke run (every row, small figures, nothing written):
//
//	cd bench && go run ./cmd/report -quick
//
// One row under the profiler (IDs from `go run ./cmd/report -list`):
//
//	cd bench && go test -run x -bench 'Report/near-100k-1g/tier$' -cpuprofile cpu.out
//
// Within each run of a row, tier and its peers take turns of a few
// milliseconds each, so that a busy moment of a shared machine falls on
// all of them; the report prints the load average at its start and end.
package bench
