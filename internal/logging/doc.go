// Package logging builds bulkhead's structured logger (log/slog) and routes
// the logging of its libraries into it: skipper logs through the global
// logrus logger and client-go through klog. Without this, one process would
// print three formats, and skipper's per-update info lines would drown the
// router's own.
//
// Library messages keep their meaning but move one level down where they are
// chatty: skipper's and klog's info become debug, so the default (info) log
// carries bulkhead's own lines and every warning or error.
//
// Code that retries forever and logs every failed attempt (client-go's
// leader election, every two seconds while the API server is away) gets a
// Streak logger in its context instead: the first error of a failure is a
// warning, the repeats are counted in a metric, and the return is one info
// line, so an outage reads as two lines per component, not a line a retry.
package logging
