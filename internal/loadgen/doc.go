// Package loadgen sends steady HTTP load at a fixed rate (open loop: a slow
// answer does not slow the sender down, as with real clients) and counts
// every outcome, for the outage and chaos tests: a request that fails is
// counted by status or error kind, never retried, never hidden.
package loadgen
