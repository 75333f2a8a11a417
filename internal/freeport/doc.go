// Package freeport picks free loopback TCP ports for test components that
// may be restarted on the same port (kube-apiserver, bulkhead).
//
// Ports are taken BELOW the kernel's ephemeral range: a port handed out by
// binding to :0 comes from that range, and while its server is down (a
// killed API server, a restarting router) any outgoing connection of the
// machine may take it as its source port, so the restart fails with
// "address already in use". Below the range only explicit binds compete.
package freeport
