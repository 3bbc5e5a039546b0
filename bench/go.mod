module github.com/tier-cache/tier/bench

go 1.26.0

replace github.com/tier-cache/tier => ../

require (
	github.com/maypok86/otter/v2 v2.4.0
	github.com/tier-cache/tier v0.0.0-00010101000000-000000000000
)
