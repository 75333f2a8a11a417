// Package testrouter builds the bulkhead binary once per test process and
// runs it as a real process on free loopback ports (or on an address the
// test made, Options.Host), the way users run it:
// end-to-end, outage and chaos tests drive the product through its flags,
// its listeners and its signals, not through internal APIs.
package testrouter
