// Package logging builds bulkhead's structured logger (log/slog) and routes
// the logging of its libraries into it: skipper logs through the global
// logrus logger and client-go through klog. Without this, one process would
// print three formats, and skipper's per-update info lines would drown the
// router's own.
//
// Library messages keep their meaning but move one level down where they are
// chatty: skipper's and klog's info become debug, so the default (info) log
// carries bulkhead's own lines and every warning or error.
package logging
